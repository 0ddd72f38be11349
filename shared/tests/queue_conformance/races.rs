//! Concurrent claimers: no id is ever handed to two of them (style 12).

use super::*;

queue_cases!(
    sixteen_racing_claimers_take_each_of_500_ids_exactly_once,
    claimers_racing_enqueuers_take_every_id_exactly_once,
);

/// Checks that `leases` hand out exactly the ids of `items`, each once, then acks them all.
async fn assert_each_once(
    q: &Arc<dyn Queue>,
    items: &[QueueItem],
    leases: Vec<Lease>,
) -> TestResult {
    let ids: HashSet<Uuid> = leases.iter().map(|l| l.id).collect();
    assert_eq!(ids.len(), leases.len(), "an id was handed out twice");
    assert_eq!(
        ids,
        items.iter().map(|i| i.id).collect::<HashSet<_>>(),
        "every id handed out"
    );
    let tokens: HashSet<(&str, u64)> = leases.iter().map(|l| (l.pool.as_str(), l.token)).collect();
    assert_eq!(
        tokens.len(),
        leases.len(),
        "a token was issued twice in a pool"
    );
    for lease in &leases {
        assert!(
            q.ack(lease).await?,
            "{} is still held by its claimer",
            lease.id
        );
    }
    for (pool, d) in depths(q).await? {
        assert_eq!(d, (0, 0, 0), "pool {pool} is empty");
    }
    Ok(())
}

async fn sixteen_racing_claimers_take_each_of_500_ids_exactly_once(
    q: Arc<dyn Queue>,
) -> TestResult {
    let items: Vec<QueueItem> = (0..500_i32)
        .map(|i| item(if i % 2 == 0 { "a" } else { "b" }, i % 4))
        .collect();
    assert_eq!(q.enqueue(&items).await?, 500);
    let claimers: Vec<_> = (0..16)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(lease) = q.claim(&pools(&["a", "b"]), LONG, Duration::ZERO).await? {
                    got.push(lease);
                }
                anyhow::Ok(got)
            })
        })
        .collect();
    let mut leases = Vec::new();
    for claimer in claimers {
        leases.extend(claimer.await??);
    }
    assert_each_once(&q, &items, leases).await
}

async fn claimers_racing_enqueuers_take_every_id_exactly_once(q: Arc<dyn Queue>) -> TestResult {
    let items: Vec<QueueItem> = (0..400).map(|i| item("a", i % 3)).collect();
    let claimed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let claimers: Vec<_> = (0..8)
        .map(|_| {
            let (q, claimed) = (q.clone(), claimed.clone());
            tokio::spawn(async move {
                let mut got = Vec::new();
                while claimed.load(std::sync::atomic::Ordering::SeqCst) < 400 {
                    let wait = Duration::from_millis(200);
                    if let Some(lease) = q.claim(&pools(&["a"]), LONG, wait).await? {
                        claimed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        got.push(lease);
                    }
                }
                anyhow::Ok(got)
            })
        })
        .collect();
    let enqueuers: Vec<_> = items
        .chunks(100)
        .map(|share| {
            let (q, share) = (q.clone(), share.to_vec());
            tokio::spawn(async move {
                for batch in share.chunks(10) {
                    // Each batch twice: a reconciler re-offering ids must not double them.
                    q.enqueue(batch).await?;
                    q.enqueue(batch).await?;
                    tokio::task::yield_now().await;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for enqueuer in enqueuers {
        enqueuer.await??;
    }
    let mut leases = Vec::new();
    for claimer in claimers {
        leases.extend(
            tokio::time::timeout(PATIENCE, claimer)
                .await
                .context("claimers stalled")???,
        );
    }
    assert_each_once(&q, &items, leases).await
}
