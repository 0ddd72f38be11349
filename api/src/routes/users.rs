//! Users, managed by admins.

use axum::extract::State;
use axum::http::StatusCode;
use codex32_shared::Timestamp;
use codex32_shared::domain::{Role, User};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit;
use crate::auth::{Caller, hash_password};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_user, list_users))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    pub email: String,
    /// At least 8 characters.
    pub password: String,
    #[serde(default = "default_role")]
    pub role: Role,
}

fn default_role() -> Role {
    Role::User
}

/// Checks and normalises an email address (trimmed, lower case).
pub fn parse_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let valid = (3..=254).contains(&email.len())
        && email.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && !host.is_empty() && !host.contains('@')
        })
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(ApiError::invalid(
            "email",
            format!("{email:?} is not an email address"),
        ))
    }
}

pub fn check_password(password: &str) -> Result<(), ApiError> {
    if (8..=1024).contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "password",
            "must be 8 to 1024 characters long",
        ))
    }
}

/// Creates a user, ready to log in.
pub async fn create(
    state: &AppState,
    email: &str,
    password: &str,
    role: Role,
    actor: Option<Uuid>,
    email_verified: bool,
) -> Result<User, ApiError> {
    let email = parse_email(email)?;
    check_password(password)?;
    let user = User {
        id: Uuid::now_v7(),
        email,
        password_hash: hash_password(password)?,
        role,
        created_at: Timestamp::now(),
        email_verified,
    };
    state.backends.store.create_user(&user).await?;
    audit::record(
        state,
        actor,
        "user.create",
        user.id,
        serde_json::json!({ "email": user.email, "role": user.role }),
    )
    .await?;
    Ok(user)
}

/// Create a user (admins only).
#[utoipa::path(post, path = "/users", tag = "users", security(("bearer" = [])), request_body = NewUserRequest,
    responses((status = 201, body = User), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<NewUserRequest>,
) -> Result<(StatusCode, axum::Json<User>), ApiError> {
    caller.require_admin()?;
    let user = create(
        &state,
        &req.email,
        &req.password,
        req.role,
        Some(caller.user_id),
        true,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// List users (admins only).
#[utoipa::path(get, path = "/users", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = Vec<User>), (status = 403, body = ErrorBody)))]
async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<User>>, ApiError> {
    caller.require_admin()?;
    Ok(axum::Json(state.backends.store.list_users().await?))
}
