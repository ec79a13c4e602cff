-- Durable job queue. A trigger answers 2xx only after its row is committed.
CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    -- "user:<username|email|pk>", "group:<uuid|name>" or "sweep"
    subject     TEXT    NOT NULL,
    force       INTEGER NOT NULL DEFAULT 0,
    -- queued | running | done | failed
    state       TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    trigger     TEXT    NOT NULL DEFAULT '',
    last_error  TEXT    NOT NULL DEFAULT '',
    summary     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX jobs_claim ON jobs (state, not_before, id);
CREATE INDEX jobs_subject ON jobs (subject, state);

-- Authentik delivers notifications at least once; one event pk, one job.
CREATE TABLE webhook_events (
    event_pk    TEXT    PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES jobs (id),
    received_at INTEGER NOT NULL
);

-- Ownership records. Nothing is modified or removed on a target unless a row
-- here (or the object's own marker) says we created it.
CREATE TABLE ledger (
    resource    TEXT    NOT NULL,   -- sender_acl | app_password | alias
    key         TEXT    NOT NULL,   -- see desired::keys
    -- intent: about to create; created: target confirmed; foreign: existed
    -- before we wanted it, never removed by us
    state       TEXT    NOT NULL,
    username    TEXT    NOT NULL DEFAULT '',
    groups      TEXT    NOT NULL DEFAULT '[]',  -- JSON array of group UUIDs
    remote_id   TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (resource, key)
);
CREATE INDEX ledger_username ON ledger (username);

-- Append-only record of every change: who, what, why, outcome, trace.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    job_id      INTEGER NOT NULL,
    trace_id    TEXT    NOT NULL DEFAULT '',
    resource    TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    reason      TEXT    NOT NULL DEFAULT '',
    detail      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_job ON audit (job_id);

-- Small facts that survive restarts (last sweep, last user count).
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Users we granted something, so a deleted user (no longer in Authentik)
-- can still be resolved from the pk in a model_deleted event.
CREATE TABLE known_users (
    pk        INTEGER PRIMARY KEY,
    username  TEXT NOT NULL,
    email     TEXT NOT NULL,
    seen_at   INTEGER NOT NULL
);
