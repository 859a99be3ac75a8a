-- What the master key the database was first used with says to a fixed
-- input (an HMAC), so that a start with another key (a typo in
-- IDP_SECRET_KEY_FILE, a key file lost and made again, a wrong
-- IDP_SECRET_KEY) is refused before it seals anything the right key could
-- not read. One row. Keep it in step with ../sqlite/0010_master_key_check.sql.
CREATE TABLE master_key_check (
    id          SMALLINT NOT NULL PRIMARY KEY CHECK (id = 1),
    check_value BYTEA    NOT NULL,
    created_at  BIGINT   NOT NULL
);
