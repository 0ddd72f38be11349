//! Bots and their versions.

use super::*;

store_cases!(
    a_new_bot_starts_at_version_one_and_reads_back,
    a_second_live_bot_with_the_same_name_is_a_conflict,
    a_deleted_bot_is_hidden_and_its_name_can_be_used_again,
    updating_a_bot_makes_version_two_and_keeps_both_versions,
    racing_updates_each_make_their_own_version,
    bots_are_listed_newest_first_and_by_owner,
);

async fn a_new_bot_starts_at_version_one_and_reads_back(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let created = s
        .create_bot(Uuid::now_v7(), ada.id, &spec("daily", "echo 1"), at(0))
        .await?;
    assert_eq!((created.version, created.status.as_str()), (1, "active"));
    let read = s.get_bot(created.id).await?.context("the bot")?;
    assert_eq!(
        (read.id, read.owner_id, read.version),
        (created.id, ada.id, 1)
    );
    assert_eq!((read.created_at, read.updated_at), (at(0), at(0)));
    assert_eq!(read.spec, spec("daily", "echo 1"));
    let versions = s.bot_versions(created.id).await?;
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1]
    );
    let v1 = s.bot_version(created.id, 1).await?.context("version 1")?;
    assert_eq!((v1.spec, v1.created_at), (spec("daily", "echo 1"), at(0)));
    assert!(s.bot_version(created.id, 2).await?.is_none());
    assert!(s.get_bot(Uuid::now_v7()).await?.is_none());
    Ok(())
}

async fn a_second_live_bot_with_the_same_name_is_a_conflict(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let bob = user(s, "bob@example.com").await?;
    let first = bot(s, &ada, "daily").await?;
    let again = s
        .create_bot(Uuid::now_v7(), bob.id, &spec("daily", "echo 2"), at(1))
        .await;
    assert!(is_conflict(again), "names are unique among live bots");
    assert_eq!(
        s.list_bots(None)
            .await?
            .iter()
            .map(|b| b.id)
            .collect::<Vec<_>>(),
        vec![first.id]
    );
    Ok(())
}

async fn a_deleted_bot_is_hidden_and_its_name_can_be_used_again(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let old = bot(s, &ada, "daily").await?;
    let e = execution(s, &old).await?;
    assert!(s.delete_bot(old.id, at(1)).await?);
    assert!(!s.delete_bot(old.id, at(2)).await?, "already deleted");
    assert!(s.get_bot(old.id).await?.is_none());
    assert!(s.list_bots(None).await?.is_empty());
    assert!(
        s.update_bot(old.id, &spec("daily", "echo 2"), at(3))
            .await?
            .is_none()
    );
    assert_eq!(
        get(s, e.id).await?.bot_id,
        old.id,
        "executions keep their bot"
    );
    let new = bot(s, &ada, "daily").await?;
    assert_ne!(new.id, old.id);
    assert_eq!(
        s.list_bots(None)
            .await?
            .iter()
            .map(|b| b.id)
            .collect::<Vec<_>>(),
        vec![new.id]
    );
    Ok(())
}

async fn updating_a_bot_makes_version_two_and_keeps_both_versions(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = s
        .create_bot(Uuid::now_v7(), ada.id, &spec("daily", "echo 1"), at(0))
        .await?;
    let updated = s
        .update_bot(b.id, &spec("nightly", "echo 2"), at(5))
        .await?
        .context("update")?;
    assert_eq!(
        (updated.version, updated.spec.name.as_str()),
        (2, "nightly")
    );
    assert_eq!((updated.created_at, updated.updated_at), (at(0), at(5)));
    let read = s.get_bot(b.id).await?.context("the bot")?;
    assert_eq!((read.version, read.spec.script.as_str()), (2, "echo 2"));
    let versions = s.bot_versions(b.id).await?;
    let listed: Vec<(i32, &str)> = versions
        .iter()
        .map(|v| (v.version, v.spec.script.as_str()))
        .collect();
    assert_eq!(
        listed,
        vec![(2, "echo 2"), (1, "echo 1")],
        "newest version first"
    );
    assert_eq!(
        s.bot_version(b.id, 1).await?.context("v1")?.spec.name,
        "daily"
    );
    // Renaming onto a taken name conflicts and leaves the bot as it was.
    bot(s, &ada, "taken").await?;
    assert!(is_conflict(
        s.update_bot(b.id, &spec("taken", "echo 3"), at(6)).await
    ));
    assert_eq!(s.get_bot(b.id).await?.context("the bot")?.version, 2);
    assert_eq!(s.bot_versions(b.id).await?.len(), 2);
    assert!(
        s.update_bot(Uuid::now_v7(), &spec("ghost", "x"), at(7))
            .await?
            .is_none()
    );
    Ok(())
}

async fn bots_are_listed_newest_first_and_by_owner(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let bob = user(s, "bob@example.com").await?;
    let a1 = s
        .create_bot(Uuid::now_v7(), ada.id, &spec("a1", "x"), at(1))
        .await?;
    let b1 = s
        .create_bot(Uuid::now_v7(), bob.id, &spec("b1", "x"), at(2))
        .await?;
    let a2 = s
        .create_bot(Uuid::now_v7(), ada.id, &spec("a2", "x"), at(3))
        .await?;
    let all: Vec<Uuid> = s.list_bots(None).await?.iter().map(|b| b.id).collect();
    assert_eq!(all, vec![a2.id, b1.id, a1.id]);
    let adas: Vec<Uuid> = s
        .list_bots(Some(ada.id))
        .await?
        .iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(adas, vec![a2.id, a1.id]);
    assert!(s.list_bots(Some(Uuid::now_v7())).await?.is_empty());
    Ok(())
}

async fn racing_updates_each_make_their_own_version(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let specs: Vec<BotSpec> = (0..8)
        .map(|i| spec("daily", &format!("echo {i}")))
        .collect();
    let updates = join_all(specs.iter().map(|sp| s.update_bot(b.id, sp, at(1)))).await;
    let mut versions = HashSet::new();
    for updated in updates {
        versions.insert(updated?.context("the bot is live")?.version);
    }
    assert_eq!(
        versions,
        (2..=9).collect::<HashSet<i32>>(),
        "no version is made twice"
    );
    let stored = s.bot_versions(b.id).await?;
    assert_eq!(stored.len(), 9);
    let current = s.get_bot(b.id).await?.context("the bot")?;
    assert_eq!(current.version, 9);
    assert_eq!(
        current.spec, stored[0].spec,
        "the bot carries its newest version's spec"
    );
    Ok(())
}
