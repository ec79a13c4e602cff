-- Per-object backoff after permanent failures: a change the target keeps
-- refusing is not re-sent every sweep. `fingerprint` identifies the change
-- (action and target); a different change to the same object, i.e. its
-- inputs changed, is sent at once.
CREATE TABLE backoff (
    resource TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    fingerprint TEXT NOT NULL,
    failures BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    PRIMARY KEY (resource, key)
);
