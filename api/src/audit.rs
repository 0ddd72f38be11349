//! Recording who changed what, for every change made through the API.

use codex32_shared::Timestamp;
use codex32_shared::store::AuditEntry;
use serde_json::Value;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// Appends one audit entry; a change whose audit cannot be written reports an error.
pub async fn record(
    state: &AppState,
    actor: Option<Uuid>,
    action: &str,
    target: impl ToString,
    details: Value,
) -> Result<(), ApiError> {
    let entry = AuditEntry {
        actor_id: actor,
        action: action.to_owned(),
        target: target.to_string(),
        details,
        at: Timestamp::now(),
    };
    Ok(state.backends.store.record_audit(&entry).await?)
}

/// Appends one audit entry of an event that must not fail for want of its audit (a login, a
/// logout): a store error is logged instead.
pub async fn record_or_log(
    state: &AppState,
    actor: Option<Uuid>,
    action: &str,
    target: impl ToString,
    details: Value,
) {
    if let Err(e) = record(state, actor, action, target, details).await {
        tracing::warn!(error = %e.message, action, "Cannot record an audit entry.");
    }
}
