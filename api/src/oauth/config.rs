//! The identity-provider file (`CODEX32_OAUTH_CONFIG`): read once at start-up, checked whole,
//! so a typo stops the API with the line to fix rather than failing a user's login later.

use std::collections::BTreeMap;
use std::path::Path;

use codex32_shared::domain::Role;
use serde::Deserialize;

use super::provider::{Endpoints, Provider};

/// The file: one `[providers.<name>]` table per provider.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    providers: BTreeMap<String, Entry>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Github,
    Google,
    Oidc,
}

/// One provider as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    kind: Kind,
    client_id: String,
    client_secret: Option<String>,
    /// The name of an environment variable holding the client secret.
    client_secret_env: Option<String>,
    display_name: Option<String>,
    /// OpenID Connect issuer (`oidc`: required; `google`: https://accounts.google.com).
    issuer: Option<String>,
    /// GitHub (Enterprise) web address (default https://github.com).
    url: Option<String>,
    /// GitHub (Enterprise) API address (default https://api.github.com).
    api_url: Option<String>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    allowed_domains: Vec<String>,
    /// Whether a first login creates an account (off unless asked for: a provider opens the
    /// server to everyone with an account there).
    #[serde(default)]
    signup: bool,
    role: Option<Role>,
}

/// Reads and checks the providers of `path`.
pub fn load(path: &Path) -> Result<Vec<Provider>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses and checks a provider file's text.
pub fn parse(text: &str) -> Result<Vec<Provider>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    file.providers
        .into_iter()
        .map(|(name, entry)| provider(&name, entry).map_err(|e| format!("provider {name:?}: {e}")))
        .collect()
}

fn provider(name: &str, e: Entry) -> Result<Provider, String> {
    check_name(name)?;
    if e.client_id.trim().is_empty() {
        return Err("client_id is empty".into());
    }
    let endpoints = endpoints(&e)?;
    let scopes = e.scopes.clone().unwrap_or_else(|| default_scopes(e.kind));
    if e.kind != Kind::Github && !scopes.iter().any(|s| s == "openid") {
        return Err(
            "scopes must include \"openid\": without it no ID token says who logged in".into(),
        );
    }
    let role = e.role.unwrap_or(Role::User);
    if !matches!(role, Role::User | Role::Viewer) {
        return Err(
            "role must be user or viewer: give admin rights by hand, after the first login".into(),
        );
    }
    Ok(Provider {
        name: name.to_owned(),
        display_name: e
            .display_name
            .clone()
            .unwrap_or_else(|| default_display(name, e.kind)),
        client_id: e.client_id.trim().to_owned(),
        client_secret: client_secret(&e)?,
        scopes,
        allowed_domains: domains(&e.allowed_domains)?,
        signup: e.signup,
        role,
        google: e.kind == Kind::Google,
        endpoints,
    })
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err("a name is 1 to 32 of a-z, 0-9 and -, not starting with -: it appears in URLs".into())
    }
}

fn endpoints(e: &Entry) -> Result<Endpoints, String> {
    let only_for = |field: &str, value: &Option<String>, kind: &str| match value {
        Some(_) => Err(format!("{field} applies only to kind = \"{kind}\"")),
        None => Ok(()),
    };
    match e.kind {
        Kind::Github => {
            only_for("issuer", &e.issuer, "oidc")?;
            let web = url(e.url.as_deref().unwrap_or("https://github.com"), "url")?;
            let api = url(
                e.api_url.as_deref().unwrap_or("https://api.github.com"),
                "api_url",
            )?;
            Ok(Endpoints::GitHub {
                authorize: format!("{web}/login/oauth/authorize"),
                token: format!("{web}/login/oauth/access_token"),
                api,
            })
        }
        Kind::Google | Kind::Oidc => {
            only_for("url", &e.url, "github")?;
            only_for("api_url", &e.api_url, "github")?;
            let issuer = match (&e.issuer, e.kind) {
                (Some(issuer), _) => issuer.as_str(),
                (None, Kind::Google) => "https://accounts.google.com",
                (None, _) => return Err("issuer is required for kind = \"oidc\"".into()),
            };
            Ok(Endpoints::Oidc(super::oidc::Oidc::new(url(
                issuer, "issuer",
            )?)))
        }
    }
}

