//! The lease lifecycle: claims, renewals, fenced finishes, retries, cancels and the reaper.

use super::*;
use codex32_shared::domain::TimelineEvent;

store_cases!(
    only_one_of_eight_racing_claimers_takes_each_execution,
    a_claim_before_run_at_is_refused_and_succeeds_once_due,
    only_the_lease_holder_at_its_attempt_renews_the_lease,
    a_finish_from_the_wrong_worker_or_attempt_writes_nothing,
    a_retry_requeues_at_the_next_attempt_without_a_worker,
    cancelling_a_queued_execution_ends_it_at_once,
    cancelling_a_running_execution_flags_it_and_its_retry_ends_it,
    a_cancel_racing_a_retry_always_ends_cancelled,
    the_reaper_finishes_only_executions_whose_lease_expired,
    queued_executions_are_paged_in_id_order,
    batched_claims_and_results_answer_each_in_order,
    claims_and_results_of_more_than_a_statements_rows_are_all_written,
);

/// Batches larger than one multi-row statement takes (SQLite: 500 rows) are written whole, with
/// every timeline entry — and a refused id in a later chunk is refused there.
async fn claims_and_results_of_more_than_a_statements_rows_are_all_written(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "many").await?;
    let news: Vec<NewExecution> = (0..1_100).map(|_| new_execution(&b)).collect();
    let made: Vec<Execution> = s
        .create_executions(&news, ada.id, at(0))
        .await?
        .into_iter()
        .map(|(e, _)| e)
        .collect();
    let mut asked: Vec<Uuid> = made.iter().map(|e| e.id).collect();
    asked.insert(1_050, Uuid::now_v7());
    let claimed = s.claim_executions(&asked, "w", at(1), at(30_000)).await?;
    assert_eq!(claimed.len(), asked.len());
    assert!(claimed[1_050].is_none(), "an unknown id is refused");
    let running: Vec<&Execution> = claimed.iter().flatten().collect();
    assert_eq!(running.len(), 1_100);
    assert!(running.iter().zip(&made).all(|(c, m)| c.id == m.id));

    let results: Vec<Finish> = made
        .iter()
        .map(|e| finish(e, 1, Some("w"), ExecStatus::Succeeded))
        .collect();
    let done = s.finish_executions(&results).await?;
    assert_eq!(done, vec![true; 1_100]);
    for e in [&made[0], &made[700], &made[1_099]] {
        assert_eq!(get(s, e.id).await?.status, ExecStatus::Succeeded);
        let kinds: Vec<String> = s
            .timeline(e.id)
            .await?
            .into_iter()
            .map(|t| t.kind)
            .collect();
        assert_eq!(kinds, ["queued", "leased", "finished"]);
    }
    Ok(())
}

