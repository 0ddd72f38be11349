//! Webhook triggers: each bot may have webhook URLs, each with its own secret token (and, if
//! asked for, a GitHub-style HMAC signature check); a POST to one queues an execution of the
//! bot with the request body as its input.

use aws_lc_rs::{constant_time, hmac};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use codex32_shared::Timestamp;
use codex32_shared::domain::{Execution, NewExecution, Webhook};
use codex32_shared::submit::submit;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit;
use crate::auth::{Caller, hash_key, random_hex};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::routes::bots::visible_bot;
use crate::state::AppState;

/// The signature header GitHub (and many others) send: `sha256=<hex HMAC of the body>`.
const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// Delivery ids that make a redelivered request idempotent.
const DELIVERY_HEADERS: &[&str] = &["idempotency-key", "x-github-delivery"];

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(revoke_webhook))
        .routes(routes!(trigger))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// 1–64 characters, to tell a bot's webhooks apart.
    pub name: String,
    /// Also require `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body>` with a secret
    /// shown once.
    #[serde(default)]
    pub signed: bool,
}

/// A webhook as listed.
#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    #[serde(flatten)]
    pub hook: Webhook,
    pub signed: bool,
}

impl From<Webhook> for WebhookView {
    fn from(hook: Webhook) -> Self {
        let signed = hook.hmac_secret.is_some();
        Self { hook, signed }
    }
}

/// A new webhook, with what is shown only now.
#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub view: WebhookView,
    /// Where to POST (relative to this server); it contains the secret token.
    pub url: String,
    pub token: String,
    /// The HMAC key, for signed webhooks.
    pub hmac_secret: Option<String>,
}

/// Add a webhook to a bot. The URL's token (and the HMAC secret) are shown once.
#[utoipa::path(post, path = "/bots/{id}/webhooks", tag = "webhooks", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    request_body = NewWebhook,
    responses((status = 201, body = CreatedWebhook), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(bot_id): Path<Uuid>,
    Json(req): Json<NewWebhook>,
) -> Result<(StatusCode, axum::Json<CreatedWebhook>), ApiError> {
    caller.require_write()?;
    let bot = visible_bot(&state, &caller, bot_id).await?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::invalid("name", "must be 1 to 64 characters long"));
    }
    let token = random_hex(24);
    let hook = Webhook {
        id: Uuid::now_v7(),
        bot_id: bot.id,
        name: name.to_owned(),
        token_hash: hash_key(&token),
        hmac_secret: req.signed.then(|| random_hex(32)),
        created_by: Some(caller.user_id),
        created_at: Timestamp::now(),
        last_used_at: None,
        revoked_at: None,
    };
    state.backends.store.create_webhook(&hook).await?;
    let details = serde_json::json!({ "webhook_id": hook.id, "name": hook.name });
    audit::record(
        &state,
        Some(caller.user_id),
        "webhook.create",
        bot.id,
        details,
    )
    .await?;
    let created = CreatedWebhook {
        url: format!("/api/v1/hooks/{}/{token}", hook.id),
        token,
        hmac_secret: hook.hmac_secret.clone(),
        view: hook.into(),
    };
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// A bot's webhooks (without their secrets).
#[utoipa::path(get, path = "/bots/{id}/webhooks", tag = "webhooks", security(("bearer" = [])), params(("id" = Uuid, Path, description = "Bot id")),
    responses((status = 200, body = Vec<WebhookView>), (status = 404, body = ErrorBody)))]
async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    Path(bot_id): Path<Uuid>,
) -> Result<axum::Json<Vec<WebhookView>>, ApiError> {
    let bot = visible_bot(&state, &caller, bot_id).await?;
    let hooks = state.backends.store.list_webhooks(bot.id).await?;
    Ok(axum::Json(hooks.into_iter().map(Into::into).collect()))
}

/// Revoke a webhook: its URL stops working at once.
#[utoipa::path(delete, path = "/bots/{id}/webhooks/{hook_id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Bot id"), ("hook_id" = Uuid, Path, description = "Webhook id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path((bot_id, hook_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    caller.require_write()?;
    let bot = visible_bot(&state, &caller, bot_id).await?;
    let store = &state.backends.store;
    if !store
        .revoke_webhook(bot.id, hook_id, Timestamp::now())
        .await?
    {
        return Err(ApiError::not_found("webhook"));
    }
    let details = serde_json::json!({ "webhook_id": hook_id });
    audit::record(
        &state,
        Some(caller.user_id),
        "webhook.revoke",
        bot.id,
        details,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Trigger a bot: no other credentials than the URL's token (and the signature of signed
/// webhooks). A JSON body is the input as is; any other body is the input as a string.
/// `Idempotency-Key` or `X-GitHub-Delivery` make redeliveries return the first execution.
#[utoipa::path(post, path = "/hooks/{id}/{token}", tag = "webhooks",
    params(("id" = Uuid, Path, description = "Webhook id"), ("token" = String, Path, description = "The webhook's secret token")),
    request_body(content = String, description = "Any body", content_type = "application/json"),
    responses((status = 202, body = Execution), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn trigger(
    State(state): State<AppState>,
    Path((id, token)): Path<(Uuid, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Execution>), ApiError> {
    let store = &state.backends.store;
    let hook = store
        .webhook(id)
        .await?
        .filter(|h| h.revoked_at.is_none())
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    let presented = hash_key(&token);
    if constant_time::verify_slices_are_equal(presented.as_bytes(), hook.token_hash.as_bytes())
        .is_err()
    {
        return Err(ApiError::not_found("webhook"));
    }
    if let Some(secret) = &hook.hmac_secret {
        verify_signature(secret, &headers, &body)?;
    }
    let bot = store
        .get_bot(hook.bot_id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    crate::routes::bots::refuse_service(&bot)?;
    if body.len() > state.max_input_bytes {
        let message = format!(
            "the body is {} bytes; the limit is {}",
            body.len(),
            state.max_input_bytes
        );
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            message,
        ));
    }
    let why = format!("webhook {:?}", hook.name);
    let mut new = NewExecution::of(&bot, input_of(&body), why);
    new.idempotency_key = delivery_id(&headers)?;
    let (exec, _) = submit(&state.backends, &new, bot.owner_id).await?;
    let now = Timestamp::now();
    if state.last_use.due(hook.id, hook.last_used_at, now) {
        let store = store.clone();
        tokio::spawn(async move {
            let _ = store.touch_webhook(hook.id, now).await;
        });
    }
    Ok((StatusCode::ACCEPTED, axum::Json(exec)))
}

/// JSON as is; other text as a string; nothing as `null`.
fn input_of(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

fn delivery_id(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some((name, value)) = DELIVERY_HEADERS
        .iter()
        .find_map(|h| headers.get(*h).map(|v| (h, v)))
    else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .ok_or_else(|| ApiError::invalid(name, "must be 1 to 200 visible characters"))?;
    Ok(Some(format!("webhook:{value}")))
}

fn verify_signature(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let header = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized(
                "this webhook is signed: send X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>",
            )
        })?;
    let tag = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| ApiError::unauthorized("X-Hub-Signature-256 must be sha256=<hex>"))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, body, &tag)
        .map_err(|_| ApiError::unauthorized("the signature does not match the body"))
}
