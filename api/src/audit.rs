//! Recording who changed what, for every change made through the API.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use codex32_shared::Timestamp;
use codex32_shared::store::AuditEntry;
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

tokio::task_local! {
    /// The address of the request being handled, for "from where" in its audit entries.
    static SOURCE: Option<String>;
}

/// Middleware: remembers the request's address while it is handled.
pub async fn remember_source(req: Request, next: Next) -> Response {
    let ip = crate::limits::ip_of(req.extensions());
    SOURCE.scope(ip, next.run(req)).await
}

/// Appends one audit entry; a change whose audit cannot be written reports an error. The
/// request's address is added to the details as `ip` (unless they name one).
pub async fn record(
    state: &AppState,
    actor: Option<Uuid>,
    action: &str,
    target: impl ToString,
    mut details: Value,
) -> Result<(), ApiError> {
    if let (Some(map), Ok(Some(ip))) = (details.as_object_mut(), SOURCE.try_with(Clone::clone)) {
        map.entry("ip").or_insert(Value::String(ip));
    }
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

/// What a change changed: `{"before": {...}, "after": {...}}` with only the top-level fields
/// that differ, so an audit entry shows the change, not two copies of the whole thing.
pub fn diff(before: &impl Serialize, after: &impl Serialize) -> Value {
    let (before, after) = (to_object(before), to_object(after));
    let mut old = Map::new();
    let mut new = Map::new();
    for key in before.keys().chain(after.keys()) {
        let (b, a) = (before.get(key), after.get(key));
        if b != a && !old.contains_key(key) {
            old.insert(key.clone(), b.map(summary).unwrap_or(Value::Null));
            new.insert(key.clone(), a.map(summary).unwrap_or(Value::Null));
        }
    }
    json!({ "before": old, "after": new })
}

/// Texts longer than [`LONG_TEXT`] (a bot's script) are kept as their size and digest: the
/// audit log says that they changed without holding every version of them.
const LONG_TEXT: usize = 256;

fn summary(value: &Value) -> Value {
    match value {
        Value::String(s) if s.len() > LONG_TEXT => json!({
            "bytes": s.len(),
            "sha256": crate::auth::hash_key(s),
        }),
        other => other.clone(),
    }
}

fn to_object(value: &impl Serialize) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        Ok(other) => Map::from_iter([("value".to_owned(), other)]),
        Err(_) => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_holds_only_what_changed() {
        let before = json!({"name": "a", "timeout_s": 30, "env": {"X": "1"}, "gone": true});
        let after = json!({"name": "a", "timeout_s": 60, "env": {"X": "2"}, "new": 1});
        assert_eq!(
            diff(&before, &after),
            json!({
                "before": {"timeout_s": 30, "env": {"X": "1"}, "gone": true, "new": null},
                "after": {"timeout_s": 60, "env": {"X": "2"}, "gone": null, "new": 1},
            })
        );
        assert_eq!(diff(&1, &1), json!({"before": {}, "after": {}}));
        let long = "x".repeat(1000);
        let d = diff(&json!({"script": "echo"}), &json!({"script": long}));
        assert_eq!(d["before"]["script"], "echo");
        assert_eq!(d["after"]["script"]["bytes"], 1000, "{d}");
        assert_eq!(
            d["after"]["script"]["sha256"].as_str().map(str::len),
            Some(64)
        );
        assert_eq!(
            diff(&1, &2),
            json!({"before": {"value": 1}, "after": {"value": 2}})
        );
    }
}
