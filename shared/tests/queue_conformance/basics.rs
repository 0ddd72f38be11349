//! Enqueueing, ordering, pools, depths and removal.

use super::*;

queue_cases!(
    enqueueing_the_same_id_twice_adds_it_once_in_any_state,
    higher_priority_comes_first_then_the_oldest_id,
    depths_count_ready_delayed_and_leased_per_pool,
    pools_are_independent_and_a_claim_over_several_takes_from_any,
    removing_an_id_works_in_every_state,
);

async fn enqueueing_the_same_id_twice_adds_it_once_in_any_state(q: Arc<dyn Queue>) -> TestResult {
    let (x, y, z) = (item("a", 0), item("a", 0), delayed("a", 60_000));
    assert_eq!(q.enqueue(&[]).await?, 0);
    assert_eq!(q.enqueue(std::slice::from_ref(&x)).await?, 1);
    assert_eq!(q.enqueue(std::slice::from_ref(&x)).await?, 0);
    assert_eq!(
        q.enqueue(&[x.clone(), y.clone()]).await?,
        1,
        "only y is new"
    );
    assert_eq!(depth(&q, "a").await?, (2, 0, 0));
    // While leased: the reconciler re-offers a running execution's id; it must not come back.
    let lease = claim_now(&q, &["a"]).await?.context("x is ready")?;
    assert_eq!(lease.id, x.id);
    assert_eq!(q.enqueue(&[x.clone(), y.clone()]).await?, 0);
    assert_eq!(depth(&q, "a").await?, (1, 0, 1));
    // While delayed, even with another priority or due time.
    assert_eq!(q.enqueue(std::slice::from_ref(&z)).await?, 1);
    let moved = QueueItem {
        priority: 9,
        run_at: None,
        ..z.clone()
    };
    assert_eq!(q.enqueue(&[z, moved]).await?, 0);
    assert_eq!(depth(&q, "a").await?, (1, 1, 1));
    Ok(())
}

async fn higher_priority_comes_first_then_the_oldest_id(q: Arc<dyn Queue>) -> TestResult {
    // Created in this order, so the ids are in this order too.
    let low1 = item("a", 0);
    let high1 = item("a", 10);
    let mid = item("a", 5);
    let low2 = item("a", 0);
    let high2 = item("a", 10);
    let negative = item("a", -3);
    q.enqueue(&[negative.clone(), low2.clone(), high2.clone()])
        .await?;
    q.enqueue(&[mid.clone(), low1.clone()]).await?;
    q.enqueue(std::slice::from_ref(&high1)).await?;
    let mut order = Vec::new();
    while let Some(lease) = claim_now(&q, &["a"]).await? {
        order.push(lease.id);
    }
    let expected: Vec<Uuid> = [high1, high2, mid, low1, low2, negative]
        .iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(order, expected);
    Ok(())
}

async fn depths_count_ready_delayed_and_leased_per_pool(q: Arc<dyn Queue>) -> TestResult {
    q.ping().await?;
    assert!(depths(&q).await?.is_empty(), "a new queue has seen no pool");
    let a: Vec<QueueItem> = (0..3).map(|_| item("a", 0)).collect();
    q.enqueue(&a).await?;
    q.enqueue(&[delayed("a", 60_000), delayed("a", 60_000), item("b", 0)])
        .await?;
    claim_now(&q, &["a"]).await?.context("a is ready")?;
    let expected = BTreeMap::from([("a".to_owned(), (2, 2, 1)), ("b".to_owned(), (1, 0, 0))]);
    assert_eq!(depths(&q).await?, expected);
    Ok(())
}

async fn pools_are_independent_and_a_claim_over_several_takes_from_any(
    q: Arc<dyn Queue>,
) -> TestResult {
    let (x, y) = (item("a", 0), item("b", 100));
    q.enqueue(&[x.clone(), y.clone()]).await?;
    assert!(
        claim_now(&q, &["c"]).await?.is_none(),
        "an unknown pool is empty"
    );
    let from_a = claim_now(&q, &["a"]).await?.context("x is in a")?;
    assert_eq!((from_a.id, from_a.pool.as_str()), (x.id, "a"));
    assert!(
        claim_now(&q, &["a"]).await?.is_none(),
        "b's item stays in b"
    );
    let from_b = claim_now(&q, &["c", "b"]).await?.context("y is in b")?;
    assert_eq!((from_b.id, from_b.pool.as_str()), (y.id, "b"));
    let (x2, y2) = (item("a", 0), item("b", 0));
    q.enqueue(&[x2.clone(), y2.clone()]).await?;
    let mut got = HashSet::new();
    for _ in 0..2 {
        let lease = claim_now(&q, &["a", "b"]).await?.context("one left")?;
        let expected_pool = if lease.id == x2.id { "a" } else { "b" };
        assert_eq!(
            lease.pool, expected_pool,
            "a lease names the pool it came from"
        );
        got.insert(lease.id);
    }
    assert_eq!(got, HashSet::from([x2.id, y2.id]));
    assert!(claim_now(&q, &["a", "b"]).await?.is_none());
    Ok(())
}

async fn removing_an_id_works_in_every_state(q: Arc<dyn Queue>) -> TestResult {
    let (leased, ready, waiting) = (item("a", 0), item("a", 0), delayed("a", 60_000));
    q.enqueue(&[leased.clone(), ready.clone(), waiting.clone()])
        .await?;
    let lease = claim_now(&q, &["a"]).await?.context("ready")?;
    assert_eq!(lease.id, leased.id);
    for id in [ready.id, waiting.id, leased.id] {
        assert!(q.remove("a", id).await?, "the pool held {id}");
        assert!(!q.remove("a", id).await?, "{id} is gone");
    }
    assert!(!q.remove("a", Uuid::now_v7()).await?);
    assert!(!q.remove("nowhere", ready.id).await?);
    assert!(!q.renew(&lease, LONG).await?, "a removed id has no lease");
    assert!(!q.ack(&lease).await?);
    assert_eq!(depth(&q, "a").await?, (0, 0, 0));
    assert!(claim_now(&q, &["a"]).await?.is_none());
    assert_eq!(
        q.enqueue(&[ready.clone(), waiting, leased]).await?,
        3,
        "and may come back"
    );
    ensure!(claim_now(&q, &["a"]).await?.is_some());
    Ok(())
}
