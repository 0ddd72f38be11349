//! Rate limits on the API (design: per user, API key or IP; shared across API processes
//! through Redis): one budget per caller per minute for every route, and a separate, much
//! smaller one for login attempts per account and per IP. Over the limit is a 429 with
//! `Retry-After`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use codex32_shared::limit::Decision;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

const MINUTE: Duration = Duration::from_secs(60);
/// Logins allowed per IP, as a multiple of the per-account limit (an office behind one NAT).
const LOGINS_PER_IP_FACTOR: u32 = 6;

/// The client's address, when the server knows it.
pub fn client_ip(parts: &Parts) -> Option<String> {
    ip_of(&parts.extensions)
}

/// The address a request came from, out of its extensions.
pub fn ip_of(extensions: &axum::http::Extensions) -> Option<String> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

/// Counts a request against its caller's (or, without one, its IP's) budget.
pub async fn check_request(
    state: &AppState,
    caller: Option<&Caller>,
    ip: Option<&str>,
) -> Result<(), Response> {
    let limit = state.rate_limit_per_min;
    let key = match (caller, ip) {
        (
            Some(Caller {
                api_key_id: Some(key),
                ..
            }),
            _,
        ) => format!("key:{key}"),
        (Some(caller), _) => format!("user:{}", caller.user_id),
        (None, Some(ip)) => format!("ip:{ip}"),
        (None, None) => return Ok(()),
    };
    let what = if caller.is_some() {
        "for these credentials"
    } else {
        "from this address"
    };
    hit(
        state,
        &key,
        limit,
        &format!("{limit} requests per minute {what}"),
    )
    .await
}

/// Counts a login attempt against the account's and the IP's budgets.
pub async fn check_login(state: &AppState, email: &str, ip: Option<&str>) -> Result<(), Response> {
    let limit = state.login_limit_per_min;
    let account = format!("login:{}", email.trim().to_lowercase());
    hit(
        state,
        &account,
        limit,
        &format!("{limit} login attempts per minute for this account"),
    )
    .await?;
    check_login_ip(state, ip).await
}

/// Counts a login attempt against its address only (a login through an identity provider,
/// whose account is not known before it is done).
pub async fn check_login_ip(state: &AppState, ip: Option<&str>) -> Result<(), Response> {
    if let Some(ip) = ip {
        let per_ip = state
            .login_limit_per_min
            .saturating_mul(LOGINS_PER_IP_FACTOR);
        let what = format!("{per_ip} login attempts per minute from this address");
        hit(state, &format!("login-ip:{ip}"), per_ip, &what).await?;
    }
    Ok(())
}

async fn hit(state: &AppState, key: &str, limit: u32, what: &str) -> Result<(), Response> {
    if limit == 0 {
        return Ok(());
    }
    match state.backends.limiter.hit(key, limit, MINUTE).await {
        Ok(Decision::Allowed) => Ok(()),
        Ok(Decision::Limited { retry_after }) => Err(too_many(what, retry_after)),
        Err(e) => {
            tracing::warn!(error = %e, "Rate limiter unavailable; letting the request through.");
            Ok(())
        }
    }
}

fn too_many(what: &str, retry_after: Duration) -> Response {
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let message = format!("too many requests: the limit is {what}; retry in {secs} s");
    let mut response =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).into_response();
    if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}
