-- Password reset tokens and the mail outbox (issue 5). Keep it in step with
-- ../postgres/0002_mail_password_reset.sql.

-- A reset link's token is random; only its hash is kept.
CREATE TABLE password_resets (
    token_hash BLOB    NOT NULL PRIMARY KEY,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL DEFAULT 0,
    used_at    INTEGER NOT NULL DEFAULT 0 -- 0: unused
) STRICT;
CREATE INDEX password_resets_user_id ON password_resets (user_id);
CREATE INDEX password_resets_expires_at ON password_resets (expires_at);

-- Mails waiting to be sent (or sent, until the cleanup job removes them).
-- claimed_until is a lease: the instance whose conditional UPDATE set it
-- sends the mail; if it dies, the lease runs out and another one retries.
CREATE TABLE mail_outbox (
    id              INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    recipient       TEXT    NOT NULL,
    subject         TEXT    NOT NULL DEFAULT '',
    body            TEXT    NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    claimed_until   INTEGER NOT NULL DEFAULT 0,
    sent_at         INTEGER NOT NULL DEFAULT 0, -- 0: not sent yet
    last_error      TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX mail_outbox_due ON mail_outbox (sent_at, next_attempt_at);
CREATE INDEX mail_outbox_created_at ON mail_outbox (created_at);
