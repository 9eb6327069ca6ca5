-- The first schema: runs, feedback, artifact versions, audit events and consent counters.
-- One dialect for SQLite and PostgreSQL: ids and JSON as TEXT, times as BIGINT milliseconds
-- since the epoch, scores as DOUBLE PRECISION (8 bytes in both databases).

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    program TEXT NOT NULL,
    artifact_hash TEXT,
    created BIGINT NOT NULL,
    user_id TEXT,
    inputs TEXT NOT NULL,
    outputs TEXT,
    trace TEXT NOT NULL,
    error TEXT,
    latency_ms BIGINT NOT NULL
);
-- Pages of runs are ordered by (created, id), and each filter has an index that ends in that order.
CREATE INDEX runs_by_created ON runs (created, id);
CREATE INDEX runs_by_program ON runs (program, created, id);
CREATE INDEX runs_by_artifact ON runs (artifact_hash, created, id);
CREATE INDEX runs_by_user ON runs (user_id);

CREATE TABLE feedback (
    id TEXT PRIMARY KEY,
    -- The client's own id for the feedback: repeating it is idempotent.
    client_id TEXT UNIQUE,
    -- Deleting a run deletes its feedback, even feedback written while the run was being deleted.
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    score DOUBLE PRECISION,
    value TEXT,
    correction TEXT,
    comment TEXT,
    source TEXT NOT NULL CHECK (source IN ('user', 'api', 'model', 'implicit', 'annotation')),
    user_id TEXT,
    created BIGINT NOT NULL,
    CHECK ((CASE WHEN score IS NULL THEN 0 ELSE 1 END) + (CASE WHEN value IS NULL THEN 0 ELSE 1 END)
        + (CASE WHEN correction IS NULL THEN 0 ELSE 1 END) = 1)
);
CREATE INDEX feedback_by_run ON feedback (run_id);
CREATE INDEX feedback_by_created ON feedback (created, id);
CREATE INDEX feedback_by_key ON feedback (key, created);
CREATE INDEX feedback_by_user ON feedback (user_id);

CREATE TABLE artifacts (
    hash TEXT PRIMARY KEY,
    parent TEXT,
    program TEXT NOT NULL,
    created BIGINT NOT NULL,
    -- The artifact itself (JSON), so replicas can load a version from the store.
    body TEXT,
    -- Everything learning records about the version: holdout scores, decision and reason,
    -- feedback ids used, dataset hash. JSON, so later fields need no migration.
    meta TEXT NOT NULL
);
CREATE INDEX artifacts_by_program ON artifacts (program, created);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    created BIGINT NOT NULL
);
CREATE INDEX audit_events_by_kind ON audit_events (kind, created);

-- Runs recorded without consent leave only this count behind.
CREATE TABLE counters (
    program TEXT PRIMARY KEY,
    unconsented_runs BIGINT NOT NULL
);
