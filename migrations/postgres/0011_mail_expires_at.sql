-- When a mail's content stops working (a reset link's expiry): a mail not
-- sent by then is given up, not delivered dead. 0: never. Keep it in step
-- with ../sqlite/0011_mail_expires_at.sql.
ALTER TABLE mail_outbox ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
