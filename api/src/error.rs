//! The one mapping from failures to HTTP: every error body is
//! `{"error":{"code","message","details"}}`. Lower layers' errors are converted with `From`;
//! a 5xx body never carries internals — the cause is logged once, here.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use codex32_shared::bus::BusError;
use codex32_shared::domain::Invalid;
use codex32_shared::queue::QueueError;
use codex32_shared::store::StoreError;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// An error as the client sees it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// The error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable `code` for programs, a `message` for people.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Invalid::new(field, message).into()
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// A server-side failure: logged with its cause, shown generically.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "Internal error while serving a request.");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the cause is in the server log",
        )
    }

    fn unavailable(what: &str, cause: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "{what} unavailable while serving a request.");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the {what} is unavailable; try again shortly"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                details: self.details,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        let details = serde_json::json!({ "field": e.field });
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
            .with_details(details)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { entity, detail } => {
                ApiError::conflict(format!("{entity} already exists: {detail}"))
            }
            StoreError::Unavailable(_) => ApiError::unavailable("store", e),
            StoreError::Query(_)
            | StoreError::Corrupt(_)
            | StoreError::Migrate(_)
            | StoreError::Config(_) => ApiError::internal(e),
        }
    }
}

impl From<crate::oauth::OAuthError> for ApiError {
    fn from(e: crate::oauth::OAuthError) -> Self {
        use crate::oauth::OAuthError;
        match e {
            OAuthError::Unreachable { .. } => {
                ApiError::new(StatusCode::BAD_GATEWAY, "provider_error", e.to_string())
            }
            OAuthError::CodeRejected(_) | OAuthError::BadIdToken(_) => {
                ApiError::unauthorized(e.to_string())
            }
            OAuthError::NoEmail => ApiError::forbidden(e.to_string()),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Unavailable(_) => ApiError::unavailable("queue", e),
            QueueError::Protocol(_) => ApiError::internal(e),
        }
    }
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        ApiError::unavailable("event bus", e)
    }
}

/// What serde said about a body, without axum's preamble and the line/column noise, and the
/// field it concerns when it names one.
fn body_problem(text: &str) -> (String, Option<String>) {
    let text = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(text);
    let text = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => text,
    };
    let field = match text.split_once(": ") {
        Some((path, _)) if !path.contains(' ') && path != "." => Some(path.to_owned()),
        _ => text
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned),
    };
    (text.to_owned(), field)
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if let JsonRejection::JsonDataError(e) = &r {
            let (message, field) = body_problem(&e.body_text());
            let error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message);
            return match field {
                Some(field) => error.with_details(serde_json::json!({ "field": field })),
                None => error,
            };
        }
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                r.status(),
                "body_too_large",
                "the request body is larger than the 4 MiB limit",
            );
        }
        let code = match &r {
            JsonRejection::JsonDataError(_) => "invalid_body",
            JsonRejection::JsonSyntaxError(_) => "malformed_json",
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            JsonRejection::BytesRejection(_) => "body_unreadable",
            _ => "bad_request",
        };
        ApiError::new(r.status(), code, r.body_text())
    }
}

impl From<axum::extract::rejection::MissingJsonContentType> for ApiError {
    fn from(r: axum::extract::rejection::MissingJsonContentType) -> Self {
        JsonRejection::from(r).into()
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text())
    }
}
