//! The one HTTP client of logins with providers: our reqwest, plugged into `oauth2`, that
//! never follows redirects (a token endpoint that redirects is refused, not chased: SSRF) and
//! gives up after a few seconds so a slow provider cannot hold API requests.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::http;

use super::OAuthError;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest document accepted from a provider (discovery, keys, user info, tokens).
const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Http {
    pub fn new() -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .user_agent(concat!("codex32/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client for identity providers: {e}"))?;
        Ok(Self { client })
    }

    /// Sends `oauth2`'s request (the token exchange).
    pub async fn send(&self, req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, HttpError> {
        let req = reqwest::Request::try_from(req).map_err(HttpError::Request)?;
        let resp = self.client.execute(req).await.map_err(HttpError::Request)?;
        let mut out = http::Response::builder().status(resp.status());
        for (name, value) in resp.headers() {
            out = out.header(name, value);
        }
        let body = read_capped(resp)
            .await
            .map_err(|e| HttpError::Response(format!("token endpoint: {e}")))?;
        out.body(body)
            .map_err(|e| HttpError::Response(e.to_string()))
    }

    /// GETs a JSON document (with a bearer token, if given) and decodes it.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        bearer: Option<&str>,
        what: &str,
    ) -> Result<T, OAuthError> {
        let mut req = self
            .client
            .get(url)
            .header(http::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let unreachable = |detail: String| OAuthError::Unreachable {
            what: what.to_owned(),
            detail,
        };
        let resp = req.send().await.map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status();
        let body = read_capped(resp)
            .await
            .map_err(|e| unreachable(format!("{url}: {e}")))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(unreachable(format!("{url} answered {status}: {text}")));
        }
        serde_json::from_slice(&body).map_err(|e| unreachable(format!("{url}: {e}")))
    }
}

impl<'c> oauth2::AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// A response body, refused past [`MAX_BODY`] bytes without reading the rest.
async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let too_big = || format!("the answer is larger than {MAX_BODY} bytes");
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A failed request to a provider.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Request(#[from] reqwest::Error),
    #[error("{0}")]
    Response(String),
}
