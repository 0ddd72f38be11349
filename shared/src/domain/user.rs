//! Users, their roles, and API keys.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::Timestamp;

/// What a caller may do. Ordered by power: a key can be given a role no higher than its user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including users and every user's bots.
    Admin,
    /// Own bots and executions.
    User,
    /// Reads everything, changes nothing.
    Viewer,
    /// Automation through API keys: own bots and executions, like `user`.
    ApiUser,
}

crate::text_enum!(Role { Admin => "admin", User => "user", Viewer => "viewer", ApiUser => "api_user" });

impl Role {
    /// Rank used to refuse handing out more power than one holds.
    fn rank(self) -> u8 {
        match self {
            Role::Admin => 3,
            Role::User => 2,
            Role::ApiUser => 1,
            Role::Viewer => 0,
        }
    }

    /// Whether a holder of `self` may grant `other` (to an API key, say).
    pub fn may_grant(self, other: Role) -> bool {
        other.rank() <= self.rank()
    }

    /// Whether this role may create, change, run or cancel anything.
    pub fn can_write(self) -> bool {
        match self {
            Role::Admin | Role::User | Role::ApiUser => true,
            Role::Viewer => false,
        }
    }

    /// Whether this role sees every user's resources, not only its own.
    pub fn sees_all(self) -> bool {
        match self {
            Role::Admin | Role::Viewer => true,
            Role::User | Role::ApiUser => false,
        }
    }
}

/// A person (or automation account) who can log in.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub role: Role,
    pub created_at: Timestamp,
    /// Whether the address is known to reach this user: the account was made by an admin, by
    /// an invite for that address or through an identity provider that verified it, or a
    /// password reset was completed. Identity-provider logins link only to such accounts.
    pub email_verified: bool,
}

/// A long-lived credential for automation; only a hash of the key is kept.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ApiKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    /// The first characters of the key, to recognise it in a list.
    pub prefix: String,
    #[serde(skip)]
    pub key_hash: String,
    pub role: Role,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}
