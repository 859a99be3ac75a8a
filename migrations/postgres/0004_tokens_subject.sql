-- Ending a user's sessions from My Page or by a password reset also
-- deactivates the tokens issued to relying parties in them (by subject and
-- session id). Keep it in step with ../sqlite/0004_tokens_subject.sql.
CREATE INDEX tokens_subject ON tokens (subject, session_id);
