-- The audit log also holds events ingested from other systems (Stalwart's
-- webhooks), next to the reconciler's own changes. Existing rows and
-- writers are the reconciler's: every new column has a default for them.
ALTER TABLE audit ADD COLUMN source      TEXT NOT NULL DEFAULT 'reconciler';
-- The sender's id of an ingested event; NULL for the reconciler's rows.
ALTER TABLE audit ADD COLUMN external_id TEXT;
ALTER TABLE audit ADD COLUMN actor       TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN remote_ip   TEXT NOT NULL DEFAULT '';
-- JSON: for an ingested event, the event as received.
ALTER TABLE audit ADD COLUMN metadata    TEXT NOT NULL DEFAULT '{}';
-- Who delivered an ingested event (the peer, or the client a trusted proxy
-- names in X-Forwarded-For); the event's own remote IP is `remote_ip`.
ALTER TABLE audit ADD COLUMN received_from TEXT NOT NULL DEFAULT '';

-- A replayed webhook batch adds nothing: one row per (source, event id).
CREATE UNIQUE INDEX audit_source_external ON audit (source, external_id)
    WHERE external_id IS NOT NULL;

-- The audit search is written once for both backends with SQLite's
-- `instr` (a plain substring, no pattern characters); PostgreSQL's is
-- `strpos`.
CREATE FUNCTION instr(haystack TEXT, needle TEXT) RETURNS INTEGER
    AS 'SELECT strpos(haystack, needle)' LANGUAGE SQL IMMUTABLE STRICT;
