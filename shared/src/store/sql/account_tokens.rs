//! Invites and password-reset tokens, for both SQL stores.

use async_trait::async_trait;

use super::{PgStore, SqliteStore};
use crate::Timestamp;
use crate::store::{AccountToken, AccountTokenStore, StoreError};

macro_rules! columns {
    () => {
        "id, kind, token_hash, email, role, user_id, created_by, created_at, expires_at, used_at"
    };
}

/// One conditional UPDATE: of two uses racing, one wins.
const USE: &str = concat!(
    "UPDATE account_tokens SET used_at = $3
     WHERE kind = $1 AND token_hash = $2 AND used_at IS NULL AND expires_at > $3
       AND ($4 IS NULL OR email IS NULL OR email = $4) RETURNING ",
    columns!()
);

macro_rules! account_token_store {
    ($store:ty) => {
        #[async_trait]
        impl AccountTokenStore for $store {
            async fn create_account_token(&self, t: &AccountToken) -> Result<(), StoreError> {
                sqlx::query(concat!(
                    "INSERT INTO account_tokens (",
                    columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ))
                .bind(t.id)
                .bind(&t.kind)
                .bind(&t.token_hash)
                .bind(&t.email)
                .bind(t.role)
                .bind(t.user_id)
                .bind(t.created_by)
                .bind(t.created_at)
                .bind(t.expires_at)
                .bind(t.used_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn use_account_token(
                &self,
                kind: &str,
                token_hash: &str,
                email: Option<&str>,
                at: Timestamp,
            ) -> Result<Option<AccountToken>, StoreError> {
                Ok(sqlx::query_as(USE)
                    .bind(kind)
                    .bind(token_hash)
                    .bind(at)
                    .bind(email)
                    .fetch_optional(&self.pool)
                    .await?)
            }
        }
    };
}

account_token_store!(PgStore);
account_token_store!(SqliteStore);