/// An absolute https URL (http only on a loopback address), without its trailing slash:
/// keys, tokens and the client secret travel over it.
fn url(value: &str, field: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(value).map_err(|e| format!("{field} {value:?}: {e}"))?;
    let loopback = match parsed.host() {
        Some(oauth2::url::Host::Domain(d)) => d == "localhost",
        Some(oauth2::url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(oauth2::url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    let ok = parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback);
    if !ok {
        return Err(format!(
            "{field} {value:?} must be an https URL (plain http only on a loopback address)"
        ));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

fn client_secret(e: &Entry) -> Result<Option<String>, String> {
    match (&e.client_secret, &e.client_secret_env) {
        (Some(_), Some(_)) => Err("give client_secret or client_secret_env, not both".into()),
        (Some(secret), None) => Ok(Some(secret.clone())),
        (None, Some(var)) => std::env::var(var)
            .map(Some)
            .map_err(|_| format!("client_secret_env names {var:?}, which is not set")),
        (None, None) if e.kind == Kind::Github => {
            Err("GitHub needs a client secret (client_secret or client_secret_env)".into())
        }
        (None, None) => Ok(None),
    }
}

fn domains(list: &[String]) -> Result<Vec<String>, String> {
    list.iter()
        .map(|d| {
            let d = d.trim().trim_start_matches('@').to_lowercase();
            if d.is_empty() || d.contains('@') || d.contains(char::is_whitespace) {
                Err(format!("allowed_domains: {d:?} is not a domain"))
            } else {
                Ok(d)
            }
        })
        .collect()
}

fn default_display(name: &str, kind: Kind) -> String {
    match kind {
        Kind::Github => "GitHub".into(),
        Kind::Google => "Google".into(),
        Kind::Oidc => name.to_owned(),
    }
}

fn default_scopes(kind: Kind) -> Vec<String> {
    let scopes: &[&str] = match kind {
        Kind::Github => &["read:user", "user:email"],
        Kind::Google | Kind::Oidc => &["openid", "email", "profile"],
    };
    scopes.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "client_id = \"id\"\nclient_secret = \"s\"\n";

    #[test]
    fn a_full_file_parses_with_defaults() {
        let text = format!(
            "[providers.github]\nkind = \"github\"\n{CLIENT}\n[providers.google]\nkind = \"google\"\n{CLIENT}allowed_domains = [\"Example.com\"]\n\n[providers.sso]\nkind = \"oidc\"\nissuer = \"https://sso.example.com/realm/\"\n{CLIENT}role = \"viewer\"\n"
        );
        let providers = parse(&text).unwrap();
        let names: Vec<_> = providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["github", "google", "sso"]);
        assert_eq!(providers[0].scopes, ["read:user", "user:email"]);
        assert_eq!(providers[1].allowed_domains, ["example.com"]);
        assert_eq!(providers[1].display_name, "Google");
        assert_eq!(providers[2].role, Role::Viewer);
        match &providers[0].endpoints {
            Endpoints::GitHub { token, api, .. } => {
                assert_eq!(token, "https://github.com/login/oauth/access_token");
                assert_eq!(api, "https://api.github.com");
            }
            Endpoints::Oidc(_) => panic!("github is not OIDC"),
        }
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            (
                "[providers.x]\nkind = \"oidc\"\nclient_id = \"id\"\n",
                "issuer is required",
            ),
            (
                "[providers.X]\nkind = \"google\"\nclient_id = \"id\"\n",
                "a name is",
            ),
            (
                "[providers.g]\nkind = \"github\"\nclient_id = \"id\"\n",
                "needs a client secret",
            ),
            (
                "[providers.g]\nkind = \"google\"\nclient_id = \"\"\n",
                "client_id is empty",
            ),
            (
                "[providers.g]\nkind = \"google\"\nclient_id = \"i\"\nrole = \"admin\"\n",
                "role must be",
            ),
            (
                "[providers.g]\nkind = \"google\"\nclient_id = \"i\"\nurl = \"https://x\"\n",
                "applies only",
            ),
            (
                "[providers.g]\nkind = \"oidc\"\nclient_id = \"i\"\nissuer = \"ftp://x\"\n",
                "https URL",
            ),
            (
                "[providers.g]\nkind = \"oidc\"\nclient_id = \"i\"\nissuer = \"http://sso.example.com\"\n",
                "https URL",
            ),
            (
                "[providers.g]\nkind = \"google\"\nclient_id = \"i\"\nscopes = [\"email\"]\n",
                "openid",
            ),
            (
                "[providers.g]\nkind = \"saml\"\nclient_id = \"i\"\n",
                "unknown variant",
            ),
            (
                "[providers.g]\nkind = \"google\"\nclient_id = \"i\"\ncolour = 1\n",
                "unknown field",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).err().unwrap_or_default();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
