//! Bots' webhooks, for both SQL stores.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PgStore, SqliteStore};
use crate::Timestamp;
use crate::domain::Webhook;
use crate::store::{StoreError, WebhookStore};

macro_rules! columns {
    () => {
        "id, bot_id, name, token_hash, hmac_secret, created_by, created_at, last_used_at, revoked_at"
    };
}

macro_rules! webhook_store {
    ($store:ty) => {
        #[async_trait]
        impl WebhookStore for $store {
            async fn create_webhook(&self, h: &Webhook) -> Result<(), StoreError> {
                sqlx::query(concat!("INSERT INTO webhooks (", columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"))
                    .bind(h.id)
                    .bind(h.bot_id)
                    .bind(&h.name)
                    .bind(&h.token_hash)
                    .bind(&h.hmac_secret)
                    .bind(h.created_by)
                    .bind(h.created_at)
                    .bind(h.last_used_at)
                    .bind(h.revoked_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn webhook(&self, id: Uuid) -> Result<Option<Webhook>, StoreError> {
                let sql = concat!("SELECT ", columns!(), " FROM webhooks WHERE id = $1");
                Ok(sqlx::query_as(sql).bind(id).fetch_optional(&self.pool).await?)
            }

            async fn list_webhooks(&self, bot_id: Uuid) -> Result<Vec<Webhook>, StoreError> {
                let sql = concat!("SELECT ", columns!(), " FROM webhooks WHERE bot_id = $1 ORDER BY created_at DESC, id DESC");
                Ok(sqlx::query_as(sql).bind(bot_id).fetch_all(&self.pool).await?)
            }

            async fn revoke_webhook(&self, bot_id: Uuid, id: Uuid, at: Timestamp) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE webhooks SET revoked_at = $3 WHERE id = $1 AND bot_id = $2 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(bot_id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn touch_webhook(&self, id: Uuid, at: Timestamp) -> Result<(), StoreError> {
                sqlx::query("UPDATE webhooks SET last_used_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }
        }
    };
}

webhook_store!(PgStore);
webhook_store!(SqliteStore);
