-- The secret a client had before its last rotation (idp client rotate-secret
-- --keep-old), still taken until rotated_until (0: not at all), so that a
-- relying party's instances can switch to the new secret one by one. Keep it
-- in step with ../sqlite/0009_client_rotated_secret.sql.
ALTER TABLE clients ADD COLUMN rotated_secret_hash BYTEA NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN rotated_until BIGINT NOT NULL DEFAULT 0;
