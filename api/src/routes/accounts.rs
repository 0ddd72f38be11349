//! Accounts people make themselves: registration (off, by invite, or open, by configuration),
//! admins' invites, and the password-reset flow (a single-use, expiring link by mail).

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use codex32_shared::Timestamp;
use codex32_shared::config::RegistrationMode;
use codex32_shared::domain::{Role, User};
use codex32_shared::store::AccountToken;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit;
use crate::auth::{Caller, hash_key, hash_password, random_hex};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Json;
use crate::limits;
use crate::mailer::Mail;
use crate::routes::users::{check_password, create, parse_email};
use crate::state::AppState;

/// How long an invite stays usable.
const INVITE_TTL_S: i64 = 7 * 24 * 3600;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(create_invite))
        .routes(routes!(request_reset))
        .routes(routes!(confirm_reset))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub email: String,
    /// At least 8 characters.
    pub password: String,
    /// Required when registration is by invite.
    #[serde(default)]
    pub invite: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// Only this address may use it (any, if absent).
    #[serde(default)]
    pub email: Option<String>,
    /// The role of the account it creates (default `user`).
    #[serde(default)]
    pub role: Option<Role>,
}

#[derive(Serialize, ToSchema)]
pub struct Invite {
    /// Shown once: hand it to the person invited.
    pub invite: String,
    pub email: Option<String>,
    pub role: Role,
    pub expires_at: Timestamp,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The token from the link.
    pub token: String,
    pub new_password: String,
}

/// Create an account, if this server lets people register (`CODEX32_REGISTRATION`): `open`
/// for anyone, `invite` with an admin's invite. New accounts get role `user` (or the
/// invite's).
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = User), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn register(
    State(state): State<AppState>,
    Json(req): Json<RegisterRequest>,
) -> Result<(StatusCode, axum::Json<User>), ApiError> {
    let email = parse_email(&req.email)?;
    check_password(&req.password)?;
    let role = match state.registration {
        RegistrationMode::Off => {
            return Err(ApiError::forbidden(
                "registration is off on this server: ask an admin for an account",
            ));
        }
        // Anyone may type any address: it is confirmed only by a later password reset.
        RegistrationMode::Open => (Role::User, false),
        RegistrationMode::Invite => spend_invite(&state, req.invite.as_deref(), &email).await?,
    };
    let (role, verified) = role;
    let user = create(&state, &email, &req.password, role, None, verified).await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// The role an invite grants, spending it (once), and whether it was for this very address
/// (which the admin vouched for).
async fn spend_invite(
    state: &AppState,
    invite: Option<&str>,
    email: &str,
) -> Result<(Role, bool), ApiError> {
    let invite = invite.ok_or_else(|| {
        ApiError::invalid(
            "invite",
            "registration is by invite on this server: send the invite you were given",
        )
    })?;
    let store = &state.backends.store;
    let token = store
        .use_account_token("invite", &hash_key(invite), Some(email), Timestamp::now())
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "invite",
                "this invite is unknown, used, expired or for another address",
            )
        })?;
    Ok((token.role.unwrap_or(Role::User), token.email.is_some()))
}

