-- The review queue of `loopc serve` (/review): how sure each run's constrained choices were
-- (the smallest margin between the best and second-best label's log-probability, or NULL when the
-- run made no choice), and a random key the queue samples runs by. Each has an index in the
-- order the queue reads it. Feedback by source finds the runs a reviewer has annotated.
ALTER TABLE runs ADD COLUMN label_margin DOUBLE PRECISION;
ALTER TABLE runs ADD COLUMN sample BIGINT;
-- Runs stored before this migration get a sample key from their time (a permutation of the
-- residues modulo a prime), and new runs get a random one in the same range.
UPDATE runs SET sample = (created % 1000003) * 7919 % 1000003;
-- The queue mostly shows one program's runs: with the program first, its tiers read in index
-- order (without it, SQLite would take runs_by_program and sort every run of the program).
CREATE INDEX runs_by_program_margin ON runs (program, label_margin, id);
CREATE INDEX runs_by_program_sample ON runs (program, sample, id);
CREATE INDEX runs_by_margin ON runs (label_margin, id);
CREATE INDEX runs_by_sample ON runs (sample, id);
CREATE INDEX feedback_by_source ON feedback (source, run_id);
