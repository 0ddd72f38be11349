//! Logging in with an identity provider (see `crate::oauth` and docs/oauth.md): the list of
//! providers, the start of a login (a redirect to the provider, with a single-use state bound
//! to the browser by a cookie, a PKCE challenge and a nonce) and its callback, which redeems
//! the code, verifies who logged in, finds, links or creates their account and issues tokens.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use codex32_shared::Timestamp;
use codex32_shared::domain::User;
use codex32_shared::store::{OAuthIdentity, OAuthLogin};
use oauth2::PkceCodeChallenge;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::audit;
use crate::auth::{hash_key, random_hex};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Path, Query};
use crate::limits;
use crate::oauth::{Identity, Provider};
use crate::routes::auth::{TokenResponse, tokens_for};
use crate::routes::users::parse_email;
use crate::state::AppState;

/// How long a started login may take to come back.
const LOGIN_TTL_S: i64 = 600;
/// The cookie that ties a login's state to the browser that started it.
const COOKIE: &str = "codex32_oauth";
/// Where the routes are, under the public URL (which may have a path of its own).
const ROUTES_PATH: &str = "/api/v1/auth/oauth";
/// The longest provider text (an error description) repeated in answers and the audit log.
const MAX_PROVIDER_TEXT: usize = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(providers))
        .routes(routes!(start))
        .routes(routes!(callback))
}

/// An identity provider users may log in with.
#[derive(Serialize, ToSchema)]
pub struct ProviderInfo {
    pub name: String,
    pub display_name: String,
    /// `github` or `oidc` (Google is OIDC).
    pub kind: &'static str,
    /// Open this in a browser to log in.
    pub login_url: String,
    /// The redirect (callback) URI to register with the provider.
    pub redirect_uri: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StartParams {
    /// Where the browser goes after the login, with the tokens in the URL's fragment
    /// (`#access_token=…&refresh_token=…`): a path (`/app`) or an address under the public
    /// URL. Without it the callback answers with the tokens as JSON.
    pub redirect_to: Option<String>,
}

/// What the provider sends the browser back with.
#[derive(Deserialize, IntoParams)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    /// Set when the provider refused the login (`access_denied`, say).
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// The identity providers configured (`CODEX32_OAUTH_CONFIG`); empty when there are none.
#[utoipa::path(get, path = "/auth/oauth/providers", tag = "auth",
    responses((status = 200, body = Vec<ProviderInfo>)))]
async fn providers(State(state): State<AppState>) -> axum::Json<Vec<ProviderInfo>> {
    let list = state.oauth.list().map(|p| ProviderInfo {
        name: p.name.clone(),
        display_name: p.display_name.clone(),
        kind: p.kind(),
        login_url: format!("{}{ROUTES_PATH}/{}/start", state.public_url, p.name),
        redirect_uri: redirect_uri(&state, &p.name),
    });
    axum::Json(list.collect())
}

/// Starts a login: redirects the browser to the provider (303), with a cookie that only the
/// callback reads. The login must come back within 10 minutes.
#[utoipa::path(get, path = "/auth/oauth/{provider}/start", tag = "auth",
    params(("provider" = String, Path, description = "A provider's name"), StartParams),
    responses((status = 303, description = "To the provider's authorization page"), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(params): Query<StartParams>,
) -> Result<Response, ApiError> {
    let provider = provider(&state, &name)?;
    let redirect_to = params
        .redirect_to
        .map(|r| check_redirect(&state, r))
        .transpose()?;
    let login_state = random_hex(32);
    let nonce = random_hex(16);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let url = provider
        .authorize_url(
            &state.oauth.http,
            &redirect_uri(&state, &name),
            &login_state,
            challenge,
            &nonce,
        )
        .await?;
    let now = Timestamp::now();
    state
        .backends
        .store
        .create_oauth_login(&OAuthLogin {
            state_hash: hash_key(&login_state),
            provider: name,
            pkce_verifier: verifier.secret().clone(),
            nonce,
            redirect_to,
            created_at: now,
            expires_at: now.plus_millis(LOGIN_TTL_S * 1000),
        })
        .await?;
    let cookie = cookie(&state, &login_state, LOGIN_TTL_S);
    Ok(redirect(&url, cookie))
}

/// Where the provider sends the browser back: finishes the login and answers with tokens (or
/// redirects to the `redirect_to` given at the start, with the tokens in the fragment). A
/// verified email links the login to the account with that address; a first login creates an
/// account if the provider's settings allow it.
#[utoipa::path(get, path = "/auth/oauth/{provider}/callback", tag = "auth",
    params(("provider" = String, Path, description = "A provider's name"), CallbackParams),
    responses((status = 200, body = TokenResponse), (status = 303, description = "To `redirect_to`, tokens in the fragment"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody), (status = 502, body = ErrorBody)))]
