//! Batch submission: many executions of one bot in one request — for bulk producers and the
//! load harness. All or nothing: every item is checked before anything is written, a bad one
//! rejects the request naming its index, and the 202 comes once every execution is durable.

use axum::extract::State;
use axum::http::StatusCode;
use codex32_shared::Timestamp;
use codex32_shared::domain::{Execution, NewExecution};
use codex32_shared::submit::submit_many;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::RunRequest;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::routes::bots::runnable_bot;
use crate::state::AppState;

/// Most executions one batch request may create.
pub const MAX_BATCH: usize = 1000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 1000 executions, each as the body of `POST /bots/{id}/executions`.
    #[schema(value_type = Vec<RunRequest>)]
    pub executions: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResponse {
    /// The executions, in the order of the request (an item whose idempotency key was used
    /// before gets that first execution).
    pub executions: Vec<Execution>,
    /// How many of them are new.
    pub created: usize,
}

/// Start many executions of a bot at once. All or nothing: a bad item rejects the whole
/// request (the error names `executions[i]`) and creates nothing; the 202 means every
/// execution is durably queued.
#[utoipa::path(post, path = "/bots/{id}/executions/batch", tag = "executions", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Bot id")), request_body = BatchRequest,
    responses((status = 202, body = BatchResponse, description = "All queued"),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create_batch(
    State(state): State<AppState>,
    caller: Caller,
    Path(bot_id): Path<Uuid>,
    Json(req): Json<BatchRequest>,
) -> Result<(StatusCode, axum::Json<BatchResponse>), ApiError> {
    caller.require_write()?;
    let items = parse_items(req.executions, state.max_input_bytes)?;
    let bot = runnable_bot(&state, &caller, bot_id).await?;
    crate::routes::bots::refuse_service(&bot)?;
    let now = Timestamp::now();
    let news: Vec<NewExecution> = items
        .into_iter()
        .map(|item| {
            let mut new = NewExecution::of(&bot, item.input, "created through the API (batch)");
            new.priority = item.priority;
            new.idempotency_key = item.idempotency_key;
            new.run_at = item
                .delay_s
                .filter(|d| *d > 0)
                .map(|d| now.plus_millis((d * 1000) as i64));
            new.created_by = Some(caller.user_id);
            new
        })
        .collect();
    let results = submit_many(&state.backends, &news, bot.owner_id).await?;
    let created = results.iter().filter(|(_, new)| *new).count();
    let executions = results.into_iter().map(|(e, _)| e).collect();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(BatchResponse {
            executions,
            created,
        }),
    ))
}

/// Reads and checks every item; the first bad one is the error, named by its index.
fn parse_items(raw: Vec<Value>, max_input_bytes: usize) -> Result<Vec<RunRequest>, ApiError> {
    if raw.is_empty() || raw.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "executions",
            format!("must hold 1 to {MAX_BATCH} items (it holds {})", raw.len()),
        ));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, value)| {
            let item: RunRequest = serde_json::from_value(value)
                .map_err(|e| ApiError::invalid(&format!("executions[{i}]"), e.to_string()))?;
            item.validate(max_input_bytes).map_err(|e| at_index(e, i))?;
            Ok(item)
        })
        .collect()
}

/// Puts an item's error under `executions[i]`: in its field detail and its message.
fn at_index(mut e: ApiError, i: usize) -> ApiError {
    let field = e
        .details
        .as_ref()
        .and_then(|d| d["field"].as_str())
        .map(str::to_owned);
    let prefix = format!("executions[{i}]");
    match field {
        Some(field) => {
            let message = e
                .message
                .strip_prefix(&format!("{field}: "))
                .unwrap_or(&e.message)
                .to_owned();
            e.message = format!("{prefix}.{field}: {message}");
            e.details =
                Some(serde_json::json!({ "field": format!("{prefix}.{field}"), "index": i }));
        }
        None => {
            e.message = format!("{prefix}: {}", e.message);
            e.details = Some(serde_json::json!({ "field": prefix, "index": i }));
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_bad_item_is_named_by_its_index_and_field() {
        let items = vec![json!({"input": 1}), json!({"input": 2, "priority": 500})];
        let e = parse_items(items, 1024).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.details.unwrap()["field"], "executions[1].priority");
        assert!(
            e.message.starts_with("executions[1].priority: must be"),
            "{}",
            e.message
        );
    }

    #[test]
    fn an_unknown_field_or_oversized_input_names_the_item_and_empty_or_huge_batches_are_refused() {
        let e = parse_items(vec![json!({"inptu": 1})], 1024).unwrap_err();
        assert_eq!(e.details.unwrap()["field"], "executions[0]");
        assert!(e.message.contains("inptu"), "{}", e.message);
        let big = json!({"input": "x".repeat(2000)});
        let e = parse_items(vec![json!({}), big], 1024).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.details.unwrap()["field"], "executions[1].input");
        assert!(parse_items(vec![], 1024).is_err());
        assert!(parse_items(vec![json!({}); MAX_BATCH + 1], 1024).is_err());
        assert_eq!(
            parse_items(vec![json!({}); MAX_BATCH], 1024).unwrap().len(),
            MAX_BATCH
        );
    }
}
