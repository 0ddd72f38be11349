//! Leases: renewal and ack fenced by token, acks, and the reaper.

use super::*;

queue_cases!(
    a_stale_token_can_neither_renew_nor_ack_after_a_reclaim,
    a_renewed_lease_outlives_its_first_deadline,
    reaping_returns_expired_leases_and_forgets_them,
    an_acked_id_is_gone_and_can_be_enqueued_again,
    claiming_many_takes_the_best_due_ids_and_acking_many_answers_each,
);

async fn claiming_many_takes_the_best_due_ids_and_acking_many_answers_each(
    q: Arc<dyn Queue>,
) -> TestResult {
    let items: Vec<QueueItem> = (0..5).map(|priority| item("a", priority)).collect();
    q.enqueue(&items).await?;
    q.enqueue(&[delayed("a", 60_000)]).await?;
    let a = pools(&["a"]);
    let best = q.claim_many(&a, LONG, Duration::ZERO, 3).await?;
    let ids: Vec<Uuid> = best.iter().map(|l| l.id).collect();
    assert_eq!(
        ids,
        vec![items[4].id, items[3].id, items[2].id],
        "the best first"
    );
    let tokens: std::collections::HashSet<u64> = best.iter().map(|l| l.token).collect();
    assert_eq!(tokens.len(), 3, "each lease has its own token");
    let rest = q.claim_many(&a, LONG, Duration::ZERO, 10).await?;
    assert_eq!(rest.len(), 2, "only the due ids, not the delayed one");
    assert!(q.claim_many(&a, LONG, Duration::ZERO, 10).await?.is_empty());
    assert_eq!(depth(&q, "a").await?, (0, 1, 5));
    let stale = Lease {
        token: rest[0].token + 1_000,
        ..rest[0].clone()
    };
    let mut acks = best.clone();
    acks.push(stale);
    acks.extend(rest);
    assert_eq!(
        q.ack_many(&acks).await?,
        vec![true, true, true, false, true, true],
        "a stale token is refused, the others removed"
    );
    assert_eq!(depth(&q, "a").await?, (0, 1, 0));
    assert_eq!(q.ack_many(&best).await?, vec![false; 3], "acked once");
    assert!(q.ack_many(&[]).await?.is_empty());
    Ok(())
}

async fn a_stale_token_can_neither_renew_nor_ack_after_a_reclaim(q: Arc<dyn Queue>) -> TestResult {
    let x = item("a", 0);
    q.enqueue(std::slice::from_ref(&x)).await?;
    let first = q
        .claim(&pools(&["a"]), SHORT, Duration::ZERO)
        .await?
        .context("ready")?;
    assert_eq!(reaped(&q).await, vec![("a".to_owned(), x.id)]);
    assert_eq!(
        q.enqueue(std::slice::from_ref(&x)).await?,
        1,
        "the reconciler re-offers it"
    );
    let second = claim_now(&q, &["a"]).await?.context("ready again")?;
    assert_eq!(second.id, x.id);
    assert!(second.token > first.token, "tokens grow with every claim");
    assert!(
        !q.renew(&first, LONG).await?,
        "the first holder lost its lease"
    );
    assert!(!q.ack(&first).await?);
    let forged = Lease {
        token: second.token + 1,
        ..second.clone()
    };
    assert!(!q.renew(&forged, LONG).await? && !q.ack(&forged).await?);
    let elsewhere = Lease {
        pool: "b".into(),
        ..second.clone()
    };
    assert!(!q.renew(&elsewhere, LONG).await? && !q.ack(&elsewhere).await?);
    assert!(q.renew(&second, LONG).await?, "the current holder renews");
    assert!(q.ack(&second).await?);
    assert!(!q.ack(&second).await?, "acked once");
    assert_eq!(depth(&q, "a").await?, (0, 0, 0));
    Ok(())
}

async fn a_renewed_lease_outlives_its_first_deadline(q: Arc<dyn Queue>) -> TestResult {
    let (kept, dropped) = (item("a", 1), item("a", 0));
    q.enqueue(&[kept.clone(), dropped.clone()]).await?;
    let keep = q
        .claim(&pools(&["a"]), SHORT, Duration::ZERO)
        .await?
        .context("ready")?;
    let drop = q
        .claim(&pools(&["a"]), SHORT, Duration::ZERO)
        .await?
        .context("ready")?;
    assert_eq!((keep.id, drop.id), (kept.id, dropped.id));
    assert!(q.renew(&keep, LONG).await?);
    // `drop` was claimed after `keep`, so once it expires `keep`'s first deadline has passed.
    assert_eq!(reaped(&q).await, vec![("a".to_owned(), dropped.id)]);
    assert!(q.renew(&keep, LONG).await?, "still held");
    assert_eq!(depth(&q, "a").await?, (0, 0, 1));
    assert!(q.ack(&keep).await?);
    Ok(())
}

async fn reaping_returns_expired_leases_and_forgets_them(q: Arc<dyn Queue>) -> TestResult {
    let (expiring, lasting) = (item("a", 1), item("a", 0));
    q.enqueue(&[expiring.clone(), lasting.clone()]).await?;
    let lost = q
        .claim(&pools(&["a"]), SHORT, Duration::ZERO)
        .await?
        .context("ready")?;
    let held = claim_now(&q, &["a"]).await?.context("ready")?;
    assert_eq!((lost.id, held.id), (expiring.id, lasting.id));
    assert_eq!(reaped(&q).await, vec![("a".to_owned(), expiring.id)]);
    assert!(q.reap_expired().await?.is_empty(), "reaped once");
    assert_eq!(depth(&q, "a").await?, (0, 0, 1));
    assert!(!q.renew(&lost, LONG).await? && !q.ack(&lost).await?);
    assert_eq!(
        q.enqueue(std::slice::from_ref(&expiring)).await?,
        1,
        "enqueueable again"
    );
    let again = claim_now(&q, &["a"]).await?.context("back in the queue")?;
    assert_eq!(again.id, expiring.id);
    assert!(q.ack(&held).await? && q.ack(&again).await?);
    Ok(())
}

async fn an_acked_id_is_gone_and_can_be_enqueued_again(q: Arc<dyn Queue>) -> TestResult {
    let x = item("a", 0);
    q.enqueue(std::slice::from_ref(&x)).await?;
    let lease = claim_now(&q, &["a"]).await?.context("ready")?;
    assert!(q.ack(&lease).await?);
    assert!(!q.remove("a", x.id).await?, "nothing left to remove");
    assert!(q.reap_expired().await?.is_empty());
    assert_eq!(depth(&q, "a").await?, (0, 0, 0));
    assert_eq!(q.enqueue(std::slice::from_ref(&x)).await?, 1);
    Ok(())
}
