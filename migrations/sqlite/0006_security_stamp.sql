-- A random value replaced whenever the account's credentials change (its
-- password set, two-step verification turned on or off): a login and a
-- device cookie stand only while the stamp they saw is the account's.
-- Existing accounts start with the empty stamp. Keep it in step with
-- ../postgres/0006_security_stamp.sql.
ALTER TABLE users ADD COLUMN security_stamp TEXT NOT NULL DEFAULT '';