async fn batched_claims_and_results_answer_each_in_order(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let (b, capped) = (bot(s, &ada, "batch").await?, bot(s, &ada, "capped").await?);
    let mut r = Vec::new();
    for _ in 0..4 {
        r.push(execution(s, &b).await?);
    }
    let later = NewExecution {
        run_at: Some(at(60_000)),
        ..new_execution(&b)
    };
    let later = s.create_execution(&later, ada.id, at(0)).await?.0;
    let limited = NewExecution {
        max_concurrency: Some(2),
        ..new_execution(&capped)
    };
    let limited = s.create_execution(&limited, ada.id, at(0)).await?.0;
    let asked = [
        r[0].id,
        r[1].id,
        Uuid::now_v7(),
        later.id,
        r[0].id,
        limited.id,
        r[2].id,
        r[3].id,
    ];
    let claimed = s.claim_executions(&asked, "w", at(1), at(30_000)).await?;
    let got: Vec<Option<Uuid>> = claimed.iter().map(|c| c.as_ref().map(|e| e.id)).collect();
    let want = [
        Some(r[0].id),
        Some(r[1].id),
        None,
        None,
        None,
        Some(limited.id),
        Some(r[2].id),
        Some(r[3].id),
    ];
    assert_eq!(
        got, want,
        "unknown, not yet due and twice-asked ids are refused; a limited one is claimed"
    );
    for e in claimed.iter().flatten() {
        assert_eq!(
            (e.status, e.worker_id.as_deref()),
            (ExecStatus::Running, Some("w"))
        );
        assert_eq!(
            (e.started_at, e.lease_expires_at),
            (Some(at(1)), Some(at(30_000)))
        );
    }

    let reaped_early = Finish {
        error: Some("lease expired".into()),
        ..finish(&limited, 1, None, ExecStatus::Failed)
    };
    let results = [
        finish(&r[0], 1, Some("w"), ExecStatus::Succeeded),
        finish(&r[1], 2, Some("w"), ExecStatus::Succeeded),
        finish(&r[2], 1, Some("other"), ExecStatus::Failed),
        finish(&r[3], 1, Some("w"), ExecStatus::Queued),
        reaped_early.clone(),
    ];
    let done = s.finish_executions(&results).await?;
    assert_eq!(
        done,
        [true, false, false, true, false],
        "stale attempt, wrong worker and a live lease write nothing"
    );
    let r0 = get(s, r[0].id).await?;
    assert_eq!(
        (r0.status, r0.exit_code, r0.duration_ms),
        (ExecStatus::Succeeded, Some(0), Some(500))
    );
    assert_eq!((r0.finished_at, r0.lease_expires_at), (Some(at(500)), None));
    assert_eq!(
        (r0.output, r0.usage, r0.sandboxed),
        (Some(json!({"ok": true})), Some(usage()), Some(true))
    );
    let r3 = get(s, r[3].id).await?;
    assert_eq!(
        (r3.status, r3.attempt, r3.worker_id),
        (ExecStatus::Queued, 2, None)
    );
    assert_eq!(get(s, r[1].id).await?.status, ExecStatus::Running);
    let kinds = |t: Vec<TimelineEvent>| t.into_iter().map(|e| e.kind).collect::<Vec<_>>();
    assert_eq!(
        kinds(s.timeline(r[0].id).await?),
        ["queued", "leased", "finished"],
        "each claim and written result has its entry"
    );
    assert_eq!(kinds(s.timeline(r[1].id).await?), ["queued", "leased"]);
    let leased = &s.timeline(limited.id).await?[1];
    assert_eq!((leased.kind.as_str(), leased.at), ("leased", at(1)));
    assert_eq!(
        leased.message, "leased by worker w (attempt 1 of 3)",
        "the limited path records the same entry"
    );
    assert_eq!(s.timeline(r[2].id).await?[1].message, leased.message);

    // The same execution twice in one batch: the first answer is written, the second is stale.
    let twice = [
        finish(&r[1], 1, Some("w"), ExecStatus::Succeeded),
        finish(&r[1], 1, Some("w"), ExecStatus::Failed),
    ];
    assert_eq!(s.finish_executions(&twice).await?, [true, false]);
    assert_eq!(get(s, r[1].id).await?.status, ExecStatus::Succeeded);

    // The reaper's form (no worker) once the lease has expired, beside a worker's result.
    let reaped = Finish {
        at: at(40_000),
        ..reaped_early
    };
    let last = [reaped, finish(&r[2], 1, Some("w"), ExecStatus::Failed)];
    assert_eq!(s.finish_executions(&last).await?, [true, true]);
    let l = get(s, limited.id).await?;
    assert_eq!(
        (l.status, l.finished_at),
        (ExecStatus::Failed, Some(at(40_000)))
    );
    assert_eq!(get(s, r[2].id).await?.status, ExecStatus::Failed);
    assert!(s.finish_executions(&[]).await?.is_empty());
    assert!(s.claim_executions(&[], "w", at(2), at(3)).await?.is_empty());
    Ok(())
}

