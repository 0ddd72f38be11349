//! What every handler can reach.

use std::sync::Arc;

use codex32_shared::Backends;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::TokenKeys;

/// Shared, cheaply cloned state of the API.
#[derive(Clone)]
pub struct AppState {
    pub backends: Backends,
    /// Single executions created through the API, group-committed under load.
    pub submitter: codex32_shared::submit::Submitter,
    /// API keys recently presented, so each request does not read its key from the store.
    pub api_keys: Arc<crate::caches::KeyCache>,
    /// API key and webhook uses this process has written, so each is written once a minute.
    pub last_use: Arc<crate::last_use::LastUse>,
    /// Bots recently run, so each execution created does not read its bot from the store.
    pub bots: Arc<crate::caches::BotCache>,
    pub tokens: Arc<TokenKeys>,
    /// Largest execution input, in bytes of JSON.
    pub max_input_bytes: usize,
    pub metrics: PrometheusHandle,
    /// Requests per minute per caller (0: none).
    pub rate_limit_per_min: u32,
    /// Login attempts per minute per account (0: none).
    pub login_limit_per_min: u32,
    /// Who may register.
    pub registration: codex32_shared::config::RegistrationMode,
    /// Where users reach the API, for links in mails.
    pub public_url: String,
    pub mailer: Arc<dyn crate::mailer::Mailer>,
    pub reset_token_ttl_s: u64,
    /// Identity providers users may log in with.
    pub oauth: Arc<crate::oauth::Providers>,
    /// Seals secrets; None when no key is configured (secrets are off).
    pub keyring: Option<Arc<codex32_shared::secrets::Keyring>>,
    /// Cancelled when the server shuts down: long-lived connections (WebSockets), which
    /// graceful shutdown does not wait for, close on it.
    pub shutdown: CancellationToken,
}
