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
