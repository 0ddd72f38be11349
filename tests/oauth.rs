//! Logging in through identity providers, end to end through `codex32 dev` (and the
//! distributed deployment) against a fake provider in this process that speaks the real
//! protocols: authorize redirect, token exchange with PKCE and client authentication, a
//! signed ID token checked against the published keys, user info, and GitHub's API.

mod common;
#[path = "oauth/idp.rs"]
mod idp;

use common::{Client, Cluster, Dev};
use idp::{FakeIdp, Person};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

/// codex32 with three providers at the fake: `sso` (generic OIDC), `corp` (the Google kind,
/// accounts only for example.com) and `github`.
struct Setup {
    idp: FakeIdp,
    client: Client,
    /// A client that does not follow redirects, as a test "browser".
    browser: reqwest::Client,
    _running: Running,
    _config: tempfile::TempDir,
}

#[allow(dead_code)]
enum Running {
    Dev(Dev),
    Cluster(Box<Cluster>),
}

fn providers_file(idp: &str) -> String {
    format!(
        r#"
[providers.sso]
kind = "oidc"
display_name = "Fake SSO"
issuer = "{idp}"
client_id = "codex32-sso"
client_secret = "sso-secret"
signup = true

[providers.corp]
kind = "google"
issuer = "{idp}"
client_id = "codex32-corp"
client_secret = "corp-secret"
signup = true
allowed_domains = ["example.com"]

[providers.github]
kind = "github"
url = "{idp}"
api_url = "{idp}/api"
client_id = "codex32-gh"
client_secret_env = "FAKE_GH_SECRET"
signup = true

[providers.closed]
kind = "oidc"
issuer = "{idp}"
client_id = "codex32-closed"
client_secret = "closed-secret"
"#
    )
}

impl Setup {
    async fn dev() -> Self {
        Self::start(false).await
    }

    async fn start(distributed: bool) -> Self {
        let idp = FakeIdp::start().await;
        let config = tempfile::tempdir().unwrap();
        let path = config.path().join("oauth.toml");
        std::fs::write(&path, providers_file(&idp.url)).unwrap();
        let path = path.display().to_string();
        let env = [
            ("CODEX32_OAUTH_CONFIG", path.as_str()),
            ("FAKE_GH_SECRET", "gh-secret"),
            ("CODEX32_REGISTRATION", "open"),
        ];
        let (running, client) = if distributed {
            let cluster = Cluster::start(0, &env).await;
            let client = cluster.client.clone();
            (Running::Cluster(Box::new(cluster)), client)
        } else {
            let dev = Dev::start(&env).await;
            let client = dev.client.clone();
            (Running::Dev(dev), client)
        };
        // Register codex32 at the provider with the redirect URIs it says to register.
        let listed = client.get("/auth/oauth/providers").await;
        for p in listed.as_array().unwrap() {
            let (id, secret) = match p["name"].as_str().unwrap() {
                "sso" => ("codex32-sso", "sso-secret"),
                "corp" => ("codex32-corp", "corp-secret"),
                "closed" => ("codex32-closed", "closed-secret"),
                _ => ("codex32-gh", "gh-secret"),
            };
            idp.register(id, secret, p["redirect_uri"].as_str().unwrap());
        }
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            idp,
            client,
            browser,
            _running: running,
            _config: config,
        }
    }

    /// The browser's way to the callback: starts a login at codex32, follows the redirect to
    /// the provider (where `person` is logged in) and returns where it sends the browser back
    /// to, with the cookie codex32 set.
    async fn begin(&self, provider: &str, query: &str) -> Callback {
        let start = format!(
            "{}/api/v1/auth/oauth/{provider}/start{query}",
            self.client.base
        );
        let resp = self.browser.get(&start).send().await.unwrap();
        assert_eq!(resp.status(), 303, "{}", resp.text().await.unwrap());
        let cookie = resp.headers()[SET_COOKIE].to_str().unwrap();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        let cookie = cookie.split(';').next().unwrap().to_owned();
        let to_provider = location(&resp);
        let resp = self.browser.get(&to_provider).send().await.unwrap();
        assert_eq!(resp.status(), 302, "{}", resp.text().await.unwrap());
        Callback {
            url: location(&resp),
            cookie,
        }
    }

    /// The browser arriving at the callback.
    async fn finish(&self, cb: &Callback) -> (u16, Value, Option<String>) {
        let resp = self
            .browser
            .get(&cb.url)
            .header(COOKIE, &cb.cookie)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let to = resp
            .headers()
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        (status, resp.json().await.unwrap_or(Value::Null), to)
    }

    async fn login(&self, provider: &str, person: Person) -> (u16, Value) {
        self.idp.sign_in(person);
        let cb = self.begin(provider, "").await;
        let (status, body, _) = self.finish(&cb).await;
        (status, body)
    }

    /// Who a token belongs to.
    async fn me(&self, token: &Value) -> Value {
        let acting = Client {
            base: self.client.base.clone(),
            http: self.client.http.clone(),
            token: token.as_str().unwrap().to_owned(),
        };
        acting.get("/auth/me").await
    }
}

