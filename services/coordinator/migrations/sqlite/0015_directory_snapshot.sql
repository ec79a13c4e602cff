-- The last directory read from Authentik, patched by webhooks (issue 12):
-- a webhook about one user or group reads only that object and patches
-- this copy, instead of re-reading every page. A sweep replaces it whole.
-- Bodies are the Authentik JSON objects (with `groups` / `users` made
-- consistent with each other), so a restart resumes from here.
CREATE TABLE directory_users (
    pk   INTEGER PRIMARY KEY,
    body TEXT    NOT NULL
);
CREATE TABLE directory_groups (
    uuid TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
-- When the snapshot was last read whole (Unix milliseconds) lives in
-- `meta` as `directory_read_at`: a snapshot older than the sweep interval
-- is read again before it is trusted.