async fn only_one_of_eight_racing_claimers_takes_each_execution(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let mut executions = Vec::new();
    for _ in 0..4 {
        executions.push(execution(s, &b).await?);
    }
    let workers: Vec<String> = (0..8).map(|i| format!("worker-{i}")).collect();
    let claims = executions.iter().flat_map(|e| {
        workers.iter().map(move |w| async move {
            (
                e.id,
                w.as_str(),
                s.claim_execution(e.id, w, at(0), at(30_000)).await,
            )
        })
    });
    let mut winners = std::collections::HashMap::new();
    for (id, worker, claim) in join_all(claims).await {
        if let Some(won) = claim? {
            assert_eq!(
                (won.status, won.worker_id.as_deref()),
                (ExecStatus::Running, Some(worker))
            );
            assert!(
                winners.insert(id, worker).is_none(),
                "{id} went to two workers"
            );
        }
    }
    assert_eq!(
        winners.len(),
        executions.len(),
        "every execution was taken once"
    );
    for e in &executions {
        let read = get(s, e.id).await?;
        assert_eq!((read.status, read.attempt), (ExecStatus::Running, 1));
        assert_eq!(read.worker_id.as_deref(), Some(winners[&e.id]));
        assert_eq!(
            (read.started_at, read.lease_expires_at),
            (Some(at(0)), Some(at(30_000)))
        );
        assert!(
            s.claim_execution(e.id, "late", at(1), at(2))
                .await?
                .is_none()
        );
    }
    Ok(())
}

async fn a_claim_before_run_at_is_refused_and_succeeds_once_due(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let mut new = new_execution(&b);
    new.run_at = Some(at(60_000));
    let (e, _) = s.create_execution(&new, ada.id, at(0)).await?;
    assert!(
        s.claim_execution(e.id, "w", at(59_999), at(90_000))
            .await?
            .is_none()
    );
    assert_eq!(get(s, e.id).await?.status, ExecStatus::Queued);
    let claimed = s.claim_execution(e.id, "w", at(60_000), at(90_000)).await?;
    assert_eq!(
        claimed.context("due at run_at")?.status,
        ExecStatus::Running
    );
    assert!(
        s.claim_execution(Uuid::now_v7(), "w", at(0), at(1))
            .await?
            .is_none()
    );
    Ok(())
}

async fn only_the_lease_holder_at_its_attempt_renews_the_lease(s: &dyn Store) -> TestResult {
    let e = running(s, "holder", 1_000).await?;
    assert_eq!(s.renew_lease(e.id, 1, "intruder", at(9_000)).await?, None);
    assert_eq!(s.renew_lease(e.id, 2, "holder", at(9_000)).await?, None);
    assert_eq!(get(s, e.id).await?.lease_expires_at, Some(at(1_000)));
    assert_eq!(
        s.renew_lease(e.id, 1, "holder", at(5_000)).await?,
        Some(false)
    );
    assert_eq!(get(s, e.id).await?.lease_expires_at, Some(at(5_000)));
    s.request_cancel(e.id, at(100)).await?;
    assert_eq!(
        s.renew_lease(e.id, 1, "holder", at(6_000)).await?,
        Some(true),
        "told to stop"
    );
    assert!(
        s.finish_execution(&finish(&e, 1, Some("holder"), ExecStatus::Succeeded))
            .await?
    );
    assert_eq!(
        s.renew_lease(e.id, 1, "holder", at(7_000)).await?,
        None,
        "finished"
    );
    Ok(())
}

async fn a_finish_from_the_wrong_worker_or_attempt_writes_nothing(s: &dyn Store) -> TestResult {
    let e = running(s, "holder", 1_000).await?;
    for stale in [
        finish(&e, 1, Some("intruder"), ExecStatus::Failed),
        finish(&e, 2, Some("holder"), ExecStatus::Failed),
    ] {
        assert!(
            !s.finish_execution(&stale).await?,
            "a stale finish must not match"
        );
        let read = get(s, e.id).await?;
        assert_eq!(
            (read.status, read.output, read.exit_code),
            (ExecStatus::Running, None, None)
        );
        assert_eq!(
            (read.finished_at, read.worker_id.as_deref()),
            (None, Some("holder"))
        );
    }
    let mut done = finish(&e, 1, Some("holder"), ExecStatus::Succeeded);
    done.output = Some(json!({"answer": 42}));
    assert!(s.finish_execution(&done).await?);
    let read = get(s, e.id).await?;
    assert_eq!(
        (read.status, read.output, read.exit_code),
        (ExecStatus::Succeeded, Some(json!({"answer": 42})), Some(0))
    );
    assert_eq!(
        (read.finished_at, read.duration_ms, read.lease_expires_at),
        (Some(at(500)), Some(500), None)
    );
    assert_eq!(
        (read.usage, read.sandboxed),
        (Some(usage()), Some(true)),
        "accounting is kept"
    );
    let mut late = finish(&e, 1, Some("holder"), ExecStatus::Failed);
    late.exit_code = Some(1);
    assert!(
        !s.finish_execution(&late).await?,
        "a finished execution stays finished"
    );
    assert_eq!(get(s, e.id).await?.status, ExecStatus::Succeeded);
    Ok(())
}