/// Invite someone (admins): a single-use invite, valid 7 days, for registration by invite.
#[utoipa::path(post, path = "/invites", tag = "users", security(("bearer" = [])), request_body = InviteRequest,
    responses((status = 201, body = Invite), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_invite(
    State(state): State<AppState>,
    caller: Caller,
    Json(req): Json<InviteRequest>,
) -> Result<(StatusCode, axum::Json<Invite>), ApiError> {
    caller.require_admin()?;
    let email = req.email.as_deref().map(parse_email).transpose()?;
    let role = req.role.unwrap_or(Role::User);
    let invite = random_hex(24);
    let now = Timestamp::now();
    let token = AccountToken {
        id: Uuid::now_v7(),
        kind: "invite".into(),
        token_hash: hash_key(&invite),
        email: email.clone(),
        role: Some(role),
        user_id: None,
        created_by: Some(caller.user_id),
        created_at: now,
        expires_at: now.plus_millis(INVITE_TTL_S * 1000),
        used_at: None,
    };
    state.backends.store.create_account_token(&token).await?;
    let details = serde_json::json!({ "email": email, "role": role });
    audit::record(
        &state,
        Some(caller.user_id),
        "invite.create",
        token.id,
        details,
    )
    .await?;
    let created = Invite {
        invite,
        email,
        role,
        expires_at: token.expires_at,
    };
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// Ask for a password-reset link by mail. The answer is the same whether or not the address
/// has an account; requests count against the login limit of the address.
#[utoipa::path(post, path = "/auth/password-reset", tag = "auth", request_body = ResetRequest,
    responses((status = 202), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn request_reset(
    State(state): State<AppState>,
    parts: Parts,
    Json(req): Json<ResetRequest>,
) -> Result<StatusCode, Response> {
    let ip = limits::client_ip(&parts);
    limits::check_login(&state, &req.email, ip.as_deref()).await?;
    send_reset(&state, &req.email)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(StatusCode::ACCEPTED)
}

async fn send_reset(state: &AppState, email: &str) -> Result<(), ApiError> {
    let email = parse_email(email)?;
    let store = &state.backends.store;
    let Some(user) = store.user_by_email(&email).await? else {
        return Ok(());
    };
    let secret = random_hex(24);
    let now = Timestamp::now();
    let token = AccountToken {
        id: Uuid::now_v7(),
        kind: "reset".into(),
        token_hash: hash_key(&secret),
        email: Some(email.clone()),
        role: None,
        user_id: Some(user.id),
        created_by: None,
        created_at: now,
        expires_at: now.plus_millis(state.reset_token_ttl_s as i64 * 1000),
        used_at: None,
    };
    store.create_account_token(&token).await?;
    let minutes = state.reset_token_ttl_s / 60;
    let mail = Mail {
        to: email.clone(),
        subject: "Reset your codex32 password".into(),
        text: format!(
            "Someone asked to reset the password of {email} on codex32. If it was you, send\n\
             POST {}/api/v1/auth/password-reset/confirm {{\"token\": \"{secret}\", \"new_password\": \"…\"}}\n\
             within {minutes} minutes. The token works once. If it was not you, ignore this mail.",
            state.public_url
        ),
    };
    if let Err(e) = state.mailer.send(&mail).await {
        // The caller learns nothing about the account either way; the operator does.
        tracing::error!(error = %e, "Cannot send a password-reset mail.");
    }
    audit::record(
        state,
        Some(user.id),
        "auth.password_reset_requested",
        user.id,
        serde_json::json!({}),
    )
    .await?;
    Ok(())
}

/// Set a new password with a reset token: once, before it expires; ends every session.
#[utoipa::path(post, path = "/auth/password-reset/confirm", tag = "auth", request_body = ResetConfirm,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn confirm_reset(
    State(state): State<AppState>,
    Json(req): Json<ResetConfirm>,
) -> Result<StatusCode, ApiError> {
    if check_password(&req.new_password).is_err() {
        return Err(ApiError::invalid(
            "new_password",
            "must be 8 to 1024 characters long",
        ));
    }
    let store = &state.backends.store;
    let token = store
        .use_account_token("reset", &hash_key(&req.token), None, Timestamp::now())
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                "this reset token is unknown, used or expired: ask for a new link",
            )
        })?;
    let user_id = token
        .user_id
        .ok_or_else(|| ApiError::internal("a reset token without its account"))?;
    let hash = hash_password(&req.new_password)?;
    store
        .change_password(user_id, &hash, Timestamp::now())
        .await?;
    // The link reached its owner: the address is theirs.
    store.verify_email(user_id).await?;
    audit::record(
        &state,
        Some(user_id),
        "auth.password_reset",
        user_id,
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
