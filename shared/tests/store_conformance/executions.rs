//! Creating and listing executions.

use codex32_shared::domain::TimelineEvent;

use super::*;

store_cases!(
    a_new_execution_is_queued_at_attempt_one,
    an_idempotency_key_returns_the_first_execution_and_creates_nothing,
    racing_creates_with_one_idempotency_key_make_one_execution,
    racing_batches_with_the_same_keys_in_opposite_orders_both_succeed,
    executions_are_listed_newest_first_by_bot_status_owner_and_cursor,
    a_batch_creates_every_execution_queued_in_request_order,
    a_batch_with_used_or_repeated_idempotency_keys_returns_the_first_executions,
    a_batch_replaying_many_keys_of_two_bots_returns_each_bots_own_executions,
    a_batch_with_one_bad_row_creates_nothing_even_across_statements,
);

async fn a_new_execution_is_queued_at_attempt_one(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let mut new = new_execution(&b);
    new.priority = 7;
    new.run_at = Some(at(60_000));
    let (e, created) = s.create_execution(&new, ada.id, at(0)).await?;
    assert!(created);
    let read = get(s, e.id).await?;
    for x in [&e, &read] {
        assert_eq!(
            (x.id, x.bot_id, x.bot_version, x.owner_id),
            (new.id, b.id, 1, ada.id)
        );
        assert_eq!(
            (x.status, x.attempt, x.max_attempts, x.priority),
            (ExecStatus::Queued, 1, 3, 7)
        );
        assert_eq!(
            (&x.pool, &x.input, x.run_at, x.queued_at),
            (&new.pool, &new.input, new.run_at, at(0))
        );
        assert_eq!(
            (
                x.worker_id.as_deref(),
                x.output.as_ref(),
                x.cancel_requested
            ),
            (None, None, false)
        );
        assert_eq!(
            (x.started_at, x.finished_at, x.lease_expires_at),
            (None, None, None)
        );
        assert_eq!(x.created_by, Some(ada.id));
    }
    let first = s.timeline(e.id).await?;
    assert_eq!(
        entries(&first),
        [(
            "delayed",
            "created by a test; delayed until 2023-11-14T22:14:20+00:00"
        )],
        "written with the execution: why, and until when it waits"
    );
    assert_eq!(first[0].at, at(0));
    assert!(s.get_execution(Uuid::now_v7()).await?.is_none());
    Ok(())
}

async fn an_idempotency_key_returns_the_first_execution_and_creates_nothing(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let (b1, b2) = (bot(s, &ada, "one").await?, bot(s, &ada, "two").await?);
    let mut first = new_execution(&b1);
    first.idempotency_key = Some("order-42".into());
    let (e1, created) = s.create_execution(&first, ada.id, at(0)).await?;
    assert!(created);
    let mut retry = new_execution(&b1);
    retry.idempotency_key = Some("order-42".into());
    retry.input = json!({"different": true});
    let (again, created) = s.create_execution(&retry, ada.id, at(1)).await?;
    assert!(!created, "the same key on the same bot creates nothing");
    assert_eq!(
        (again.id, &again.input, again.queued_at),
        (e1.id, &first.input, at(0))
    );
    assert!(s.get_execution(retry.id).await?.is_none());
    assert_eq!(
        entries(&s.timeline(e1.id).await?),
        [("queued", "created by a test; queued in pool default")],
        "a repeated key adds no entry"
    );
    assert!(s.timeline(retry.id).await?.is_empty());
    // The key is scoped to the bot, and executions without a key never collide.
    let mut other_bot = new_execution(&b2);
    other_bot.idempotency_key = Some("order-42".into());
    assert!(s.create_execution(&other_bot, ada.id, at(2)).await?.1);
    assert!(
        s.create_execution(&new_execution(&b1), ada.id, at(3))
            .await?
            .1
    );
    assert!(
        s.create_execution(&new_execution(&b1), ada.id, at(4))
            .await?
            .1
    );
    let all = s
        .list_executions(&ExecutionFilter {
            limit: 100,
            ..Default::default()
        })
        .await?;
    assert_eq!(all.len(), 4);
    Ok(())
}

