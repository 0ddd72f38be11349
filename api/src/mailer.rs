//! Emails codex32 sends (password-reset links), through one pluggable boundary: written to
//! the log by default, or posted to a mail relay's HTTP endpoint (`CODEX32_MAILER_URL`).

use std::time::Duration;

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: &Mail) -> Result<(), String>;
}

/// Writes each mail to the log: the default, so a one-person install can still reset a
/// password (the link is in the API's log).
pub struct LogMailer;

#[async_trait]
impl Mailer for LogMailer {
    async fn send(&self, mail: &Mail) -> Result<(), String> {
        tracing::warn!(to = %mail.to, subject = %mail.subject, text = %mail.text,
            "Mail not sent (no CODEX32_MAILER_URL): here it is.");
        Ok(())
    }
}

/// Posts each mail as JSON `{"to","subject","text"}` to a relay; a 2xx means accepted.
pub struct HttpMailer {
    url: String,
    http: reqwest::Client,
}

impl HttpMailer {
    pub fn new(url: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("CODEX32_MAILER_URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("CODEX32_MAILER_URL must be an http:// or https:// URL".into());
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            url: url.to_owned(),
            http,
        })
    }
}

#[async_trait]
impl Mailer for HttpMailer {
    async fn send(&self, mail: &Mail) -> Result<(), String> {
        let resp = self
            .http
            .post(&self.url)
            .json(mail)
            .send()
            .await
            .map_err(|e| format!("the mail relay is unreachable: {e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("the mail relay answered {}", resp.status()))
        }
    }
}
