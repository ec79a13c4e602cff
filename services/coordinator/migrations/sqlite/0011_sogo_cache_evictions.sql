-- SOGo cache evictions owed: a delegation row write committed, but the
-- sogo-agent could not evict the users' `<uid>+settings` from memcached, so
-- SOGo keeps showing the old delegation until its cache expires. Every run
-- that reaches the sogo-agent retries them; a row goes once it succeeded.
-- (Numbered after issue 8's defect 11, apart from other migrations.)
CREATE TABLE sogo_cache_evictions (
    uid         TEXT    PRIMARY KEY,
    -- failed evictions so far, the first one included
    attempts    INTEGER NOT NULL DEFAULT 1,
    last_error  TEXT    NOT NULL DEFAULT '',
    owed_since  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
