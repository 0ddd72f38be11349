//! Extractors whose rejections speak the API's error format instead of axum's plain text.

use axum::extract::{FromRequest, FromRequestParts};

use crate::error::ApiError;

/// A JSON body; unknown fields, wrong types and malformed JSON become 4xx API errors.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// An empty body without a content type reads as `None`: for requests whose every field is
/// optional. A body without a content type is still refused, so no input is silently lost.
impl<T, S> axum::extract::OptionalFromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(
        req: axum::extract::Request,
        state: &S,
    ) -> Result<Option<Self>, ApiError> {
        let has_type = req.headers().contains_key(axum::http::header::CONTENT_TYPE);
        if has_type {
            let axum::Json(value) =
                <axum::Json<T> as FromRequest<S>>::from_request(req, state).await?;
            return Ok(Some(Json(value)));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "body_unreadable", e.body_text()))?;
        if bytes.is_empty() {
            Ok(None)
        } else {
            Err(axum::extract::rejection::MissingJsonContentType::default().into())
        }
    }
}

/// A path parameter; a malformed id is a 400 API error.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters, with API errors.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);
