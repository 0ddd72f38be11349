//! Logging in with identity providers: GitHub, Google and any OpenID Connect provider, by the
//! authorization-code flow with PKCE, a single-use state bound to the browser, and (OIDC) a
//! nonce in a signature-checked ID token. The routes are in `routes::oauth`.

mod config;
mod github;
mod http;
mod oidc;
mod provider;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use http::Http;
pub use provider::{Endpoints, Provider};

/// Who logged in, as the provider vouches.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The provider's stable id of the account (never its email, which can change hands).
    pub subject: String,
    pub email: String,
    pub email_verified: bool,
    /// Google's `hd`: the Workspace domain the account belongs to (None for personal ones).
    pub hosted_domain: Option<String>,
}

/// The configured providers.
pub struct Providers {
    by_name: BTreeMap<String, Arc<Provider>>,
    pub http: Http,
}

impl Providers {
    /// Reads the provider file, if one is configured.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        let list = match path {
            Some(path) => config::load(path)?,
            None => Vec::new(),
        };
        Ok(Self {
            by_name: list
                .into_iter()
                .map(|p| (p.name.clone(), Arc::new(p)))
                .collect(),
            http: Http::new()?,
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Provider>> {
        self.by_name.get(name).cloned()
    }

    pub fn list(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.by_name.values()
    }
}

/// Why a login with a provider failed on the provider's side.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("cannot complete the login with the identity provider ({what}): {detail}")]
    Unreachable { what: String, detail: String },
    #[error(
        "the identity provider did not accept the authorization code ({0}): it was already used, has expired or belongs to another login; start the login again"
    )]
    CodeRejected(String),
    #[error("the identity provider's ID token is not valid: {0}")]
    BadIdToken(String),
    #[error(
        "the identity provider shared no email address: allow codex32 to read it, then log in again"
    )]
    NoEmail,
}
