//! Users and API keys.

use super::*;

store_cases!(
    a_user_is_found_by_email_and_by_id,
    a_second_user_with_the_same_email_is_a_conflict,
    an_api_key_is_found_by_its_hash_and_listed_for_its_owner,
    revoking_an_api_key_is_limited_to_its_owner_and_happens_once,
    touching_an_api_key_records_its_last_use,
);

async fn a_user_is_found_by_email_and_by_id(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let bob = user(s, "bob@example.com").await?;
    let found = s
        .user_by_email("ada@example.com")
        .await?
        .context("by email")?;
    assert_eq!(
        (found.id, found.role, found.created_at),
        (ada.id, Role::User, ada.created_at)
    );
    assert_eq!(found.password_hash, ada.password_hash);
    assert_eq!(
        s.user_by_id(bob.id).await?.context("by id")?.email,
        "bob@example.com"
    );
    assert!(s.user_by_email("nobody@example.com").await?.is_none());
    assert!(s.user_by_id(Uuid::now_v7()).await?.is_none());
    let listed: HashSet<Uuid> = s.list_users().await?.iter().map(|u| u.id).collect();
    assert_eq!(listed, HashSet::from([ada.id, bob.id]));
    Ok(())
}

async fn a_second_user_with_the_same_email_is_a_conflict(s: &dyn Store) -> TestResult {
    let first = user(s, "ada@example.com").await?;
    let mut second = first.clone();
    second.id = Uuid::now_v7();
    assert!(
        is_conflict(s.create_user(&second).await),
        "a duplicate email must conflict"
    );
    assert_eq!(ids_of_users(s).await?, vec![first.id]);
    Ok(())
}

async fn an_api_key_is_found_by_its_hash_and_listed_for_its_owner(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let bob = user(s, "bob@example.com").await?;
    let (k1, k2, k3) = (
        api_key(&ada, "ci"),
        api_key(&ada, "cron"),
        api_key(&bob, "laptop"),
    );
    for k in [&k1, &k2, &k3] {
        s.create_api_key(k).await?;
    }
    let found = s.api_key_by_hash(&k2.key_hash).await?.context("by hash")?;
    assert_eq!(
        (found.id, found.user_id, found.name.as_str()),
        (k2.id, ada.id, "cron")
    );
    assert_eq!(
        (found.role, found.revoked_at, found.last_used_at),
        (Role::ApiUser, None, None)
    );
    assert!(s.api_key_by_hash("no-such-hash").await?.is_none());
    let ada_keys: HashSet<Uuid> = s
        .list_api_keys(Some(ada.id))
        .await?
        .iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ada_keys, HashSet::from([k1.id, k2.id]));
    assert_eq!(s.list_api_keys(None).await?.len(), 3);
    let mut same_hash = api_key(&bob, "copy");
    same_hash.key_hash = k1.key_hash.clone();
    assert!(is_conflict(s.create_api_key(&same_hash).await));
    Ok(())
}

async fn revoking_an_api_key_is_limited_to_its_owner_and_happens_once(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let bob = user(s, "bob@example.com").await?;
    let (mine, other) = (api_key(&ada, "ci"), api_key(&ada, "cron"));
    s.create_api_key(&mine).await?;
    s.create_api_key(&other).await?;
    assert!(
        !s.revoke_api_key(mine.id, Some(bob.id), at(1)).await?,
        "not bob's key"
    );
    assert!(
        s.api_key_by_hash(&mine.key_hash)
            .await?
            .context("key")?
            .revoked_at
            .is_none()
    );
    assert!(s.revoke_api_key(mine.id, Some(ada.id), at(1)).await?);
    assert!(
        !s.revoke_api_key(mine.id, Some(ada.id), at(2)).await?,
        "already revoked"
    );
    let revoked = s.api_key_by_hash(&mine.key_hash).await?.context("key")?;
    assert_eq!(revoked.revoked_at, Some(at(1)));
    assert!(
        s.revoke_api_key(other.id, None, at(3)).await?,
        "any owner's key"
    );
    assert!(
        !s.revoke_api_key(Uuid::now_v7(), None, at(3)).await?,
        "no such key"
    );
    Ok(())
}

async fn touching_an_api_key_records_its_last_use(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let key = api_key(&ada, "ci");
    s.create_api_key(&key).await?;
    s.touch_api_key(key.id, at(10)).await?;
    s.touch_api_key(key.id, at(20)).await?;
    let touched = s.api_key_by_hash(&key.key_hash).await?.context("key")?;
    assert_eq!(touched.last_used_at, Some(at(20)));
    s.touch_api_key(Uuid::now_v7(), at(30)).await?;
    Ok(())
}
