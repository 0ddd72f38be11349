//! One module per resource; this root only merges their routers.

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod bots;
pub mod executions;
pub mod fleet;
pub mod health;
pub mod history;
pub mod oauth;
pub mod secrets;
pub mod services;
pub mod users;
pub mod webhooks;
pub mod ws;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// Every `/api/v1` route.
pub fn api_v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(auth::router())
        .merge(accounts::router())
        .merge(oauth::router())
        .merge(users::router())
        .merge(audit::router())
        .merge(api_keys::router())
        .merge(bots::router())
        .merge(services::router())
        .merge(webhooks::router())
        .merge(secrets::router())
        .merge(executions::router())
        .merge(history::router())
        .merge(fleet::router())
        .merge(ws::router())
}
