//! Sealed secrets, for both SQL stores.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PgStore, SqliteStore};
use crate::Timestamp;
use crate::store::{SecretEntry, SecretStore, StoreError};

macro_rules! columns {
    () => {
        "id, scope, name, sealed, created_at, updated_at"
    };
}

macro_rules! secret_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl SecretStore for $store {
            async fn put_secret(&self, scope: &str, name: &str, sealed: &str, at: Timestamp) -> Result<bool, StoreError> {
                let row: (Timestamp,) = sqlx::query_as(
                    "INSERT INTO secrets (id, scope, name, sealed, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
                     ON CONFLICT (scope, name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at
                     RETURNING created_at",
                )
                .bind(Uuid::now_v7())
                .bind(scope)
                .bind(name)
                .bind(sealed)
                .bind(at)
                .fetch_one(&self.pool)
                .await?;
                Ok(row.0 == at)
            }

            async fn secrets(&self, scopes: &[String]) -> Result<Vec<SecretEntry>, StoreError> {
                if scopes.is_empty() {
                    return Ok(vec![]);
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(concat!("SELECT ", columns!(), " FROM secrets WHERE scope IN ("));
                let mut list = q.separated(", ");
                for scope in scopes {
                    list.push_bind(scope.clone());
                }
                q.push(") ORDER BY scope, name");
                Ok(q.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn delete_secret(&self, scope: &str, name: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM secrets WHERE scope = $1 AND name = $2")
                    .bind(scope)
                    .bind(name)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn all_secrets(&self, after: Option<Uuid>, limit: i64) -> Result<Vec<SecretEntry>, StoreError> {
                let sql = concat!("SELECT ", columns!(), " FROM secrets WHERE id > $1 ORDER BY id LIMIT $2");
                Ok(sqlx::query_as(sql)
                    .bind(after.unwrap_or(Uuid::nil()))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn reseal_secret(&self, id: Uuid, old: &str, new: &str) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE secrets SET sealed = $3 WHERE id = $1 AND sealed = $2")
                    .bind(id)
                    .bind(old)
                    .bind(new)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

secret_store!(PgStore, sqlx::Postgres);
secret_store!(SqliteStore, sqlx::Sqlite);
