-- A login's state travels sealed in the browser's requests, not in the
-- flows table; what must be one-time stays here: the key of every login
-- (and account) that has started a session, with that session's id, until
-- the login would have expired, so that of two requests finishing one
-- login exactly one starts a session. Small rows: without a rowid, the key
-- is the table. Keep it in step with
-- ../postgres/0007_spent_logins.sql.
CREATE TABLE spent_logins (
    key        BLOB    NOT NULL PRIMARY KEY,
    session_id TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX spent_logins_expires_at ON spent_logins (expires_at);
