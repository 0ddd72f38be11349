//! The OpenAPI document of every route, built from the handlers' annotations as they are
//! registered (so no route can be left out), served at `/api/v1/openapi.json` with a
//! browsable reference at `/api/v1/docs`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_scalar::Scalar;

use crate::routes;
use crate::state::AppState;

static DOCUMENT: OnceLock<String> = OnceLock::new();

#[derive(OpenApi)]
#[openapi(
    info(title = "codex32", description = "Run bash and python bots on demand or on cron schedules, isolated, on a fleet of workers. \
        Authenticate with `POST /api/v1/auth/login`, then send `Authorization: Bearer <access token or API key>`."),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "users"), (name = "api-keys"), (name = "bots"), (name = "services"), (name = "webhooks"), (name = "secrets"), (name = "executions"), (name = "fleet"), (name = "health"), (name = "docs"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("An access token or an API key (`c32_…`)"))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Every route, with its documentation.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(
            "/api/v1",
            routes::api_v1()
                .routes(routes!(openapi_json))
                .routes(routes!(reference)),
        )
        .merge(routes::health::router())
}

/// Keeps the finished document for the two routes below.
pub fn publish(doc: utoipa::openapi::OpenApi) {
    let _ = DOCUMENT.set(doc.to_pretty_json().unwrap_or_default());
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "docs", responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get().cloned().unwrap_or_default(),
    )
}

/// A browsable reference of this API.
#[utoipa::path(get, path = "/docs", tag = "docs", responses((status = 200, description = "HTML page", content_type = "text/html")))]
async fn reference() -> Html<String> {
    let doc: serde_json::Value = DOCUMENT
        .get()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or_default();
    Html(Scalar::new(doc).title("codex32 API").to_html())
}
