-- When the account's e-mail address was shown to be the user's (a password
-- reset link sent there was used); 0: never. Keep it in step with
-- ../postgres/0003_email_verified.sql.
ALTER TABLE users ADD COLUMN email_verified_at INTEGER NOT NULL DEFAULT 0;
