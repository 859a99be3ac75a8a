-- When the support desk disabled the account (idp user disable); 0: it is
-- not. A disabled account cannot log in, and gets no reset link. Keep it in
-- step with ../sqlite/0008_user_disabled.sql.
ALTER TABLE users ADD COLUMN disabled_at BIGINT NOT NULL DEFAULT 0;
