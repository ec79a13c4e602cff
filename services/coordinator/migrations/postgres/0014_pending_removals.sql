-- Removals that wait out a grace period (Matrix `grace_period`): a member
-- who left a group stays in the room until `due_at`, then the removal is
-- planned. Durable so a restart neither forgets nor repeats it; the row
-- goes when the removal is done (with the ledger row) or when the member
-- is entitled again.
CREATE TABLE pending_removals (
    resource   TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    username   TEXT COLLATE "C" NOT NULL,
    -- Unix milliseconds.
    due_at     BIGINT  NOT NULL,
    since      BIGINT  NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (resource, key)
);
CREATE INDEX pending_removals_due ON pending_removals (due_at);
