-- When a throttle last counted a failure: the cleanup forgets a throttle a
-- day after its last failure (once it is not locked). Keep it in step with
-- ../postgres/0005_throttle_updated_at.sql.
ALTER TABLE throttles ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX throttles_updated_at ON throttles (updated_at);