async fn a_retry_requeues_at_the_next_attempt_without_a_worker(s: &dyn Store) -> TestResult {
    let e = running(s, "holder", 1_000).await?;
    let mut retry = finish(&e, 1, Some("holder"), ExecStatus::Queued);
    (retry.output, retry.error, retry.exit_code) = (None, Some("exit status 1".into()), Some(1));
    retry.run_at = Some(at(10_000));
    assert!(s.finish_execution(&retry).await?);
    let read = get(s, e.id).await?;
    assert_eq!(
        (read.status, read.attempt, read.worker_id),
        (ExecStatus::Queued, 2, None)
    );
    assert_eq!(
        (read.lease_expires_at, read.started_at, read.finished_at),
        (None, None, None)
    );
    assert_eq!(
        (read.run_at, read.error.as_deref(), read.exit_code),
        (Some(at(10_000)), Some("exit status 1"), Some(1))
    );
    assert!(
        !s.finish_execution(&finish(&e, 1, Some("holder"), ExecStatus::Succeeded))
            .await?
    );
    assert_eq!(s.renew_lease(e.id, 1, "holder", at(2_000)).await?, None);
    assert!(
        s.claim_execution(e.id, "next", at(9_999), at(20_000))
            .await?
            .is_none(),
        "backing off"
    );
    let again = s
        .claim_execution(e.id, "next", at(10_000), at(20_000))
        .await?
        .context("due")?;
    assert_eq!(
        (again.attempt, again.worker_id.as_deref()),
        (2, Some("next"))
    );
    assert!(
        s.finish_execution(&finish(&e, 2, Some("next"), ExecStatus::Succeeded))
            .await?
    );
    Ok(())
}

async fn cancelling_a_queued_execution_ends_it_at_once(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let e = execution(s, &b).await?;
    let cancelled = s.request_cancel(e.id, at(7)).await?.context("known")?;
    assert_eq!(
        (cancelled.status, cancelled.finished_at),
        (ExecStatus::Cancelled, Some(at(7)))
    );
    assert_eq!(get(s, e.id).await?.status, ExecStatus::Cancelled);
    assert!(s.claim_execution(e.id, "w", at(8), at(9)).await?.is_none());
    let again = s.request_cancel(e.id, at(9)).await?.context("known")?;
    assert_eq!(
        (again.status, again.finished_at),
        (ExecStatus::Cancelled, Some(at(7)))
    );
    assert!(s.request_cancel(Uuid::now_v7(), at(9)).await?.is_none());
    Ok(())
}

async fn cancelling_a_running_execution_flags_it_and_its_retry_ends_it(
    s: &dyn Store,
) -> TestResult {
    let e = running(s, "holder", 1_000).await?;
    let flagged = s.request_cancel(e.id, at(100)).await?.context("known")?;
    assert_eq!(
        (flagged.status, flagged.cancel_requested),
        (ExecStatus::Running, true)
    );
    assert_eq!(flagged.worker_id.as_deref(), Some("holder"));
    let mut retry = finish(&e, 1, Some("holder"), ExecStatus::Queued);
    retry.run_at = Some(at(5_000));
    assert!(s.finish_execution(&retry).await?);
    let read = get(s, e.id).await?;
    assert_eq!(
        (read.status, read.attempt, read.finished_at),
        (ExecStatus::Cancelled, 1, Some(at(500)))
    );
    assert!(
        s.claim_execution(e.id, "next", at(6_000), at(9_000))
            .await?
            .is_none()
    );
    // A final result still wins over a pending cancel: the work did finish.
    let other = running(s, "other", 1_000).await?;
    s.request_cancel(other.id, at(100)).await?;
    assert!(
        s.finish_execution(&finish(&other, 1, Some("other"), ExecStatus::Succeeded))
            .await?
    );
    assert_eq!(get(s, other.id).await?.status, ExecStatus::Succeeded);
    let unchanged = s
        .request_cancel(other.id, at(900))
        .await?
        .context("known")?;
    assert_eq!(unchanged.status, ExecStatus::Succeeded);
    Ok(())
}