async fn executions_are_listed_newest_first_by_bot_status_owner_and_cursor(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let bob = user(s, "bob@example.com").await?;
    let (a1, a2, b1) = (
        bot(s, &ada, "a1").await?,
        bot(s, &ada, "a2").await?,
        bot(s, &bob, "b1").await?,
    );
    let e1 = execution(s, &a1).await?;
    let e2 = execution(s, &a1).await?;
    let e3 = execution(s, &a2).await?;
    let e4 = execution(s, &b1).await?;
    let e5 = execution(s, &a1).await?;
    s.claim_execution(e2.id, "w", at(0), at(1000))
        .await?
        .context("claim e2")?;
    let list = |f: ExecutionFilter| async move {
        anyhow::Ok(ids(&s
            .list_executions(&ExecutionFilter {
                limit: f.limit.max(1),
                ..f
            })
            .await?))
    };
    let all = ExecutionFilter {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        list(all.clone()).await?,
        vec![e5.id, e4.id, e3.id, e2.id, e1.id]
    );
    let by_bot = ExecutionFilter {
        bot_id: Some(a1.id),
        ..all.clone()
    };
    assert_eq!(list(by_bot.clone()).await?, vec![e5.id, e2.id, e1.id]);
    let running = ExecutionFilter {
        status: Some(ExecStatus::Running),
        ..all.clone()
    };
    assert_eq!(list(running).await?, vec![e2.id]);
    let queued = ExecutionFilter {
        status: Some(ExecStatus::Queued),
        ..all.clone()
    };
    assert_eq!(list(queued).await?, vec![e5.id, e4.id, e3.id, e1.id]);
    let adas = ExecutionFilter {
        owner_id: Some(ada.id),
        ..all.clone()
    };
    assert_eq!(list(adas).await?, vec![e5.id, e3.id, e2.id, e1.id]);
    let bobs = ExecutionFilter {
        owner_id: Some(bob.id),
        ..all.clone()
    };
    assert_eq!(list(bobs).await?, vec![e4.id]);
    let older = ExecutionFilter {
        before: Some(e4.id),
        ..all.clone()
    };
    assert_eq!(list(older).await?, vec![e3.id, e2.id, e1.id]);
    let page = ExecutionFilter {
        limit: 2,
        ..all.clone()
    };
    assert_eq!(list(page).await?, vec![e5.id, e4.id]);
    let combined = ExecutionFilter {
        status: Some(ExecStatus::Queued),
        before: Some(e5.id),
        ..by_bot
    };
    assert_eq!(list(combined).await?, vec![e1.id]);
    Ok(())
}

async fn racing_creates_with_one_idempotency_key_make_one_execution(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let attempts: Vec<NewExecution> = (0..8)
        .map(|_| NewExecution {
            idempotency_key: Some("webhook-7".into()),
            ..new_execution(&b)
        })
        .collect();
    let results = join_all(
        attempts
            .iter()
            .map(|n| s.create_execution(n, ada.id, at(0))),
    )
    .await;
    let mut created = 0;
    let mut returned = HashSet::new();
    for result in results {
        let (e, new) = result?;
        created += usize::from(new);
        returned.insert(e.id);
    }
    assert_eq!(created, 1, "exactly one create wins the key");
    assert_eq!(returned.len(), 1, "every caller gets that one execution");
    let all = s
        .list_executions(&ExecutionFilter {
            limit: 100,
            ..Default::default()
        })
        .await?;
    assert_eq!(ids(&all), returned.into_iter().collect::<Vec<_>>());
    Ok(())
}

/// Two batches taking the same idempotency keys in opposite orders, at once (as the API's
/// overlapping submitter writes, or two API processes, can): neither fails, and each key makes
/// one execution that both batches return.
async fn racing_batches_with_the_same_keys_in_opposite_orders_both_succeed(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "keys").await?;
    for round in 0..5 {
        let keyed = |k: usize| NewExecution {
            idempotency_key: Some(format!("r{round}-k{k}")),
            ..new_execution(&b)
        };
        let forward: Vec<NewExecution> = (0..200).map(keyed).collect();
        let backward: Vec<NewExecution> = (0..200).rev().map(keyed).collect();
        let (one, two) = futures::join!(
            s.create_executions(&forward, ada.id, at(round)),
            s.create_executions(&backward, ada.id, at(round))
        );
        let (one, two) = (
            one.context("forward batch")?,
            two.context("backward batch")?,
        );
        let mut two_by_key: Vec<&Execution> = two.iter().map(|(e, _)| e).collect();
        two_by_key.reverse();
        for (k, ((first, _), second)) in one.iter().zip(two_by_key).enumerate() {
            ensure!(
                first.id == second.id,
                "round {round}, key {k}: two executions"
            );
        }
        let made = one.iter().chain(&two).filter(|(_, new)| *new).count();
        ensure!(
            made == 200,
            "round {round}: {made} executions made for 200 keys"
        );
    }
    Ok(())
}

