-- Whether an account's address is known to reach its owner (made by an admin, by an invite
-- for that address, through an identity provider that verified it, or confirmed by a
-- password reset). Logins through identity providers link only to such accounts.
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT TRUE;
