//! The API fuzzed from its own OpenAPI document with schemathesis (installed by
//! `scripts/test.sh`): malformed and boundary input to the auth, user, invite and API-key
//! endpoints — logged in, and for the public ones without credentials — never gets a 5xx.

mod common;

use common::Dev;

#[tokio::test]
async fn the_auth_endpoints_answer_malformed_input_without_a_server_error() {
    let st = std::env::var("CODEX32_SCHEMATHESIS").unwrap_or_else(|_| "st".to_owned());
    let dev = Dev::start(&[("CODEX32_REGISTRATION", "invite")]).await;
    let c = &dev.client;
    let work = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(&st)
        .current_dir(work.path())
        .args(["run", &format!("{}/api/v1/openapi.json", c.base)])
        .args(["--include-path-regex", "/auth/|/api-keys|/users|/invites"])
        .args(["-H", &format!("Authorization: Bearer {}", c.token)])
        .args(["--checks", "not_a_server_error", "--max-examples", "40"])
        .args(["--seed", "20261123"])
        .args(["--report-dir", &work.path().display().to_string()])
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run {st} ({e}): run ./scripts/test.sh, which installs schemathesis")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
}