struct Callback {
    url: String,
    cookie: String,
}

impl Callback {
    fn param(&self, name: &str) -> String {
        let query = self.url.split_once('?').unwrap().1;
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_owned()
    }

    fn with_param(&self, name: &str, value: &str) -> Callback {
        let old = format!("{name}={}", self.param(name));
        Callback {
            url: self.url.replace(&old, &format!("{name}={value}")),
            cookie: self.cookie.clone(),
        }
    }
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()[LOCATION].to_str().unwrap().to_owned()
}

fn message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_first_oidc_login_creates_an_account_and_the_next_one_finds_it() {
    let s = Setup::dev().await;
    let grace = Person::new("sub-grace", "Grace@Example.org", true);
    let (status, tokens) = s.login("sso", grace.clone()).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    let cb = s.begin("sso", "").await;
    let resp = s
        .browser
        .get(&cb.url)
        .header(COOKIE, &cb.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["cache-control"],
        "no-store",
        "tokens are not cached"
    );
    let me = s.me(&tokens["access_token"]).await;
    assert_eq!(me["email"], "grace@example.org");
    assert_eq!(me["role"], "user", "the provider's default role");

    // Again: the same account, found by the provider's subject.
    let (status, again) = s.login("sso", grace).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(s.me(&again["access_token"]).await["id"], me["id"]);
    // Its refresh token rotates like a password login's.
    let (status, refreshed) = s
        .client
        .post(
            "/auth/refresh",
            json!({"refresh_token": again["refresh_token"]}),
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    // The account has no password: a password login fails.
    let (status, _) = s
        .client
        .post(
            "/auth/login",
            json!({"email": "grace@example.org", "password": ""}),
        )
        .await;
    assert_eq!(status, 401, "no password to log in with");

    // With redirect_to, the browser lands there with the tokens in the fragment.
    let cb = s.begin("sso", "?redirect_to=/app/welcome").await;
    let (status, _, to) = s.finish(&cb).await;
    assert_eq!(status, 303);
    let to = to.unwrap();
    assert!(to.starts_with("/app/welcome#access_token="), "{to}");
    let token = to
        .split_once("access_token=")
        .unwrap()
        .1
        .split('&')
        .next()
        .unwrap();
    assert_eq!(s.me(&json!(token)).await["id"], me["id"]);

    // A provider that puts the email only in user info.
    s.idp.email_only_in_userinfo();
    let (status, tokens) = s
        .login("sso", Person::new("sub-hopper", "hopper@example.org", true))
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        s.me(&tokens["access_token"]).await["email"],
        "hopper@example.org"
    );

    let created = s.client.get("/audit?action=user.create").await;
    let via_sso = created
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["details"]["provider"] == "sso")
        .count();
    assert_eq!(via_sso, 2, "{created}");
    let logins = s.client.get("/audit?action=auth.login").await;
    let oauth_logins = logins
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "auth.login" && e["details"]["method"] == "oauth")
        .count();
    assert_eq!(oauth_logins, 5, "{logins}");
}