async fn a_batch_creates_every_execution_queued_in_request_order(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "bulk").await?;
    // More rows than one statement takes, so the batch spans several.
    let news: Vec<NewExecution> = (0..1200)
        .map(|i| NewExecution {
            input: json!({ "i": i }),
            priority: i % 3,
            ..new_execution(&b)
        })
        .collect();
    let made = s.create_executions(&news, ada.id, at(5)).await?;
    assert_eq!(made.len(), news.len());
    for (new, (e, created)) in news.iter().zip(&made) {
        assert!(created);
        assert_eq!(
            (e.id, &e.input, e.priority),
            (new.id, &new.input, new.priority)
        );
        assert_eq!(
            (e.status, e.attempt, e.queued_at, e.owner_id),
            (ExecStatus::Queued, 1, at(5), ada.id)
        );
    }
    let stored = get(s, news[1100].id).await?;
    assert_eq!(
        (stored.status, &stored.input),
        (ExecStatus::Queued, &json!({"i": 1100}))
    );
    let queued = s.queued_page(None, 2000).await?;
    assert_eq!(queued.len(), 1200);
    for i in [0, 1100] {
        assert_eq!(
            entries(&s.timeline(news[i].id).await?),
            [("queued", "created by a test; queued in pool default")],
            "every row of every statement has its first entry"
        );
    }
    assert!(s.create_executions(&[], ada.id, at(6)).await?.is_empty());
    Ok(())
}

/// More keys than one statement takes (500), the same key strings on two bots, all replayed:
/// each item gets the execution its own bot made with that key.
async fn a_batch_replaying_many_keys_of_two_bots_returns_each_bots_own_executions(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let bots = [bot(s, &ada, "left").await?, bot(s, &ada, "right").await?];
    let keyed = |b: &Bot, k: usize| NewExecution {
        idempotency_key: Some(format!("k{k}")),
        ..new_execution(b)
    };
    let firsts: Vec<NewExecution> = (0..300)
        .flat_map(|k| bots.iter().map(move |b| (b, k)))
        .map(|(b, k)| keyed(b, k))
        .collect();
    let made = s.create_executions(&firsts, ada.id, at(0)).await?;
    assert!(made.iter().all(|(_, created)| *created));
    let replays: Vec<NewExecution> = firsts
        .iter()
        .rev()
        .map(|f| NewExecution {
            idempotency_key: f.idempotency_key.clone(),
            ..new_execution(if f.bot_id == bots[0].id {
                &bots[0]
            } else {
                &bots[1]
            })
        })
        .collect();
    let again = s.create_executions(&replays, ada.id, at(1)).await?;
    let got: Vec<(Uuid, bool)> = again.iter().map(|(e, c)| (e.id, *c)).collect();
    let want: Vec<(Uuid, bool)> = firsts.iter().rev().map(|f| (f.id, false)).collect();
    assert_eq!(got, want);
    Ok(())
}

async fn a_batch_with_used_or_repeated_idempotency_keys_returns_the_first_executions(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "keys").await?;
    let keyed = |key: &str, n: i32| NewExecution {
        idempotency_key: Some(key.to_owned()),
        input: json!({ "n": n }),
        ..new_execution(&b)
    };
    let (earlier, _) = s.create_execution(&keyed("old", 0), ada.id, at(0)).await?;
    let news = vec![
        keyed("old", 1),
        keyed("new", 2),
        new_execution(&b),
        keyed("new", 3),
    ];
    let made = s.create_executions(&news, ada.id, at(1)).await?;
    let summary: Vec<(Uuid, bool)> = made.iter().map(|(e, c)| (e.id, *c)).collect();
    assert_eq!(
        summary,
        vec![
            (earlier.id, false),
            (news[1].id, true),
            (news[2].id, true),
            (news[1].id, false),
        ]
    );
    assert_eq!(
        made[3].0.input,
        json!({"n": 2}),
        "the first item with a key wins"
    );
    assert!(s.get_execution(news[0].id).await?.is_none());
    assert!(s.get_execution(news[3].id).await?.is_none());
    assert_eq!(s.timeline(news[1].id).await?.len(), 1);
    assert!(s.timeline(news[3].id).await?.is_empty());
    assert_eq!(
        s.timeline(earlier.id).await?.len(),
        1,
        "a key taken before adds no entry"
    );
    let all = s
        .list_executions(&ExecutionFilter {
            limit: 100,
            ..Default::default()
        })
        .await?;
    assert_eq!(all.len(), 3);
    Ok(())
}

async fn a_batch_with_one_bad_row_creates_nothing_even_across_statements(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "atomic").await?;
    let mut news: Vec<NewExecution> = (0..700).map(|_| new_execution(&b)).collect();
    // A bot that does not exist: the foreign key refuses the row, in the second statement.
    news[650].bot_id = Uuid::now_v7();
    assert!(s.create_executions(&news, ada.id, at(0)).await.is_err());
    assert!(
        s.timeline(news[0].id).await?.is_empty(),
        "no entry outlives its refused batch"
    );
    let all = s
        .list_executions(&ExecutionFilter {
            limit: 10,
            ..Default::default()
        })
        .await?;
    assert!(all.is_empty(), "nothing of a failed batch remains");
    Ok(())
}

/// Kind and message of each timeline entry.
fn entries(timeline: &[TimelineEvent]) -> Vec<(&str, &str)> {
    timeline
        .iter()
        .map(|t| (t.kind.as_str(), t.message.as_str()))
        .collect()
}
