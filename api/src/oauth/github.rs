//! GitHub speaks OAuth2 but not OpenID Connect: who the user is comes from its REST API —
//! the stable numeric id from `/user`, the verified addresses from `/user/emails`.

use serde::Deserialize;

use super::http::Http;
use super::{Identity, OAuthError};

#[derive(Deserialize)]
struct User {
    id: u64,
}

#[derive(Deserialize)]
struct Email {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

/// The GitHub user an access token belongs to, with their primary address (verified or not:
/// the caller decides), or without a primary one, their first verified one.
pub async fn identity(http: &Http, api: &str, token: &str) -> Result<Identity, OAuthError> {
    let user: User = http
        .get_json(&format!("{api}/user"), Some(token), "GitHub user")
        .await?;
    let emails: Vec<Email> = http
        .get_json(&format!("{api}/user/emails"), Some(token), "GitHub emails")
        .await?;
    let chosen = emails
        .iter()
        .find(|e| e.primary)
        .or_else(|| emails.iter().find(|e| e.verified))
        .ok_or(OAuthError::NoEmail)?;
    Ok(Identity {
        subject: user.id.to_string(),
        email: chosen.email.clone(),
        email_verified: chosen.verified,
        hosted_domain: None,
    })
}