async fn the_reaper_finishes_only_executions_whose_lease_expired(s: &dyn Store) -> TestResult {
    let first = running(s, "one", 1_000).await?;
    let second = running(s, "two", 1_500).await?;
    assert!(s.expired_leases(at(900), 10).await?.is_empty());
    let mut early = finish(&first, 1, None, ExecStatus::Queued);
    early.at = at(900);
    assert!(
        !s.finish_execution(&early).await?,
        "the lease is still live"
    );
    assert_eq!(get(s, first.id).await?.status, ExecStatus::Running);
    assert_eq!(ids(&s.expired_leases(at(1_200), 10).await?), vec![first.id]);
    assert_eq!(
        ids(&s.expired_leases(at(2_000), 10).await?),
        vec![first.id, second.id]
    );
    assert_eq!(
        ids(&s.expired_leases(at(2_000), 1).await?),
        vec![first.id],
        "oldest first"
    );
    let mut requeue = finish(&first, 1, None, ExecStatus::Queued);
    (requeue.at, requeue.run_at, requeue.error) =
        (at(2_000), Some(at(3_000)), Some("lease expired".into()));
    assert!(s.finish_execution(&requeue).await?);
    assert!(!s.finish_execution(&requeue).await?, "reaped once");
    let read = get(s, first.id).await?;
    assert_eq!(
        (read.status, read.attempt, read.worker_id),
        (ExecStatus::Queued, 2, None)
    );
    let mut give_up = finish(&second, 1, None, ExecStatus::Failed);
    (give_up.at, give_up.output, give_up.error) = (at(2_000), None, Some("lease expired".into()));
    assert!(s.finish_execution(&give_up).await?);
    assert_eq!(get(s, second.id).await?.status, ExecStatus::Failed);
    assert!(s.expired_leases(at(10_000), 10).await?.is_empty());
    Ok(())
}

async fn queued_executions_are_paged_in_id_order(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let mut all = Vec::new();
    for _ in 0..7 {
        all.push(execution(s, &b).await?.id);
    }
    s.claim_execution(all[2], "w", at(0), at(1_000))
        .await?
        .context("claim")?;
    s.request_cancel(all[4], at(0)).await?;
    let expected: Vec<Uuid> = all
        .iter()
        .copied()
        .filter(|id| *id != all[2] && *id != all[4])
        .collect();
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let page = s.queued_page(after, 2).await?;
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(ids(&page));
    }
    assert_eq!(seen, expected);
    Ok(())
}

/// Whichever lands first, a cancel and a retry of the same attempt end in `cancelled`: a
/// cancel must never be lost between "it was running" and "it is queued again".
async fn a_cancel_racing_a_retry_always_ends_cancelled(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    for round in 0..40 {
        let e = execution(s, &b).await?;
        let worker = format!("worker-{round}");
        s.claim_execution(e.id, &worker, at(0), at(60_000))
            .await?
            .context("claim")?;
        let mut retry = finish(&e, 1, Some(&worker), ExecStatus::Queued);
        retry.run_at = Some(at(1_000));
        let (cancel, retried) =
            tokio::join!(s.request_cancel(e.id, at(10)), s.finish_execution(&retry));
        cancel?.context("known")?;
        assert!(retried?, "the holder's retry is not stale");
        let read = get(s, e.id).await?;
        assert_eq!(
            read.status,
            ExecStatus::Cancelled,
            "round {round}: the cancel was lost"
        );
    }
    Ok(())
}
