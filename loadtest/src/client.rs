//! The harness's only way into codex32: its public HTTP API, authenticated with an API key
//! (the WebSocket lives in [`crate::ws`]). Calls made under load return a [`CallError`]
//! whose `kind` is what the report counts; setup calls fail the run with [`Error::Setup`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::error::Error;

/// Longest any single call may take before it counts as a `timeout`.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest page the list endpoint serves.
pub const PAGE: usize = 500;

/// A failed call under load, by kind: `http 503 unavailable`, `timeout`, `connect`, ….
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub kind: String,
    /// What the server said (its `error.message`), or what failed below HTTP; for setup
    /// errors, where a person reads it.
    pub message: Option<String>,
    /// The server's `Retry-After` on a 429 or 503: when a read after the load may try again.
    pub retry_after: Option<Duration>,
}

impl CallError {
    fn new(kind: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: None,
            retry_after: None,
        }
    }

    fn from_reqwest(e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else if e.is_decode() || e.is_body() {
            "bad response"
        } else {
            "request"
        };
        let mut source: &dyn std::error::Error = e;
        while let Some(inner) = source.source() {
            source = inner;
        }
        Self {
            message: Some(source.to_string()),
            ..Self::new(kind)
        }
    }

    /// Whether the server refused the call for the caller's request rate.
    pub fn is_rate_limited(&self) -> bool {
        self.kind.starts_with("http 429")
    }

    /// The kind and, where known, what the server said.
    pub fn explained(&self) -> String {
        match &self.message {
            Some(message) if !message.is_empty() => format!("{}: {message}", self.kind),
            _ => self.kind.clone(),
        }
    }
}

/// What to do about 429 answers: the API's per-caller limit counts every request of the run.
pub const RATE_LIMIT_HINT: &str = "; that is the API's per-caller rate limit: start the API \
     with CODEX32_RATE_LIMIT_PER_MIN=0 to load-test it (loadtest/README.md, The standard set)";

/// Refuses a base URL the client could only fail on later, with a vaguer message.
fn check_url(url: &str) -> Result<(), Error> {
    let bad = |why: &str| {
        Error::Usage(format!(
            "--url {url:?} {why}: give codex32's base URL, such as http://127.0.0.1:8080"
        ))
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(bad("needs http:// or https:// and a host"));
    }
    Ok(())
}

/// An execution as the harness needs it: its identity, outcome and timestamps.
#[derive(Debug, Clone, Deserialize)]
pub struct ExecRow {
    pub id: Uuid,
    pub bot_id: Uuid,
    pub status: String,
    pub attempt: i32,
    pub queued_at: DateTime<Utc>,
    pub run_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub scheduled_for: Option<DateTime<Utc>>,
}

impl ExecRow {
    pub fn is_final(&self) -> bool {
        matches!(
            self.status.as_str(),
            "succeeded" | "failed" | "timed_out" | "cancelled"
        )
    }
}

#[derive(Deserialize)]
struct Created {
    id: Uuid,
}

#[derive(Deserialize)]
struct CreatedBatch {
    executions: Vec<Created>,
}

#[derive(Deserialize)]
struct Depth {
    pool: String,
    ready: u64,
    delayed: u64,
    leased: u64,
}

/// A client of one codex32 deployment.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    /// The deployment's base URL, as given.
    url: String,
    /// `…/api/v1`
    base: String,
    auth: HeaderValue,
    key: String,
}

impl Api {
    /// A client keeping up to `connections` idle connections for reuse.
    pub fn new(url: &str, api_key: &str, connections: usize) -> Result<Self, Error> {
        check_url(url)?;
        let url = url.trim_end_matches('/');
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(connections.max(1))
            .tcp_nodelay(true)
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let auth = HeaderValue::from_str(&format!("Bearer {api_key}"))
            .map_err(|_| Error::Usage("the API key holds characters a header cannot".into()))?;
        Ok(Self {
            http,
            url: url.to_owned(),
            base: format!("{url}/api/v1"),
            auth,
            key: api_key.to_owned(),
        })
    }

