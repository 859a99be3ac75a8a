-- When the support desk disabled the account (idp user disable); 0: it is
-- not. A disabled account cannot log in, and gets no reset link. Keep it in
-- step with ../postgres/0008_user_disabled.sql.
ALTER TABLE users ADD COLUMN disabled_at INTEGER NOT NULL DEFAULT 0;