#[tokio::test]
async fn a_bad_state_a_replayed_code_and_a_forged_id_token_are_refused() {
    let s = Setup::dev().await;
    s.idp
        .sign_in(Person::new("sub-mallory", "mallory@example.org", true));

    // The state changed on the way back, or the callback opened in another browser.
    let cb = s.begin("sso", "").await;
    let (status, body, _) = s.finish(&cb.with_param("state", "f00d")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        message(&body).contains("not started in this browser"),
        "{body}"
    );
    let stranger = Callback {
        url: cb.url.clone(),
        cookie: "codex32_oauth=0123".into(),
    };
    assert_eq!(s.finish(&stranger).await.0, 401, "another browser's cookie");
    // A state that matches its cookie but that codex32 never issued.
    let invented = cb.with_param("state", "abcd");
    let invented = Callback {
        cookie: "codex32_oauth=abcd".into(),
        ..invented
    };
    let (status, body, _) = s.finish(&invented).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        message(&body).contains("unknown, used or expired"),
        "{body}"
    );

    // The genuine callback still works once, and only once.
    let (status, body, _) = s.finish(&cb).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = s.finish(&cb).await;
    assert_eq!(status, 401, "the same callback again: {body}");

    // A spent code carried into a new login: the provider refuses it.
    let next = s.begin("sso", "").await;
    let replay = next.with_param("code", &cb.param("code"));
    let (status, body, _) = s.finish(&replay).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        message(&body).contains("did not accept the authorization code"),
        "{body}"
    );
    assert_eq!(s.idp.replays(), 1, "the provider saw the replay");

    // A live code of another login: its PKCE verifier is not this login's.
    let intercepted = s.begin("sso", "").await;
    let victim = s.begin("sso", "").await;
    let swapped = victim.with_param("code", &intercepted.param("code"));
    let (status, body, _) = s.finish(&swapped).await;
    assert_eq!(status, 401, "{body}");
    assert!(message(&body).contains("PKCE"), "{body}");

    // The provider refusing the login.
    let refused = Callback {
        url: format!(
            "{}/api/v1/auth/oauth/sso/callback?error=access_denied&error_description=no",
            s.client.base
        ),
        cookie: String::new(),
    };
    let (status, body, _) = s.finish(&refused).await;
    assert_eq!(status, 401, "{body}");
    assert!(message(&body).contains("access_denied"), "{body}");

    // An HS256 "signature" keyed by the client secret: not an accepted algorithm.
    s.idp.sign_hs256();
    let (status, body) = s
        .login("sso", Person::new("sub-hs", "hs@example.org", true))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        message(&body).contains("not an accepted signing algorithm"),
        "{body}"
    );

    // An ID token signed by a key the issuer does not publish.
    s.idp.forge_id_tokens();
    let (status, body) = s
        .login("sso", Person::new("sub-forged", "forged@example.org", true))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(message(&body).contains("ID token is not valid"), "{body}");
    let users = s.client.get("/users").await;
    assert!(
        !users.to_string().contains("forged@example.org"),
        "no account from a forged token: {users}"
    );

    let failed = s.client.get("/audit?action=auth.login_failed").await;
    assert!(failed.as_array().unwrap().len() >= 7, "{failed}");
}

