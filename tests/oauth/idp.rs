//! A fake identity provider, in the test process, that speaks the real protocols: OpenID
//! Connect (discovery, authorize redirect, token endpoint with client authentication and
//! PKCE S256, RS256-signed ID tokens with a published JWKS, user info) and GitHub's OAuth
//! flavour (form token endpoint answering errors with 200, `/user`, `/user/emails`).
//! "Who is logged in at the provider" is set by the test, as a browser session would be.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A person with an account at the provider.
#[derive(Clone, Debug)]
pub struct Person {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    /// Google's Workspace domain of the account (`hd`).
    pub hd: Option<String>,
}

impl Person {
    pub fn new(sub: &str, email: &str, email_verified: bool) -> Self {
        Self {
            sub: sub.into(),
            email: email.into(),
            email_verified,
            hd: None,
        }
    }

    pub fn in_workspace(self, domain: &str) -> Self {
        Self {
            hd: Some(domain.into()),
            ..self
        }
    }
}

#[derive(Clone)]
struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    person: Person,
    used: bool,
}

struct Inner {
    url: String,
    /// client id → (secret, registered redirect URIs)
    clients: HashMap<String, (String, Vec<String>)>,
    signed_in: Option<Person>,
    codes: HashMap<String, Grant>,
    access_tokens: HashMap<String, Person>,
    key: jsonwebtoken::EncodingKey,
    kid: String,
    jwk: Value,
    /// Signs ID tokens with HS256 keyed by the client secret (an algorithm-confusion attempt).
    hs256: bool,
    /// Signs ID tokens with a key it does not publish (a forged token).
    rogue_key: Option<jsonwebtoken::EncodingKey>,
    /// Leaves the email out of ID tokens (it is then only in user info).
    email_only_in_userinfo: bool,
    /// Codes presented again after they were redeemed.
    pub replays: u32,
    next: u64,
}

#[derive(Clone)]
pub struct FakeIdp {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

const KID: &str = "fake-key-1";

impl FakeIdp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (key, jwk) = rsa_key(KID);
        let inner = Arc::new(Mutex::new(Inner {
            url: url.clone(),
            clients: HashMap::new(),
            signed_in: None,
            codes: HashMap::new(),
            access_tokens: HashMap::new(),
            key,
            kid: KID.into(),
            jwk,
            hs256: false,
            rogue_key: None,
            email_only_in_userinfo: false,
            replays: 0,
            next: 0,
        }));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .route("/jwks", get(jwks))
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(github_token))
            .route("/api/user", get(github_user))
            .route("/api/user/emails", get(github_emails))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, inner }
    }

    /// Registers a client with its secret and the one redirect URI it may use.
    pub fn register(&self, client_id: &str, secret: &str, redirect_uri: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner
            .clients
            .insert(client_id.into(), (secret.into(), vec![redirect_uri.into()]));
    }

    /// Who is logged in at the provider, in "the browser".
    pub fn sign_in(&self, person: Person) {
        self.inner.lock().unwrap().signed_in = Some(person);
    }

    pub fn forge_id_tokens(&self) {
        let (rogue, _) = rsa_key(KID);
        self.inner.lock().unwrap().rogue_key = Some(rogue);
    }

    /// Replaces the signing key by a new one (new kid); the old one is no longer published.
    pub fn rotate_key(&self) {
        let (key, jwk) = rsa_key("fake-key-2");
        let mut inner = self.inner.lock().unwrap();
        (inner.key, inner.jwk, inner.kid) = (key, jwk, "fake-key-2".into());
    }

    pub fn sign_hs256(&self) {
        self.inner.lock().unwrap().hs256 = true;
    }

    pub fn email_only_in_userinfo(&self) {
        self.inner.lock().unwrap().email_only_in_userinfo = true;
    }

    pub fn replays(&self) -> u32 {
        self.inner.lock().unwrap().replays
    }
}

type Shared = State<Arc<Mutex<Inner>>>;

