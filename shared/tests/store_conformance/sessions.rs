//! Refresh-token rotation and single-use account tokens.

use codex32_shared::store::{AccountToken, RefreshToken, RefreshUse};

use super::*;

store_cases!(
    a_refresh_token_is_spent_once_and_its_reuse_revokes_the_family,
    an_account_token_is_spent_once_only_by_its_address_and_only_before_it_expires,
);

async fn a_refresh_token_is_spent_once_and_its_reuse_revokes_the_family(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let family = Uuid::now_v7();
    let token = |id| RefreshToken {
        id,
        family_id: family,
        user_id: ada.id,
        issued_at: at(0),
        expires_at: at(60_000),
    };
    let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
    s.create_refresh_token(&token(first)).await?;
    assert_eq!(
        s.use_refresh_token(first, at(1)).await?,
        RefreshUse::Spent {
            family_id: family,
            user_id: ada.id
        }
    );
    s.create_refresh_token(&token(second)).await?;
    assert_eq!(
        s.use_refresh_token(first, at(2)).await?,
        RefreshUse::Reused {
            family_id: family,
            user_id: ada.id
        }
    );
    assert_eq!(
        s.use_refresh_token(second, at(3)).await?,
        RefreshUse::Invalid,
        "revoked with its family"
    );
    assert_eq!(
        s.use_refresh_token(Uuid::now_v7(), at(3)).await?,
        RefreshUse::Invalid
    );
    let late = Uuid::now_v7();
    s.create_refresh_token(&RefreshToken {
        family_id: Uuid::now_v7(),
        ..token(late)
    })
    .await?;
    assert_eq!(
        s.use_refresh_token(late, at(60_001)).await?,
        RefreshUse::Invalid,
        "expired"
    );
    Ok(())
}

async fn an_account_token_is_spent_once_only_by_its_address_and_only_before_it_expires(
    s: &dyn Store,
) -> TestResult {
    let invite = AccountToken {
        id: Uuid::now_v7(),
        kind: "invite".into(),
        token_hash: "h1".into(),
        email: Some("bob@example.com".into()),
        role: Some(Role::Viewer),
        user_id: None,
        created_by: None,
        created_at: at(0),
        expires_at: at(1000),
        used_at: None,
    };
    s.create_account_token(&invite).await?;
    assert!(
        s.use_account_token("invite", "h1", Some("eve@example.com"), at(1))
            .await?
            .is_none()
    );
    assert!(
        s.use_account_token("reset", "h1", None, at(1))
            .await?
            .is_none(),
        "another kind"
    );
    let spent = s
        .use_account_token("invite", "h1", Some("bob@example.com"), at(2))
        .await?;
    assert_eq!(spent.map(|t| t.role), Some(Some(Role::Viewer)));
    assert!(
        s.use_account_token("invite", "h1", Some("bob@example.com"), at(3))
            .await?
            .is_none(),
        "once"
    );
    let late = AccountToken {
        id: Uuid::now_v7(),
        token_hash: "h2".into(),
        email: None,
        ..invite
    };
    s.create_account_token(&late).await?;
    assert!(
        s.use_account_token("invite", "h2", Some("x@example.com"), at(1000))
            .await?
            .is_none(),
        "expired"
    );
    Ok(())
}
