//! One configured provider and the two halves of its login: the address to send the browser
//! to, and turning the code it comes back with into a verified identity.

use oauth2::basic::{
    BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse,
    BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse,
    TokenUrl,
};
use serde::{Deserialize, Serialize};

use super::http::Http;
use super::oidc::Oidc;
use super::{Identity, OAuthError};
use codex32_shared::domain::Role;

pub struct Provider {
    /// Its name in URLs and in the file.
    pub name: String,
    pub display_name: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    /// Email domains whose first login creates an account (empty: any).
    pub allowed_domains: Vec<String>,
    /// Whether a first login creates an account (else only linked or existing ones log in).
    pub signup: bool,
    /// The role of accounts it creates.
    pub role: Role,
    /// Google: with `allowed_domains`, sign-up also needs the Workspace domain (`hd`) to be
    /// one of them — an address of the domain on a personal Google account is not enough.
    pub google: bool,
    pub endpoints: Endpoints,
}

pub enum Endpoints {
    GitHub {
        authorize: String,
        token: String,
        api: String,
    },
    Oidc(Oidc),
}

/// The `id_token` an OpenID Connect token response carries beside the access token.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct IdTokenField {
    #[serde(default)]
    pub id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenField {}

type Tokens = StandardTokenResponse<IdTokenField, BasicTokenType>;
type Client = oauth2::Client<
    BasicErrorResponse,
    Tokens,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Where a provider's endpoints are and how it takes the client secret.
struct Flow {
    authorize: String,
    token: String,
    secret_in_body: bool,
}

impl Provider {
    pub fn kind(&self) -> &'static str {
        match &self.endpoints {
            Endpoints::GitHub { .. } => "github",
            Endpoints::Oidc(_) => "oidc",
        }
    }

    /// The provider's authorization URL for a login with this state, PKCE challenge and nonce.
    pub async fn authorize_url(
        &self,
        http: &Http,
        redirect_uri: &str,
        state: &str,
        challenge: PkceCodeChallenge,
        nonce: &str,
    ) -> Result<String, OAuthError> {
        let flow = self.flow(http).await?;
        let client = self.client(&flow, redirect_uri)?;
        let state = state.to_owned();
        let mut req = client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(self.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge);
        if matches!(self.endpoints, Endpoints::Oidc(_)) {
            req = req.add_extra_param("nonce", nonce);
        }
        Ok(req.url().0.to_string())
    }

    /// Redeems the code (with the login's PKCE verifier) and returns who logged in.
    pub async fn finish(
        &self,
        http: &Http,
        redirect_uri: &str,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Identity, OAuthError> {
        let flow = self.flow(http).await?;
        let client = self.client(&flow, redirect_uri)?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(http)
            .await
            .map_err(token_error)?;
        let access = tokens.access_token().secret();
        match &self.endpoints {
            Endpoints::GitHub { api, .. } => super::github::identity(http, api, access).await,
            Endpoints::Oidc(oidc) => {
                let id_token = tokens.extra_fields().id_token.as_deref().ok_or_else(|| {
                    OAuthError::BadIdToken("the token response carries no id_token".into())
                })?;
                oidc.identity(http, id_token, access, &self.client_id, nonce)
                    .await
            }
        }
    }

    async fn flow(&self, http: &Http) -> Result<Flow, OAuthError> {
        match &self.endpoints {
            Endpoints::GitHub {
                authorize, token, ..
            } => Ok(Flow {
                authorize: authorize.clone(),
                token: token.clone(),
                secret_in_body: true,
            }),
            Endpoints::Oidc(oidc) => {
                let m = oidc.metadata(http).await?;
                Ok(Flow {
                    authorize: m.authorization_endpoint.clone(),
                    token: m.token_endpoint.clone(),
                    secret_in_body: m.secret_in_body(),
                })
            }
        }
    }

    fn client(&self, flow: &Flow, redirect_uri: &str) -> Result<Client, OAuthError> {
        let url_error = |what: &str, e: oauth2::url::ParseError| OAuthError::Unreachable {
            what: what.to_owned(),
            detail: e.to_string(),
        };
        let mut client = oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_auth_uri(
                AuthUrl::new(flow.authorize.clone())
                    .map_err(|e| url_error("authorization endpoint", e))?,
            )
            .set_token_uri(
                TokenUrl::new(flow.token.clone()).map_err(|e| url_error("token endpoint", e))?,
            )
            .set_redirect_uri(
                RedirectUrl::new(redirect_uri.to_owned())
                    .map_err(|e| url_error("redirect URI", e))?,
            );
        if let Some(secret) = &self.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.clone()));
        }
        if flow.secret_in_body || self.client_secret.is_none() {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        Ok(client)
    }
}

/// A failed code exchange: the provider's refusal of the code is the user's to retry; anything
/// else (unreachable, refused credentials, garbage) is the provider's or the configuration's.
fn token_error(err: RequestTokenError<super::http::HttpError, BasicErrorResponse>) -> OAuthError {
    let refusal = match &err {
        RequestTokenError::ServerResponse(e) => Some(e.clone()),
        // GitHub answers 200 with an error document: read it as one.
        RequestTokenError::Parse(_, body) => {
            serde_json::from_slice::<BasicErrorResponse>(body).ok()
        }
        _ => None,
    };
    match refusal {
        Some(e) => {
            let code = e.error().as_ref().to_owned();
            let detail = match e.error_description() {
                Some(d) => format!("{code}: {d}"),
                None => code.clone(),
            };
            let rejected = matches!(e.error(), BasicErrorResponseType::InvalidGrant)
                || code == "bad_verification_code";
            if rejected {
                OAuthError::CodeRejected(detail)
            } else {
                OAuthError::Unreachable {
                    what: "token endpoint".into(),
                    detail: format!(
                        "it refused the exchange ({detail}): check client_id and the client secret"
                    ),
                }
            }
        }
        None => OAuthError::Unreachable {
            what: "token endpoint".into(),
            detail: err.to_string(),
        },
    }
}
