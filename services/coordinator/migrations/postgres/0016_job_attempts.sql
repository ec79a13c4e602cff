-- Every attempt of a job: which coordinator instance ran it, and from when
-- to when. With several coordinators on one PostgreSQL (README, "High
-- availability") this is the record that no attempt of a job ran on two
-- instances at once. `ended_at` is NULL while the attempt runs; an attempt
-- cut short by a crash is closed (outcome `interrupted`) by whoever
-- requeues its job.
CREATE TABLE job_attempts (
    job_id      BIGINT  NOT NULL,
    attempt     BIGINT  NOT NULL,
    instance    TEXT    NOT NULL,
    started_at  BIGINT  NOT NULL,
    ended_at    BIGINT,
    -- running | done | retry | failed | interrupted
    outcome     TEXT    NOT NULL DEFAULT 'running',
    PRIMARY KEY (job_id, attempt)
);
