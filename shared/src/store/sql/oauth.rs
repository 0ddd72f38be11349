//! Logins through identity providers, for both SQL stores.

use async_trait::async_trait;
use uuid::Uuid;

use super::users::insert_user;
use super::{PgStore, SqliteStore};
use crate::Timestamp;
use crate::domain::User;
use crate::store::error::conflict_or;
use crate::store::{OAuthIdentity, OAuthLogin, OAuthStore, StoreError};

macro_rules! login_columns {
    () => {
        "state_hash, provider, pkce_verifier, nonce, redirect_to, created_at, expires_at"
    };
}

/// The INSERT of an identity link, bound.
macro_rules! insert_identity {
    ($identity:expr) => {
        sqlx::query(
            "INSERT INTO oauth_identities (provider, subject, user_id, email, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&$identity.provider)
        .bind(&$identity.subject)
        .bind($identity.user_id)
        .bind(&$identity.email)
        .bind($identity.created_at)
    };
}

macro_rules! oauth_store {
    ($store:ty) => {
        #[async_trait]
        impl OAuthStore for $store {
            async fn create_oauth_login(&self, login: &OAuthLogin) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM oauth_logins WHERE expires_at <= $1")
                    .bind(login.created_at)
                    .execute(&self.pool)
                    .await?;
                sqlx::query(concat!(
                    "INSERT INTO oauth_logins (",
                    login_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ))
                .bind(&login.state_hash)
                .bind(&login.provider)
                .bind(&login.pkce_verifier)
                .bind(&login.nonce)
                .bind(&login.redirect_to)
                .bind(login.created_at)
                .bind(login.expires_at)
                .execute(&self.pool)
                .await
                .map_err(|e| conflict_or(e, "login state", &login.provider))?;
                Ok(())
            }

            async fn take_oauth_login(
                &self,
                state_hash: &str,
                at: Timestamp,
            ) -> Result<Option<OAuthLogin>, StoreError> {
                let sql = concat!(
                    "DELETE FROM oauth_logins WHERE state_hash = $1 RETURNING ",
                    login_columns!()
                );
                let login: Option<OAuthLogin> = sqlx::query_as(sql)
                    .bind(state_hash)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(login.filter(|l| l.expires_at > at))
            }

            async fn identity_user(
                &self,
                provider: &str,
                subject: &str,
            ) -> Result<Option<Uuid>, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT user_id FROM oauth_identities WHERE provider = $1 AND subject = $2",
                )
                .bind(provider)
                .bind(subject)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn link_identity(&self, identity: &OAuthIdentity) -> Result<(), StoreError> {
                insert_identity!(identity)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| conflict_or(e, "identity", &identity.subject))?;
                Ok(())
            }

            async fn create_user_with_identity(
                &self,
                user: &User,
                identity: &OAuthIdentity,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                insert_user!(user)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| conflict_or(e, "user", &user.email))?;
                insert_identity!(identity)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| conflict_or(e, "identity", &identity.subject))?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

oauth_store!(PgStore);
oauth_store!(SqliteStore);
