//! The codex32 API: REST under `/api/v1` (one module per resource in [`routes`]), auth, the
//! OpenAPI document and its reference page, health probes and metrics. Stateless: any number
//! of API processes can serve the same deployment.

mod audit;
pub mod auth;
mod caches;
pub mod error;
mod extract;
mod last_use;
mod limits;
pub mod mailer;
pub mod oauth;
mod openapi;
pub mod rbac;
pub mod routes;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use codex32_shared::Backends;
use codex32_shared::config::{ApiConfig, Config};
use codex32_shared::domain::Role;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::auth::TokenKeys;
use crate::error::ApiError;
pub use crate::state::AppState;

/// Largest request body: a 256 KiB script or a 1 MiB input fit with room to spare.
const BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Requests taking longer are answered with 503 rather than held forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub use codex32_shared::telemetry::metrics_handle;

/// Builds the API state; fails if the token secret is missing or weak.
pub fn state(backends: Backends, common: &Config, config: &ApiConfig) -> anyhow::Result<AppState> {
    let keyring = common
        .keyring()
        .map_err(|e| anyhow::anyhow!("CODEX32_SECRETS_KEY: {e}"))?;
    let secret = config
        .jwt_secret
        .as_ref()
        .context("CODEX32_JWT_SECRET is not set: give every API process the same secret of at least 32 characters")?;
    if secret.expose().len() < 32 {
        bail!("CODEX32_JWT_SECRET is too short: use at least 32 characters");
    }
    Ok(AppState {
        submitter: codex32_shared::submit::Submitter::start(backends.clone()),
        api_keys: caches::key_cache(backends.bus.clone(), caches::TTL),
        bots: caches::bot_cache(backends.bus.clone(), caches::TTL),
        last_use: Arc::default(),
        backends,
        tokens: Arc::new(TokenKeys::new(
            secret.expose().as_bytes(),
            config.access_token_ttl_s,
            config.refresh_token_ttl_s,
        )),
        max_input_bytes: config.max_input_kb.saturating_mul(1024),
        metrics: metrics_handle(),
        rate_limit_per_min: config.rate_limit_per_min,
        login_limit_per_min: config.login_limit_per_min,
        keyring: keyring.map(Arc::new),
        registration: config.registration,
        public_url: config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.bind))
            .trim_end_matches('/')
            .to_owned(),
        mailer: match &config.mailer_url {
            Some(url) => Arc::new(mailer::HttpMailer::new(url).map_err(anyhow::Error::msg)?),
            None => Arc::new(mailer::LogMailer),
        },
        reset_token_ttl_s: config.reset_token_ttl_s,
        oauth: Arc::new(
            oauth::Providers::load(config.oauth_config.as_deref())
                .map_err(|e| anyhow::anyhow!("CODEX32_OAUTH_CONFIG: {e}"))?,
        ),
        shutdown: CancellationToken::new(),
    })
}

/// The whole HTTP application, separate from serving it so tests can call it directly.
pub fn app(state: AppState) -> Router {
    let (router, doc) = openapi::router().split_for_parts();
    openapi::publish(doc);
    router
        .route_layer(middleware::from_fn_with_state(state.clone(), rbac::enforce))
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take this method; see /api/v1/openapi.json",
            )
        })
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such route; see /api/v1/openapi.json",
            )
        })
        .layer(middleware::from_fn(track))
        .layer(middleware::from_fn(audit::remember_source))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("a request handler panicked").into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Counts requests and their latency by method, route template and status.
async fn track(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("codex32_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("codex32_http_request_duration_seconds", "method" => method, "route" => route).record(started.elapsed().as_secs_f64());
    response
}

/// Creates the bootstrap admin if it is configured and does not exist yet.
pub async fn bootstrap_admin(state: &AppState, config: &ApiConfig) -> anyhow::Result<()> {
    let (Some(email), Some(password)) = (&config.admin_email, &config.admin_password) else {
        return Ok(());
    };
    let email = routes::users::parse_email(email)
        .map_err(|e| anyhow::anyhow!("CODEX32_ADMIN_EMAIL: {}", e.message))?;
    if state.backends.store.user_by_email(&email).await?.is_some() {
        return Ok(());
    }
    routes::users::create(state, &email, password.expose(), Role::Admin, None, true)
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the admin {email}: {}", e.message))?;
    tracing::info!(email = %email, "Created the bootstrap admin.");
    Ok(())
}

/// Binds the configured address. Separate from [`serve`] so the caller learns the port.
pub async fn bind(config: &ApiConfig) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(&config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Serves until `shutdown`, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut state = AppState {
        shutdown: shutdown.child_token(),
        ..state
    };
    // Bound to port 0 with no public URL configured: links name the port actually bound.
    if state.public_url.ends_with(":0") {
        state.public_url = format!("http://{}", listener.local_addr()?);
    }
    let app = app(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}