async fn callback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    parts: Parts,
    Query(params): Query<CallbackParams>,
) -> Result<Response, Response> {
    let ip = limits::client_ip(&parts);
    limits::check_login_ip(&state, ip.as_deref()).await?;
    let result = finish(&state, &name, &parts, params).await;
    let mut details = json!({ "method": "oauth", "provider": name });
    match result {
        Ok((user, redirect_to)) => {
            let d = details;
            audit::record_or_log(&state, Some(user.id), "auth.login", &user.email, d).await;
            respond(&state, &user, redirect_to)
                .await
                .map_err(IntoResponse::into_response)
        }
        Err(e) => {
            details["reason"] = json!(truncate(&e.message));
            let d = details;
            audit::record_or_log(&state, None, "auth.login_failed", &name, d).await;
            Err(e.into_response())
        }
    }
}

/// Checks the state, redeems the code and finds the account: the user and where to go next.
async fn finish(
    state: &AppState,
    name: &str,
    parts: &Parts,
    params: CallbackParams,
) -> Result<(User, Option<String>), ApiError> {
    let provider = provider(state, name)?;
    if let Some(error) = params.error {
        let error = truncate(&error);
        let detail = truncate(&params.error_description.unwrap_or_default());
        return Err(ApiError::unauthorized(format!(
            "{} refused the login ({error}{}{detail}): start it again",
            provider.display_name,
            if detail.is_empty() { "" } else { ": " },
        )));
    }
    let (Some(code), Some(login_state)) = (params.code, params.state) else {
        return Err(ApiError::invalid(
            "code",
            "the callback needs the code and state the provider sends: open the provider's login through /start",
        ));
    };
    if !cookie_matches(parts, &login_state) {
        return Err(ApiError::unauthorized(
            "this login was not started in this browser (its state does not match the cookie set by /start): start the login again",
        ));
    }
    let login = state
        .backends
        .store
        .take_oauth_login(&hash_key(&login_state), Timestamp::now())
        .await?
        .filter(|l| l.provider == name)
        .ok_or_else(|| {
            ApiError::unauthorized(
                "unknown, used or expired login state (a login finishes once, within 10 minutes): start the login again",
            )
        })?;
    let identity = provider
        .finish(
            &state.oauth.http,
            &redirect_uri(state, name),
            &code,
            &login.pkce_verifier,
            &login.nonce,
        )
        .await?;
    let user = account_for(state, &provider, &identity).await?;
    Ok((user, login.redirect_to))
}

/// The account of a provider identity: the one it is linked to; else the account with its
/// verified address, which it is then linked to; else a new one, if the provider may create
/// accounts for that address's domain.
async fn account_for(
    state: &AppState,
    provider: &Provider,
    identity: &Identity,
) -> Result<User, ApiError> {
    let store = &state.backends.store;
    if let Some(user_id) = store
        .identity_user(&provider.name, &identity.subject)
        .await?
    {
        return store
            .user_by_id(user_id)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the linked account no longer exists"));
    }
    let email = parse_email(&identity.email)?;
    if !identity.email_verified {
        return Err(ApiError::forbidden(format!(
            "{} has not verified the address {email}: verify it there, then log in again (an unverified address neither links to an account nor creates one)",
            provider.display_name
        )));
    }
    let link = OAuthIdentity {
        provider: provider.name.clone(),
        subject: identity.subject.clone(),
        user_id: Uuid::now_v7(),
        email: email.clone(),
        created_at: Timestamp::now(),
    };
    if let Some(user) = store.user_by_email(&email).await? {
        if !user.email_verified {
            return Err(ApiError::conflict(format!(
                "an account with {email} exists, but its address was never confirmed, so a login through {} cannot be linked to it: confirm it with a password reset (POST /api/v1/auth/password-reset), then log in through {} again",
                provider.display_name, provider.display_name
            )));
        }
        let link = OAuthIdentity {
            user_id: user.id,
            ..link
        };
        store.link_identity(&link).await?;
        let details = json!({ "provider": link.provider, "subject": link.subject, "email": email });
        audit::record(state, Some(user.id), "user.identity_link", user.id, details).await?;
        return Ok(user);
    }
    check_signup(provider, &email, identity.hosted_domain.as_deref())?;
    let user = User {
        id: link.user_id,
        email,
        password_hash: String::new(),
        role: provider.role,
        created_at: link.created_at,
        email_verified: true,
    };
    store.create_user_with_identity(&user, &link).await?;
    let details = json!({ "email": user.email, "role": user.role, "provider": link.provider, "subject": link.subject });
    audit::record(state, Some(user.id), "user.create", user.id, details).await?;
    Ok(user)
}