#[tokio::test]
async fn only_a_verified_email_links_an_account_or_creates_one() {
    let s = Setup::dev().await;
    let (status, ada) = s
        .client
        .post(
            "/users",
            json!({"email": "ada@example.com", "password": "a-long-password", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201, "{ada}");

    // Unverified at the provider: no link to Ada's account, no new account either.
    let (status, body) = s
        .login("sso", Person::new("sub-ada", "ada@example.com", false))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("has not verified"), "{body}");
    let (status, body) = s
        .login(
            "sso",
            Person::new("sub-nobody", "nobody@example.org", false),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(!s.client.get("/users").await.to_string().contains("nobody@"));

    // Verified: linked to Ada's account (her role kept).
    let (status, tokens) = s
        .login("sso", Person::new("sub-ada", "ada@example.com", true))
        .await;
    assert_eq!(status, 200, "{tokens}");
    let me = s.me(&tokens["access_token"]).await;
    assert_eq!((&me["id"], &me["role"]), (&ada["id"], &json!("viewer")));
    // The link is by subject: a new address at the provider is still Ada.
    let (status, tokens) = s
        .login("sso", Person::new("sub-ada", "ada.l@example.net", false))
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(s.me(&tokens["access_token"]).await["id"], ada["id"]);
    // Her password still works.
    let (status, _) = s
        .client
        .post(
            "/auth/login",
            json!({"email": "ada@example.com", "password": "a-long-password"}),
        )
        .await;
    assert_eq!(status, 200);
    let linked = s.client.get("/audit?action=user.identity_link").await;
    assert_eq!(linked.as_array().unwrap().len(), 1, "{linked}");

    // An account someone registered with an address nobody confirmed: no link to it (its
    // registrant could be anyone), until a password reset proves the address.
    let (status, body) = s
        .client
        .post(
            "/auth/register",
            json!({"email": "eve@example.org", "password": "registered-by-anyone"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["email_verified"], false, "{body}");
    let (status, body) = s
        .login("sso", Person::new("sub-eve", "eve@example.org", true))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(message(&body).contains("never confirmed"), "{body}");

    // A provider without signup: known accounts log in, nobody new gets one.
    let (status, tokens) = s
        .login("closed", Person::new("c-ada", "ada@example.com", true))
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(s.me(&tokens["access_token"]).await["id"], ada["id"]);
    let (status, body) = s
        .login("closed", Person::new("c-new", "new@example.org", true))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("do not create accounts"), "{body}");
}

#[tokio::test]
async fn the_domain_allow_list_and_github() {
    let s = Setup::dev().await;
    let (status, body) = s
        .login("corp", Person::new("g-1", "eve@evil.org", true))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("example.com"), "{body}");
    // The domain's address on a personal Google account (no Workspace `hd`): no account.
    let (status, body) = s
        .login("corp", Person::new("g-3", "mallory@example.com", true))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("Workspace"), "{body}");
    let (status, tokens) = s
        .login(
            "corp",
            Person::new("g-2", "dan@example.com", true).in_workspace("example.com"),
        )
        .await;
    assert_eq!(status, 200, "{tokens}");

    // GitHub: the id from /user, the verified primary address from /user/emails.
    let (status, tokens) = s
        .login("github", Person::new("4242", "octo@example.net", true))
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        s.me(&tokens["access_token"]).await["email"],
        "octo@example.net"
    );
    let (status, body) = s
        .login(
            "github",
            Person::new("4243", "unverified@example.net", false),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    // GitHub's refusal of a spent code (an error document with a 200).
    s.idp.sign_in(Person::new("4242", "octo@example.net", true));
    let first = s.begin("github", "").await;
    assert_eq!(s.finish(&first).await.0, 200);
    let second = s.begin("github", "").await;
    let (status, body, _) = s
        .finish(&second.with_param("code", &first.param("code")))
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(message(&body).contains("bad_verification_code"), "{body}");
}

#[tokio::test]
async fn providers_are_listed_and_bad_requests_are_explained() {
    let s = Setup::dev().await;
    let listed = s.client.get("/auth/oauth/providers").await;
    let names: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["closed", "corp", "github", "sso"]);
    let sso = &listed[3];
    assert_eq!(sso["display_name"], "Fake SSO");
    assert_eq!(
        sso["redirect_uri"],
        format!("{}/api/v1/auth/oauth/sso/callback", s.client.base)
    );
    let get = |path: String| {
        s.browser
            .get(format!("{}/api/v1{path}", s.client.base))
            .send()
    };
    let resp = get("/auth/oauth/okta/start".into()).await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = get("/auth/oauth/sso/start?redirect_to=https://evil.example/x".into())
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let resp = get("/auth/oauth/sso/callback?state=abc".into())
        .await
        .unwrap();
    assert_eq!(resp.status(), 422, "no code");
}

#[tokio::test]
async fn a_rotated_signing_key_is_fetched_again() {
    let s = Setup::dev().await;
    let person = Person::new("sub-rot", "rot@example.org", true);
    assert_eq!(s.login("sso", person.clone()).await.0, 200, "keys cached");
    s.idp.rotate_key();
    // Past the refetch guard (5 s), a token signed by the new key makes codex32 fetch the keys.
    tokio::time::sleep(std::time::Duration::from_millis(5500)).await;
    let (status, body) = s.login("sso", person).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_oidc_login_works_in_the_distributed_deployment() {
    let s = Setup::start(true).await;
    let (status, tokens) = s
        .login("sso", Person::new("sub-lin", "lin@example.org", true))
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        s.me(&tokens["access_token"]).await["email"],
        "lin@example.org"
    );
    let cb = s.begin("sso", "").await;
    assert_eq!(s.finish(&cb).await.0, 200);
    assert_eq!(s.finish(&cb).await.0, 401, "a state is used once");
}

#[tokio::test]
async fn a_broken_provider_file_stops_the_api_with_the_line_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oauth.toml");
    std::fs::write(
        &path,
        "[providers.sso]\nkind = \"oidc\"\nclient_id = \"x\"\n",
    )
    .unwrap();
    let mut env = common::base_env(dir.path());
    env.push(("CODEX32_OAUTH_CONFIG".into(), path.display().to_string()));
    let (proc, _) = common::start("dev", &["dev"], &env, dir.path());
    let status = proc.terminate_wait().await;
    assert!(!status.success());
    let log = common::read_log(dir.path(), "dev");
    assert!(log.contains("issuer is required"), "{log}");
}
