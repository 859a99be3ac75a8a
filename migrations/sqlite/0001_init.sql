-- The initial schema of the embedded store. Keep it in step with
-- ../postgres/0001_init.sql: the same tables, columns and indexes, with
-- SQLite's types. Conventions: times are INTEGER unix seconds, 0 meaning
-- "not set"; booleans are INTEGER 0/1; lists are JSON arrays in TEXT.

CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    email         TEXT    NOT NULL,
    email_lower   TEXT    NOT NULL UNIQUE, -- lower-cased by the store: the case-insensitive key
    name          TEXT    NOT NULL DEFAULT '',
    locale        TEXT    NOT NULL DEFAULT '',
    password_hash TEXT    NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL DEFAULT 0,
    updated_at    INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE clients (
    id                        TEXT    NOT NULL PRIMARY KEY,
    name                      TEXT    NOT NULL DEFAULT '',
    secret_hash               BLOB    NOT NULL DEFAULT x'',
    redirect_uris             TEXT    NOT NULL DEFAULT '[]',
    post_logout_redirect_uris TEXT    NOT NULL DEFAULT '[]',
    public                    INTEGER NOT NULL DEFAULT 0,
    first_party               INTEGER NOT NULL DEFAULT 0,
    created_at                INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE signing_keys (
    id          TEXT    NOT NULL PRIMARY KEY,
    algorithm   TEXT    NOT NULL,
    private_enc BLOB    NOT NULL,
    public_jwk  BLOB    NOT NULL,
    created_at  INTEGER NOT NULL DEFAULT 0,
    retired_at  INTEGER NOT NULL DEFAULT 0 -- 0: the current key
) STRICT;

CREATE TABLE sessions (
    token_hash BLOB    NOT NULL PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_time  INTEGER NOT NULL DEFAULT 0,
    amr        TEXT    NOT NULL DEFAULT '[]',
    remember   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL DEFAULT 0,
    last_seen  INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL DEFAULT 0,
    user_agent TEXT    NOT NULL DEFAULT '',
    ip         TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE flows (
    key        BLOB    NOT NULL PRIMARY KEY,
    data       BLOB    NOT NULL,
    created_at INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX flows_expires_at ON flows (expires_at);

CREATE TABLE consents (
    user_id    TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    scopes     TEXT    NOT NULL DEFAULT '[]',
    updated_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, client_id)
) STRICT;
CREATE INDEX consents_client_id ON consents (client_id);

CREATE TABLE totp (
    user_id      TEXT    NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_enc   BLOB    NOT NULL,
    last_step    INTEGER NOT NULL DEFAULT 0,
    confirmed_at INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE pending_totp (
    user_id    TEXT    NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret_enc BLOB    NOT NULL,
    created_at INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX pending_totp_expires_at ON pending_totp (expires_at);

CREATE TABLE backup_codes (
    user_id  TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    hash     BLOB    NOT NULL,
    enc      BLOB    NOT NULL,
    used_at  INTEGER NOT NULL DEFAULT 0, -- 0: unused
    PRIMARY KEY (user_id, position)
) STRICT;
CREATE INDEX backup_codes_hash ON backup_codes (user_id, hash);

CREATE TABLE throttles (
    key          TEXT    NOT NULL PRIMARY KEY,
    failures     INTEGER NOT NULL DEFAULT 0,
    lockouts     INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE audit_events (
    id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT    NOT NULL DEFAULT '',
    type       TEXT    NOT NULL,
    detail     TEXT    NOT NULL DEFAULT '',
    ip         TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX audit_events_user_id ON audit_events (user_id, id);

-- OAuth requests stored under token signatures (fosite).
CREATE TABLE tokens (
    kind       TEXT    NOT NULL,
    signature  TEXT    NOT NULL,
    request_id TEXT    NOT NULL DEFAULT '',
    client_id  TEXT    NOT NULL DEFAULT '',
    subject    TEXT    NOT NULL DEFAULT '',
    session_id TEXT    NOT NULL DEFAULT '',
    data       BLOB    NOT NULL,
    active     INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, signature)
) STRICT;
CREATE INDEX tokens_request_id ON tokens (kind, request_id);
CREATE INDEX tokens_expires_at ON tokens (expires_at);
