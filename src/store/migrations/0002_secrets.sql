-- Secrets every process on one store shares, made on first use: the key `loopc serve` signs
-- feedback tokens with, so replicas and restarts accept each other's tokens.
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created BIGINT NOT NULL
);
