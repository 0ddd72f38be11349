//! Bots and their versions, for both SQL stores. A bot row holds its current spec as JSON;
//! `bot_versions` keeps every spec it ever had, written in the same transaction.

use async_trait::async_trait;
use uuid::Uuid;

use super::{PgStore, SqliteStore};
use crate::Timestamp;
use crate::domain::{Bot, BotSpec, BotVersion};
use crate::store::error::conflict_or;
use crate::store::{BotStore, StoreError};

/// Records one version inside the caller's transaction.
macro_rules! insert_version {
    ($tx:expr, $id:expr, $version:expr, $spec:expr, $at:expr) => {
        sqlx::query(
            "INSERT INTO bot_versions (bot_id, version, spec, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind($id)
        .bind($version)
        .bind(sqlx::types::Json($spec))
        .bind($at)
        .execute(&mut *$tx)
        .await?
    };
}

macro_rules! bot_columns {
    () => {
        "id, owner_id, version, status, spec, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct BotRow {
    id: Uuid,
    owner_id: Uuid,
    version: i32,
    status: String,
    #[sqlx(json)]
    spec: BotSpec,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl From<BotRow> for Bot {
    fn from(r: BotRow) -> Self {
        Bot {
            id: r.id,
            spec: r.spec,
            version: r.version,
            status: r.status,
            owner_id: r.owner_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    bot_id: Uuid,
    version: i32,
    #[sqlx(json)]
    spec: BotSpec,
    created_at: Timestamp,
}

impl From<VersionRow> for BotVersion {
    fn from(r: VersionRow) -> Self {
        BotVersion {
            bot_id: r.bot_id,
            version: r.version,
            spec: r.spec,
            created_at: r.created_at,
        }
    }
}

macro_rules! bot_store {
    ($store:ty) => {
        #[async_trait]
        impl BotStore for $store {
            async fn create_bot(&self, id: Uuid, owner_id: Uuid, spec: &BotSpec, at: Timestamp) -> Result<Bot, StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO bots (id, owner_id, name, version, status, spec, created_at, updated_at)
                     VALUES ($1, $2, $3, 1, 'active', $4, $5, $5)",
                )
                .bind(id)
                .bind(owner_id)
                .bind(&spec.name)
                .bind(sqlx::types::Json(spec))
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or(e, "bot", &format!("a bot named {:?} exists", spec.name)))?;
                insert_version!(tx, id, 1, spec, at);
                tx.commit().await?;
                Ok(Bot { id, spec: spec.clone(), version: 1, status: "active".into(), owner_id, created_at: at, updated_at: at })
            }

            async fn get_bot(&self, id: Uuid) -> Result<Option<Bot>, StoreError> {
                let sql = concat!("SELECT ", bot_columns!(), " FROM bots WHERE id = $1 AND deleted_at IS NULL");
                let row: Option<BotRow> = sqlx::query_as(sql).bind(id).fetch_optional(&self.pool).await?;
                Ok(row.map(Bot::from))
            }

            async fn list_bots(&self, owner: Option<Uuid>) -> Result<Vec<Bot>, StoreError> {
                let sql = concat!("SELECT ", bot_columns!(), " FROM bots WHERE deleted_at IS NULL AND ($1 IS NULL OR owner_id = $1)
                     ORDER BY created_at DESC, id DESC");
                let rows: Vec<BotRow> = sqlx::query_as(sql).bind(owner).fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(Bot::from).collect())
            }

            async fn update_bot(&self, id: Uuid, spec: &BotSpec, at: Timestamp) -> Result<Option<Bot>, StoreError> {
                let mut tx = self.pool.begin().await?;
                let sql = concat!("UPDATE bots SET version = version + 1, name = $2, spec = $3, updated_at = $4
                     WHERE id = $1 AND deleted_at IS NULL RETURNING ", bot_columns!());
                let row: Option<BotRow> = sqlx::query_as(sql)
                    .bind(id)
                    .bind(&spec.name)
                    .bind(sqlx::types::Json(spec))
                    .bind(at)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| conflict_or(e, "bot", &format!("a bot named {:?} exists", spec.name)))?;
                let Some(row) = row else { return Ok(None) };
                insert_version!(tx, id, row.version, spec, at);
                tx.commit().await?;
                Ok(Some(row.into()))
            }

            async fn delete_bot(&self, id: Uuid, at: Timestamp) -> Result<bool, StoreError> {
                let done = sqlx::query("UPDATE bots SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn bot_versions(&self, id: Uuid) -> Result<Vec<BotVersion>, StoreError> {
                let rows: Vec<VersionRow> = sqlx::query_as(
                    "SELECT bot_id, version, spec, created_at FROM bot_versions WHERE bot_id = $1 ORDER BY version DESC",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(BotVersion::from).collect())
            }

            async fn bot_version(&self, id: Uuid, version: i32) -> Result<Option<BotVersion>, StoreError> {
                let row: Option<VersionRow> = sqlx::query_as(
                    "SELECT bot_id, version, spec, created_at FROM bot_versions WHERE bot_id = $1 AND version = $2",
                )
                .bind(id)
                .bind(version)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(BotVersion::from))
            }
        }
    };
}

bot_store!(PgStore);
bot_store!(SqliteStore);
