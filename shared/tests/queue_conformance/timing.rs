//! Delayed ids, promotion, and claims that wait.

use super::*;

queue_cases!(
    a_delayed_id_is_claimable_only_once_it_is_due,
    promoting_moves_only_due_ids_to_ready,
    a_claim_on_an_empty_queue_waits_then_returns_none;
    with_backend: an_enqueue_wakes_a_blocked_claim_long_before_its_wait_ends,
);

async fn a_delayed_id_is_claimable_only_once_it_is_due(q: Arc<dyn Queue>) -> TestResult {
    let past = QueueItem {
        run_at: Some(Timestamp::now().plus_millis(-1_000)),
        ..item("a", 0)
    };
    let soon = delayed("a", 400);
    q.enqueue(&[past.clone(), soon.clone()]).await?;
    let first = claim_now(&q, &["a"])
        .await?
        .context("a past run_at is due now")?;
    assert_eq!(first.id, past.id);
    if let Some(early) = claim_now(&q, &["a"]).await? {
        panic!("{} was claimed before it was due", early.id);
    }
    assert_eq!(depth(&q, "a").await?, (0, 1, 1));
    let wait = Duration::from_secs(20);
    let started = Instant::now();
    let due = q
        .claim(&pools(&["a"]), LONG, wait)
        .await?
        .context("due within the wait")?;
    assert_eq!(due.id, soon.id);
    assert!(
        Timestamp::now() >= soon.run_at.context("delayed")?,
        "not before its run_at"
    );
    assert!(
        started.elapsed() < wait,
        "picked up once due, not at the end of the wait"
    );
    Ok(())
}

async fn promoting_moves_only_due_ids_to_ready(q: Arc<dyn Queue>) -> TestResult {
    let (soon, later) = (delayed("a", 300), delayed("a", 60_000));
    q.enqueue(&[soon.clone(), later]).await?;
    let due_at = soon.run_at.context("delayed")?;
    eventually(PATIENCE, "the due id to be promoted", || async {
        let moved = q.promote_due().await.expect("promote");
        assert!(moved <= 1, "only the due id may move");
        if moved == 1 {
            assert!(Timestamp::now() >= due_at, "promoted before it was due");
        }
        (moved == 1).then_some(())
    })
    .await;
    assert_eq!(q.promote_due().await?, 0);
    assert_eq!(depth(&q, "a").await?, (1, 1, 0));
    assert_eq!(claim_now(&q, &["a"]).await?.context("ready")?.id, soon.id);
    Ok(())
}

async fn a_claim_on_an_empty_queue_waits_then_returns_none(q: Arc<dyn Queue>) -> TestResult {
    q.enqueue(&[delayed("a", 60_000)]).await?;
    let wait = Duration::from_millis(400);
    let started = Instant::now();
    assert!(q.claim(&pools(&["a", "b"]), LONG, wait).await?.is_none());
    let waited = started.elapsed();
    assert!(
        waited >= wait / 2,
        "returned after {waited:?}, before waiting"
    );
    assert!(waited < wait + Duration::from_secs(5), "waited {waited:?}");
    Ok(())
}

async fn an_enqueue_wakes_a_blocked_claim_long_before_its_wait_ends(b: &Backend) -> TestResult {
    let q = b.queue.clone();
    let claimer = {
        let q = q.clone();
        tokio::spawn(async move {
            q.claim(&pools(&["a", "b"]), LONG, Duration::from_secs(60))
                .await
        })
    };
    b.until_claimers_block(1).await;
    let x = item("b", 0);
    q.enqueue(std::slice::from_ref(&x)).await?;
    let lease = tokio::time::timeout(Duration::from_secs(10), claimer)
        .await
        .context("the enqueue did not wake the blocked claim")???
        .context("the claim returned empty-handed")?;
    assert_eq!((lease.id, lease.pool.as_str()), (x.id, "b"));
    Ok(())
}