/// Whether a first login through `provider` may create an account for `email`.
fn check_signup(provider: &Provider, email: &str, hosted: Option<&str>) -> Result<(), ApiError> {
    if !provider.signup {
        return Err(ApiError::forbidden(format!(
            "no account uses {email}, and logins through {} do not create accounts here: ask an admin to create yours with this address, then log in again",
            provider.display_name
        )));
    }
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    let allowed = &provider.allowed_domains;
    if !allowed.is_empty() && !allowed.iter().any(|d| d == domain) {
        return Err(ApiError::forbidden(format!(
            "logins through {} create accounts only for addresses at {}; {email} is not one: ask an admin to create your account",
            provider.display_name,
            allowed.join(", ")
        )));
    }
    if provider.google
        && !allowed.is_empty()
        && !hosted.is_some_and(|h| allowed.iter().any(|d| d == h))
    {
        return Err(ApiError::forbidden(format!(
            "logins through {} create accounts only for Google Workspace accounts of {}; this one is not (its address may be attached to a personal Google account): ask an admin to create your account",
            provider.display_name,
            allowed.join(", ")
        )));
    }
    Ok(())
}

/// The tokens, as JSON or as a redirect with them in the fragment; the cookie is cleared.
async fn respond(
    state: &AppState,
    user: &User,
    redirect_to: Option<String>,
) -> Result<Response, ApiError> {
    let tokens = tokens_for(state, user).await?;
    let clear = cookie(state, "", 0);
    let Some(to) = redirect_to else {
        let mut resp = axum::Json(tokens).into_response();
        resp.headers_mut().insert(header::SET_COOKIE, clear);
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(resp);
    };
    let fragment = format!(
        "access_token={}&refresh_token={}&token_type={}&expires_in={}",
        tokens.access_token, tokens.refresh_token, tokens.token_type, tokens.expires_in
    );
    let mut resp = redirect(&format!("{to}#{fragment}"), clear);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

fn provider(state: &AppState, name: &str) -> Result<std::sync::Arc<Provider>, ApiError> {
    state.oauth.get(name).ok_or_else(|| {
        ApiError::not_found(&format!(
            "identity provider {name:?} (GET /api/v1/auth/oauth/providers lists them)"
        ))
    })
}

fn redirect_uri(state: &AppState, name: &str) -> String {
    format!("{}{ROUTES_PATH}/{name}/callback", state.public_url)
}

/// A `redirect_to`: a path on this host, or an address under the public URL (never another
/// site: the tokens travel with it).
fn check_redirect(state: &AppState, to: String) -> Result<String, ApiError> {
    let base = base_path(state);
    let path = to.starts_with(&format!("{base}/")) && !to.starts_with("//") && !to.contains('\\');
    let under_public = to == state.public_url || to.starts_with(&format!("{}/", state.public_url));
    let clean = to.len() <= 2048 && !to.contains('#') && to.chars().all(|c| c.is_ascii_graphic());
    if (path || under_public) && clean {
        Ok(to)
    } else {
        Err(ApiError::invalid(
            "redirect_to",
            format!(
                "must be a path under {base}/ or an address under {} of at most 2048 visible ASCII characters, without a fragment",
                state.public_url
            ),
        ))
    }
}

/// The path of the public URL (empty when it is the host's root).
fn base_path(state: &AppState) -> String {
    reqwest::Url::parse(&state.public_url)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

/// At most [`MAX_PROVIDER_TEXT`] characters of a provider's (or a caller's) text.
fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_PROVIDER_TEXT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn cookie(state: &AppState, value: &str, max_age_s: i64) -> HeaderValue {
    let secure = if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let path = format!("{}{ROUTES_PATH}", base_path(state));
    let text = format!(
        "{COOKIE}={value}; Path={path}; Max-Age={max_age_s}; HttpOnly; SameSite=Lax{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn cookie_matches(parts: &Parts, login_state: &str) -> bool {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(k, v)| {
            k == COOKIE
                && aws_lc_rs::constant_time::verify_slices_are_equal(
                    v.as_bytes(),
                    login_state.as_bytes(),
                )
                .is_ok()
        })
}

fn redirect(location: &str, cookie: HeaderValue) -> Response {
    match HeaderValue::from_str(location) {
        Ok(location) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, location), (header::SET_COOKIE, cookie)],
        )
            .into_response(),
        Err(_) => ApiError::internal("a redirect address is not a valid header").into_response(),
    }
}