    /// The WebSocket URL and the key to present there.
    pub fn ws_target(&self) -> (String, &str) {
        (
            format!("{}/ws", self.base.replacen("http", "ws", 1)),
            &self.key,
        )
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, CallError> {
        let resp = req
            .header(AUTHORIZATION, self.auth.clone())
            .send()
            .await
            .map_err(|e| CallError::from_reqwest(&e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp
            .bytes()
            .await
            .map_err(|e| CallError::from_reqwest(&e))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let error = serde_json::from_slice::<Value>(&body)
            .ok()
            .map(|v| v["error"].clone())
            .unwrap_or_default();
        let code = error["code"].as_str().unwrap_or_default();
        Err(CallError {
            kind: format!("http {} {code}", status.as_u16()).trim().to_owned(),
            message: error["message"].as_str().map(str::to_owned),
            retry_after,
        })
    }

    fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, CallError> {
        serde_json::from_slice(body).map_err(|_| CallError::new("bad response"))
    }

    fn post_json(&self, path: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/json")
            .body(body)
    }

    /// `POST /bots/{id}/executions` with a ready-made JSON body; the new execution's id.
    pub async fn submit(&self, bot: Uuid, body: Vec<u8>) -> Result<Uuid, CallError> {
        let resp = self
            .call(self.post_json(&format!("/bots/{bot}/executions"), body))
            .await?;
        Ok(Self::json::<Created>(&resp)?.id)
    }

    /// `POST /bots/{id}/executions/batch`; the ids in request order.
    pub async fn submit_batch(&self, bot: Uuid, body: Vec<u8>) -> Result<Vec<Uuid>, CallError> {
        let resp = self
            .call(self.post_json(&format!("/bots/{bot}/executions/batch"), body))
            .await?;
        let batch: CreatedBatch = Self::json(&resp)?;
        Ok(batch.executions.into_iter().map(|c| c.id).collect())
    }

    /// One page of executions (of one bot, or all the key sees), newest first, older than
    /// `before`.
    pub async fn list(
        &self,
        bot: Option<Uuid>,
        status: Option<&str>,
        before: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<ExecRow>, CallError> {
        // Ids, numbers and status words: nothing to escape.
        let mut url = format!("{}/executions?limit={limit}", self.base);
        if let Some(bot) = bot {
            url.push_str(&format!("&bot_id={bot}"));
        }
        if let Some(status) = status {
            url.push_str(&format!("&status={status}"));
        }
        if let Some(before) = before {
            url.push_str(&format!("&before={before}"));
        }
        let req = self.http.get(url);
        Self::json(&self.call(req).await?)
    }

    /// `GET /executions/{id}` (a dashboard's detail view).
    pub async fn get_execution(&self, id: Uuid) -> Result<(), CallError> {
        let req = self.http.get(format!("{}/executions/{id}", self.base));
        self.call(req).await.map(drop)
    }

    /// `GET /executions/{id}/logs` (a dashboard's log view).
    pub async fn logs(&self, id: Uuid) -> Result<(), CallError> {
        let req = self.http.get(format!("{}/executions/{id}/logs", self.base));
        self.call(req).await.map(drop)
    }

    /// Ids waiting, delayed or leased in a pool's queue.
    pub async fn queue_depth(&self, pool: &str) -> Result<u64, CallError> {
        let req = self.http.get(format!("{}/queues", self.base));
        let depths: Vec<Depth> = Self::json(&self.call(req).await?)?;
        Ok(depths
            .iter()
            .filter(|d| d.pool == pool)
            .map(|d| d.ready + d.delayed + d.leased)
            .sum())
    }

    /// Checks the key before any load is sent.
    pub async fn check_key(&self) -> Result<(), Error> {
        let req = self.http.get(format!("{}/auth/me", self.base));
        self.call(req)
            .await
            .map(drop)
            .map_err(|e| self.setup_error("checking the API key (GET /api/v1/auth/me)", &e))
    }

    /// Checks that a bot given with `--bot` exists and the key sees it.
    pub async fn check_bot(&self, id: Uuid) -> Result<(), Error> {
        let req = self.http.get(format!("{}/bots/{id}", self.base));
        self.call(req).await.map(drop).map_err(|e| {
            let what = format!("reading the bot {id} (GET /api/v1/bots/{id})");
            let mut error = self.setup_error(&what, &e);
            if let (Error::Setup { reason, .. }, true) = (&mut error, e.kind.starts_with("http 404")) {
                reason.push_str(
                    "; give the id of a bot the key's user can see (GET /api/v1/bots lists them), or leave out --bot",
                );
            }
            error
        })
    }

    /// Creates a bot; its id.
    pub async fn create_bot(&self, spec: &Value) -> Result<Uuid, Error> {
        let body = serde_json::to_vec(spec).unwrap_or_default();
        let what = "creating the run's bot (POST /api/v1/bots)";
        let resp = self
            .call(self.post_json("/bots", body))
            .await
            .map_err(|e| self.setup_error(what, &e))?;
        Self::json::<Created>(&resp)
            .map(|c| c.id)
            .map_err(|e| self.setup_error(what, &e))
    }

    /// A refused setup call, with what the server said and what to do about it.
    fn setup_error(&self, what: &str, e: &CallError) -> Error {
        let hint = match e.kind.as_str() {
            "connect" | "timeout" => format!(
                "; is codex32 running at {}? Give its address with --url or CODEX32_LOADTEST_URL",
                self.url
            ),
            k if k.starts_with("http 401") => {
                "; check the key given with --api-key or CODEX32_API_KEY (loadtest/README.md, Quick start, shows how to make one)".to_owned()
            }
            _ if e.is_rate_limited() => RATE_LIMIT_HINT.to_owned(),
            _ => String::new(),
        };
        Error::setup(what, format!("{}{hint}", e.explained()))
    }

    /// `POST /bots/{id}/pause`: its schedule stops firing.
    pub async fn pause_bot(&self, id: Uuid) -> Result<(), CallError> {
        self.call(self.post_json(&format!("/bots/{id}/pause"), vec![]))
            .await
            .map(drop)
    }

    /// `DELETE /bots/{id}`; its executions stay readable.
    pub async fn delete_bot(&self, id: Uuid) -> Result<(), CallError> {
        let req = self.http.delete(format!("{}/bots/{id}", self.base));
        self.call(req).await.map(drop)
    }
}
