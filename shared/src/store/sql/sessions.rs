//! Refresh tokens and password changes, for both SQL stores.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PgStore, SqliteStore};
use crate::Timestamp;
use crate::store::{RefreshToken, RefreshUse, SessionStore, StoreError};

/// Spending is one conditional UPDATE, so of two requests racing with the same token exactly
/// one spends it and the other is a reuse.
const SPEND: &str = "UPDATE refresh_tokens SET used_at = $2
     WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2
     RETURNING family_id, user_id";

const REVOKE_FAMILY: &str =
    "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL";

macro_rules! session_store {
    ($store:ty) => {
        #[async_trait]
        impl SessionStore for $store {
            async fn create_refresh_token(&self, t: &RefreshToken) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO refresh_tokens (id, family_id, user_id, issued_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(t.id)
                .bind(t.family_id)
                .bind(t.user_id)
                .bind(t.issued_at)
                .bind(t.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn use_refresh_token(&self, id: Uuid, at: Timestamp) -> Result<RefreshUse, StoreError> {
                let spent: Option<(Uuid, Uuid)> =
                    sqlx::query_as(SPEND).bind(id).bind(at).fetch_optional(&self.pool).await?;
                if let Some((family_id, user_id)) = spent {
                    return Ok(RefreshUse::Spent { family_id, user_id });
                }
                let row: Option<(Uuid, Uuid, Option<Timestamp>)> = sqlx::query_as(
                    "SELECT family_id, user_id, used_at FROM refresh_tokens WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some((family_id, user_id, Some(_))) => {
                        self.revoke_refresh_family(family_id, at).await?;
                        Ok(RefreshUse::Reused { family_id, user_id })
                    }
                    _ => Ok(RefreshUse::Invalid),
                }
            }

            async fn revoke_refresh_family(&self, family_id: Uuid, at: Timestamp) -> Result<u64, StoreError> {
                let done = sqlx::query(REVOKE_FAMILY).bind(family_id).bind(at).execute(&self.pool).await?;
                Ok(done.rows_affected())
            }

            async fn change_password(&self, user_id: Uuid, hash: &str, at: Timestamp) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let changed = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                    .bind(user_id)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
                    .bind(user_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(changed.rows_affected() == 1)
            }
        }
    };
}

session_store!(PgStore);
session_store!(SqliteStore);
