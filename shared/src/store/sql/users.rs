//! Users and API keys, for both SQL stores.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PgStore, SqliteStore};
use crate::Timestamp;
use crate::domain::{ApiKey, User};
use crate::store::error::conflict_or;
use crate::store::{StoreError, UserStore};

macro_rules! user_columns {
    () => {
        "id, email, password_hash, role, created_at, email_verified"
    };
}
macro_rules! key_columns {
    () => {
        "id, user_id, name, prefix, key_hash, role, created_at, last_used_at, expires_at, revoked_at"
    };
}

/// The INSERT of a new user, bound.
macro_rules! insert_user {
    ($user:expr) => {
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, role, created_at, email_verified)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind($user.id)
        .bind(&$user.email)
        .bind(&$user.password_hash)
        .bind($user.role)
        .bind($user.created_at)
        .bind($user.email_verified)
    };
}
pub(super) use insert_user;

macro_rules! user_store {
    ($store:ty) => {
        #[async_trait]
        impl UserStore for $store {
            async fn create_user(&self, user: &User) -> Result<(), StoreError> {
                insert_user!(user)
                .execute(&self.pool)
                .await
                .map_err(|e| conflict_or(e, "user", &user.email))?;
                Ok(())
            }

            async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
                let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1");
                Ok(sqlx::query_as(sql).bind(email).fetch_optional(&self.pool).await?)
            }

            async fn user_by_id(&self, id: Uuid) -> Result<Option<User>, StoreError> {
                let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
                Ok(sqlx::query_as(sql).bind(id).fetch_optional(&self.pool).await?)
            }

            async fn verify_email(&self, id: Uuid) -> Result<(), StoreError> {
                sqlx::query("UPDATE users SET email_verified = TRUE WHERE id = $1")
                    .bind(id)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn list_users(&self) -> Result<Vec<User>, StoreError> {
                let sql = concat!("SELECT ", user_columns!(), " FROM users ORDER BY created_at, email");
                Ok(sqlx::query_as(sql).fetch_all(&self.pool).await?)
            }

            async fn create_api_key(&self, key: &ApiKey) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, role, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(key.id)
                .bind(key.user_id)
                .bind(&key.name)
                .bind(&key.prefix)
                .bind(&key.key_hash)
                .bind(key.role)
                .bind(key.created_at)
                .bind(key.expires_at)
                .execute(&self.pool)
                .await
                .map_err(|e| conflict_or(e, "api key", &key.name))?;
                Ok(())
            }

            async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
                let sql = concat!("SELECT ", key_columns!(), " FROM api_keys WHERE key_hash = $1");
                Ok(sqlx::query_as(sql).bind(key_hash).fetch_optional(&self.pool).await?)
            }

            async fn list_api_keys(&self, user_id: Option<Uuid>) -> Result<Vec<ApiKey>, StoreError> {
                let sql = concat!("SELECT ", key_columns!(), " FROM api_keys WHERE ($1 IS NULL OR user_id = $1) ORDER BY created_at DESC");
                Ok(sqlx::query_as(sql).bind(user_id).fetch_all(&self.pool).await?)
            }

            async fn revoke_api_key(&self, id: Uuid, owner: Option<Uuid>, at: Timestamp) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE api_keys SET revoked_at = $3
                     WHERE id = $1 AND ($2 IS NULL OR user_id = $2) AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(owner)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn touch_api_key(&self, id: Uuid, at: Timestamp) -> Result<(), StoreError> {
                sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}

user_store!(PgStore);
user_store!(SqliteStore);
