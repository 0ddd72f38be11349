//! Concurrency-limited claims, timelines, cron bookkeeping and the leader lease.

use super::*;

store_cases!(
    racing_claims_never_run_more_than_a_bots_max_concurrency,
    a_timeline_reads_back_in_order,
    the_leader_lease_has_one_holder_and_a_new_token_after_takeover,
    cron_fields_round_trip_and_the_last_fire_is_found,
);

async fn racing_claims_never_run_more_than_a_bots_max_concurrency(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "limited").await?;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let mut new = new_execution(&b);
        new.max_concurrency = Some(2);
        ids.push(s.create_execution(&new, b.owner_id, at(0)).await?.0.id);
    }
    let claims = ids.iter().enumerate().map(|(i, id)| {
        s.claim_execution(*id, if i % 2 == 0 { "w0" } else { "w1" }, at(1), at(60_000))
    });
    let won = join_all(claims)
        .await
        .into_iter()
        .filter(|c| matches!(c, Ok(Some(_))))
        .count();
    assert_eq!(won, 2, "exactly the limit is claimed");
    assert_eq!(s.running_count(b.id).await?, 2);
    let running = s
        .list_executions(&ExecutionFilter {
            bot_id: Some(b.id),
            status: Some(ExecStatus::Running),
            limit: 50,
            ..Default::default()
        })
        .await?;
    let mut done = finish(
        &running[0],
        1,
        running[0].worker_id.as_deref(),
        ExecStatus::Succeeded,
    );
    done.at = at(2);
    assert!(s.finish_execution(&done).await?);
    let freed = join_all(
        ids.iter()
            .map(|id| s.claim_execution(*id, "w2", at(3), at(60_000))),
    )
    .await;
    assert_eq!(
        freed
            .into_iter()
            .filter(|c| matches!(c, Ok(Some(_))))
            .count(),
        1,
        "a finished one frees one slot"
    );
    Ok(())
}

async fn a_timeline_reads_back_in_order(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let e = execution(s, &bot(s, &ada, "timeline").await?).await?;
    let events: Vec<NewEvent> = ["queued", "leased", "retry", "finished"]
        .iter()
        .enumerate()
        .map(|(i, kind)| NewEvent {
            execution_id: e.id,
            at: at(i as i64),
            kind,
            message: format!("step {i}"),
        })
        .collect();
    s.record_events(&events[..2]).await?;
    s.record_events(&events[2..]).await?;
    let read = s.timeline(e.id).await?;
    let kinds: Vec<&str> = read.iter().map(|t| t.kind.as_str()).collect();
    // The first entry is the creation's own.
    assert_eq!(
        kinds,
        vec!["queued", "queued", "leased", "retry", "finished"]
    );
    assert_eq!((read[4].message.as_str(), read[4].at), ("step 3", at(3)));
    assert!(s.timeline(Uuid::now_v7()).await?.is_empty());
    Ok(())
}

async fn the_leader_lease_has_one_holder_and_a_new_token_after_takeover(
    s: &dyn Store,
) -> TestResult {
    let first = s
        .try_lead("cron", "a", at(0), at(3_000))
        .await?
        .context("a free lease is taken")?;
    assert_eq!(
        s.try_lead("cron", "b", at(1_000), at(4_000)).await?,
        None,
        "held by a"
    );
    assert_eq!(
        s.try_lead("cron", "a", at(2_000), at(5_000)).await?,
        Some(first),
        "renewal keeps the token"
    );
    assert_eq!(
        s.try_lead("cron", "b", at(4_999), at(8_000)).await?,
        None,
        "still held until it expires"
    );
    let second = s
        .try_lead("cron", "b", at(5_001), at(8_000))
        .await?
        .context("an expired lease is taken over")?;
    assert!(
        second > first,
        "a takeover fences the old holder: {second} > {first}"
    );
    assert_eq!(
        s.try_lead("cron", "a", at(6_000), at(9_000)).await?,
        None,
        "the old holder is out"
    );
    assert!(
        s.try_lead("other", "a", at(6_000), at(9_000))
            .await?
            .is_some(),
        "leases are independent"
    );
    Ok(())
}

async fn cron_fields_round_trip_and_the_last_fire_is_found(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "cronned").await?;
    assert_eq!(s.last_fires(&[b.id]).await?, vec![]);
    let mut ids = Vec::new();
    for fire in [60_000, 120_000] {
        let mut new = new_execution(&b);
        new.scheduled_for = Some(at(fire));
        new.idempotency_key = Some(format!("schedule:{fire}"));
        ids.push(s.create_execution(&new, b.owner_id, at(fire)).await?.0.id);
    }
    let mut again = new_execution(&b);
    again.scheduled_for = Some(at(120_000));
    again.idempotency_key = Some("schedule:120000".into());
    let (same, created) = s.create_execution(&again, b.owner_id, at(120_001)).await?;
    assert!(
        !created && same.id == ids[1],
        "one execution per bot and fire time"
    );
    let never = bot(s, &ada, "never fired").await?;
    assert_eq!(
        s.last_fires(&[never.id, b.id]).await?,
        vec![(b.id, at(120_000))],
        "the latest fire of each bot that has one"
    );
    assert_eq!(get(s, ids[0]).await?.scheduled_for, Some(at(60_000)));
    assert_eq!(s.live_scheduled(b.id).await?.len(), 2);
    let other = bot(s, &ada, "unscheduled").await?;
    execution(s, &other).await?;
    let live = s.live_scheduled_bots(&[b.id, other.id]).await?;
    assert_eq!(
        live,
        vec![(b.id, ExecStatus::Queued); 2],
        "only scheduled executions count"
    );
    assert!(s.live_scheduled_bots(&[]).await?.is_empty());
    assert!(s.set_bot_status(b.id, "paused", at(1)).await?);
    assert_eq!(s.get_bot(b.id).await?.context("bot")?.status, "paused");
    Ok(())
}
