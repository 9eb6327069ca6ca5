-- Leases: one holder at a time for a named job (the learner of a program), with an expiry, so
-- a holder that dies frees the lease when it lapses. Works the same on SQLite and PostgreSQL.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires BIGINT NOT NULL
);
