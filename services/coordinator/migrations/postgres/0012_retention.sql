-- Retention prunes finished jobs and old audit rows in small batches by
-- age; these indexes keep each batch a range scan, not a table scan.
CREATE INDEX jobs_finished ON jobs (state, updated_at);
CREATE INDEX audit_at ON audit (at);
