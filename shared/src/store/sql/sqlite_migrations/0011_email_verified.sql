-- Mirror of migrations/0011_email_verified.sql.
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT 1;
