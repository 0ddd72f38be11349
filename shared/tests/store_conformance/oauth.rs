//! Logins through identity providers: a login's state is taken once and only while live;
//! identities link to one account; an account and its first identity are made together.

use codex32_shared::store::{OAuthIdentity, OAuthLogin};

use super::*;

store_cases!(
    a_login_state_is_taken_once_and_only_before_it_expires,
    an_identity_links_to_one_account_and_a_new_account_comes_with_its_identity,
);

fn login(state_hash: &str, created: i64, expires: i64) -> OAuthLogin {
    OAuthLogin {
        state_hash: state_hash.into(),
        provider: "sso".into(),
        pkce_verifier: "verifier".into(),
        nonce: "nonce".into(),
        redirect_to: Some("/app".into()),
        created_at: at(created),
        expires_at: at(expires),
    }
}

async fn a_login_state_is_taken_once_and_only_before_it_expires(s: &dyn Store) -> TestResult {
    s.create_oauth_login(&login("a", 0, 600_000)).await?;
    s.create_oauth_login(&login("b", 0, 600_000)).await?;
    let taken = s.take_oauth_login("a", at(1)).await?;
    assert_eq!(taken, Some(login("a", 0, 600_000)));
    assert_eq!(s.take_oauth_login("a", at(2)).await?, None, "taken once");
    assert_eq!(s.take_oauth_login("nope", at(2)).await?, None);
    assert_eq!(s.take_oauth_login("b", at(600_000)).await?, None, "expired");
    // Creating a login forgets the expired ones; live ones stay.
    s.create_oauth_login(&login("c", 0, 100)).await?;
    s.create_oauth_login(&login("d", 0, 10_000)).await?;
    s.create_oauth_login(&login("e", 5_000, 10_000)).await?;
    assert_eq!(s.take_oauth_login("c", at(50)).await?, None, "forgotten");
    assert!(
        s.take_oauth_login("d", at(50)).await?.is_some(),
        "still live"
    );
    Ok(())
}

async fn an_identity_links_to_one_account_and_a_new_account_comes_with_its_identity(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let identity = |subject: &str, user_id| OAuthIdentity {
        provider: "sso".into(),
        subject: subject.into(),
        user_id,
        email: "ada@example.com".into(),
        created_at: at(0),
    };
    assert_eq!(s.identity_user("sso", "sub-1").await?, None);
    s.link_identity(&identity("sub-1", ada.id)).await?;
    assert_eq!(s.identity_user("sso", "sub-1").await?, Some(ada.id));
    assert_eq!(
        s.identity_user("github", "sub-1").await?,
        None,
        "per provider"
    );
    let again = s.link_identity(&identity("sub-1", ada.id)).await;
    assert!(
        matches!(again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );

    let grace = User {
        id: Uuid::now_v7(),
        email: "grace@example.org".into(),
        password_hash: String::new(),
        role: Role::User,
        created_at: at(0),
        email_verified: true,
    };
    s.create_user_with_identity(&grace, &identity("sub-2", grace.id))
        .await?;
    assert_eq!(s.identity_user("sso", "sub-2").await?, Some(grace.id));
    assert!(s.user_by_email("grace@example.org").await?.is_some());
    // An identity already linked: neither the account nor the link is made.
    let taken = User {
        id: Uuid::now_v7(),
        email: "other@example.org".into(),
        ..grace.clone()
    };
    let result = s
        .create_user_with_identity(&taken, &identity("sub-2", taken.id))
        .await;
    assert!(
        matches!(result, Err(StoreError::Conflict { .. })),
        "{result:?}"
    );
    assert!(
        s.user_by_email("other@example.org").await?.is_none(),
        "rolled back"
    );
    Ok(())
}
