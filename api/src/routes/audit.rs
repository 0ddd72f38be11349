//! The audit log, for admins: who changed what, and every login.

use axum::extract::State;
use codex32_shared::Timestamp;
use codex32_shared::store::{AuditFilter, AuditRecord};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only what this user did.
    pub actor_id: Option<Uuid>,
    /// Only actions starting with this, e.g. `bot.` or `auth.login_failed`.
    pub action: Option<String>,
    /// Only entries about this target (an id, an email, a pool name).
    pub target: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// At most 1000; default 100.
    pub limit: Option<i64>,
}

/// Audit entries, newest first (admins only).
#[utoipa::path(get, path = "/audit", tag = "users", security(("bearer" = [])), params(AuditParams),
    responses((status = 200, body = Vec<AuditRecord>), (status = 403, body = ErrorBody)))]
async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<AuditParams>,
) -> Result<axum::Json<Vec<AuditRecord>>, ApiError> {
    caller.require_admin()?;
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let filter = AuditFilter {
        actor_id: p.actor_id,
        action_prefix: p.action,
        target: p.target,
        since: p.since.map(Timestamp::from),
        limit,
    };
    Ok(axum::Json(state.backends.store.list_audit(&filter).await?))
}