async fn discovery(State(inner): Shared) -> axum::Json<Value> {
    let url = inner.lock().unwrap().url.clone();
    axum::Json(json!({
        "issuer": url,
        "authorization_endpoint": format!("{url}/authorize"),
        "token_endpoint": format!("{url}/token"),
        "userinfo_endpoint": format!("{url}/userinfo"),
        "jwks_uri": format!("{url}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }))
}

async fn jwks(State(inner): Shared) -> axum::Json<Value> {
    axum::Json(json!({ "keys": [inner.lock().unwrap().jwk.clone()] }))
}

/// The authorization endpoint: checks the request like a real provider and, the user being
/// logged in already, redirects back with a code (or, for a bad request, with an error).
async fn authorize(State(inner): Shared, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut inner = inner.lock().unwrap();
    let param = |k: &str| q.get(k).cloned().unwrap_or_default();
    let (client_id, redirect_uri) = (param("client_id"), param("redirect_uri"));
    let registered = inner
        .clients
        .get(&client_id)
        .is_some_and(|(_, uris)| uris.contains(&redirect_uri));
    if !registered {
        // Never redirect to an unregistered URI.
        return (StatusCode::BAD_REQUEST, "unknown client or redirect_uri").into_response();
    }
    let state = param("state");
    let back = |pairs: &[(&str, &str)]| {
        let mut to = url::Url::parse(&redirect_uri).expect("a registered redirect URI");
        to.query_pairs_mut().extend_pairs(pairs);
        (StatusCode::FOUND, [(header::LOCATION, to.to_string())]).into_response()
    };
    let pkce_ok = param("code_challenge_method") == "S256" && param("code_challenge").len() == 43;
    if param("response_type") != "code" || state.is_empty() || !pkce_ok {
        return back(&[("error", "invalid_request"), ("state", &state)]);
    }
    let Some(person) = inner.signed_in.clone() else {
        return (StatusCode::OK, "<form>log in</form>").into_response();
    };
    inner.next += 1;
    let code = format!("code-{}-{}", inner.next, random_hex(16));
    let grant = Grant {
        client_id,
        redirect_uri: redirect_uri.clone(),
        challenge: param("code_challenge"),
        nonce: q.get("nonce").cloned(),
        person,
        used: false,
    };
    inner.codes.insert(code.clone(), grant);
    back(&[("code", &code), ("state", &state)])
}

/// The token endpoint's checks: client authentication, a live code for this client and
/// redirect URI, and the PKCE verifier. Returns the grant, or the OAuth error.
fn redeem(
    inner: &mut Inner,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Grant, (StatusCode, &'static str, &'static str)> {
    let (client_id, secret) = client_credentials(headers, form).ok_or((
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "no client authentication",
    ))?;
    let ok = inner
        .clients
        .get(&client_id)
        .is_some_and(|(s, _)| *s == secret);
    if !ok {
        return Err((
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "bad client credentials",
        ));
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return Err((
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "code only",
        ));
    }
    let code = form.get("code").cloned().unwrap_or_default();
    let Some(grant) = inner.codes.get_mut(&code) else {
        return Err((StatusCode::BAD_REQUEST, "invalid_grant", "unknown code"));
    };
    if grant.used {
        inner.replays += 1;
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "code already used",
        ));
    }
    grant.used = true;
    let grant = grant.clone();
    if grant.client_id != client_id
        || form.get("redirect_uri").map(String::as_str) != Some(grant.redirect_uri.as_str())
    {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "code issued to another client or redirect_uri",
        ));
    }
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != grant.challenge {
        return Err((
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "PKCE verification failed",
        ));
    }
    Ok(grant)
}

async fn token(
    State(inner): Shared,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    let grant = match redeem(&mut inner, &headers, &form) {
        Ok(grant) => grant,
        Err((status, error, description)) => {
            return (
                status,
                axum::Json(json!({"error": error, "error_description": description})),
            )
                .into_response();
        }
    };
    let access = format!("at-{}", random_hex(16));
    inner
        .access_tokens
        .insert(access.clone(), grant.person.clone());
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({
        "iss": inner.url, "sub": grant.person.sub, "aud": grant.client_id,
        "iat": now, "exp": now + 300, "nonce": grant.nonce,
    });
    if let Some(hd) = &grant.person.hd {
        claims["hd"] = json!(hd);
    }
    if !inner.email_only_in_userinfo {
        claims["email"] = json!(grant.person.email);
        claims["email_verified"] = json!(grant.person.email_verified);
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(inner.kid.clone());
    let id_token = if inner.hs256 {
        let secret = inner.clients[&grant.client_id].0.clone();
        header.alg = jsonwebtoken::Algorithm::HS256;
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    } else {
        let key = inner.rogue_key.as_ref().unwrap_or(&inner.key);
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };
    axum::Json(json!({
        "access_token": access, "token_type": "Bearer", "expires_in": 3600,
        "id_token": id_token, "scope": "openid email profile",
    }))
    .into_response()
}

async fn userinfo(State(inner): Shared, headers: HeaderMap) -> Response {
    match bearer_person(&inner, &headers) {
        Some(p) => {
            axum::Json(json!({"sub": p.sub, "email": p.email, "email_verified": p.email_verified}))
                .into_response()
        }
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// GitHub's token endpoint: like OAuth's, but errors come back as 200 with an error document.
async fn github_token(
    State(inner): Shared,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut inner = inner.lock().unwrap();
    match redeem(&mut inner, &headers, &form) {
        Ok(grant) => {
            let access = format!("gho_{}", random_hex(16));
            inner.access_tokens.insert(access.clone(), grant.person);
            axum::Json(json!({"access_token": access, "token_type": "bearer", "scope": "read:user,user:email"}))
                .into_response()
        }
        Err((_, "invalid_grant", _)) => axum::Json(json!({
            "error": "bad_verification_code",
            "error_description": "The code passed is incorrect or expired.",
        }))
        .into_response(),
        Err((_, error, description)) => {
            axum::Json(json!({"error": error, "error_description": description})).into_response()
        }
    }
}

async fn github_user(State(inner): Shared, headers: HeaderMap) -> Response {
    if !headers.contains_key(header::USER_AGENT) {
        return (StatusCode::FORBIDDEN, "a User-Agent header is required").into_response();
    }
    match bearer_person(&inner, &headers) {
        Some(p) => axum::Json(json!({"id": p.sub.parse::<u64>().unwrap_or(1), "login": "octo"}))
            .into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn github_emails(State(inner): Shared, headers: HeaderMap) -> Response {
    match bearer_person(&inner, &headers) {
        Some(p) => axum::Json(json!([
            {"email": "octo@users.noreply.github.com", "primary": false, "verified": true, "visibility": null},
            {"email": p.email, "primary": true, "verified": p.email_verified, "visibility": "public"},
        ]))
        .into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

fn bearer_person(inner: &Arc<Mutex<Inner>>, headers: &HeaderMap) -> Option<Person> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("token "))?;
    inner.lock().unwrap().access_tokens.get(token).cloned()
}

/// HTTP Basic (`client_secret_basic`, form-urlencoded parts) or the form (`client_secret_post`).
fn client_credentials(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<(String, String)> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = String::from_utf8(STANDARD.decode(basic).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        return Some((form_decoded(id), form_decoded(secret)));
    }
    Some((
        form.get("client_id")?.clone(),
        form.get("client_secret")?.clone(),
    ))
}

/// A fresh RSA-2048 signing key and its public JWK.
fn rsa_key(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair as _;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = pair.as_der().unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_der(pkcs1_of_pkcs8(pkcs8.as_ref()));
    let public = pair.public_key();
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let jwk = json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": b64(public.modulus().big_endian_without_leading_zero()),
        "e": b64(public.exponent().big_endian_without_leading_zero()),
    });
    (key, jwk)
}

/// The RSAPrivateKey inside a PKCS#8 PrivateKeyInfo (SEQUENCE { version, algorithm,
/// OCTET STRING privateKey }).
fn pkcs1_of_pkcs8(der: &[u8]) -> &[u8] {
    fn read(d: &[u8]) -> (u8, &[u8], &[u8]) {
        let (len, header) = if d[1] < 0x80 {
            (d[1] as usize, 2)
        } else {
            let n = (d[1] & 0x7f) as usize;
            (
                d[2..2 + n].iter().fold(0, |acc, b| acc << 8 | *b as usize),
                2 + n,
            )
        };
        (d[0], &d[header..header + len], &d[header + len..])
    }
    let (_, info, _) = read(der);
    let (_, _, rest) = read(info); // version
    let (_, _, rest) = read(rest); // algorithm
    let (tag, key, _) = read(rest);
    assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
    key
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).unwrap();
    hex::encode(buf)
}

/// One form-urlencoded component (the parts of `client_secret_basic`), decoded.
fn form_decoded(s: &str) -> String {
    url::form_urlencoded::parse(s.as_bytes())
        .map(|(k, _)| k.into_owned())
        .next()
        .unwrap_or_default()
}
