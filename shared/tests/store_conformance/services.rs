//! Service bots' wanted state and their workers' fenced reports.

use codex32_shared::domain::{Desired, ServiceReport, ServiceState};

use super::*;

store_cases!(
    starting_a_service_resets_its_count_and_stopping_keeps_it,
    only_the_worker_holding_the_attempt_reports_and_only_while_wanted,
    services_to_start_are_wanted_quiet_and_without_a_live_execution,
);

fn report(b: &Bot, e: &Execution, worker: &str, state: ServiceState, ms: i64) -> ServiceReport {
    ServiceReport {
        bot_id: b.id,
        execution_id: e.id,
        attempt: e.attempt,
        worker_id: worker.to_owned(),
        state,
        restarted: state == ServiceState::Backoff,
        last_exit_code: (state == ServiceState::Backoff).then_some(1),
        last_reason: Some(format!("{state} at {ms}")),
        log_tail: Some(vec!["boom".into()]),
        started_at: (state == ServiceState::Running).then(|| at(ms)),
        at: at(ms),
    }
}

async fn starting_a_service_resets_its_count_and_stopping_keeps_it(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "svc").await?;
    assert!(s.service(b.id).await?.is_none());
    let st = s.set_service_desired(b.id, Desired::Running, at(0)).await?;
    assert_eq!(
        (st.desired, st.state, st.restarts),
        (Desired::Running, ServiceState::Pending, 0)
    );
    let e = execution(s, &b).await?;
    s.claim_execution(e.id, "w1", at(1), at(30_000))
        .await?
        .context("claimed")?;
    let e = s.get_execution(e.id).await?.context("exists")?;
    for n in 0..3 {
        assert!(
            s.report_service(&report(&b, &e, "w1", ServiceState::Backoff, n))
                .await?
                .is_some()
        );
    }
    let st = s
        .set_service_desired(b.id, Desired::Stopped, at(10))
        .await?;
    assert_eq!((st.state, st.restarts), (ServiceState::Stopped, 3));
    assert_eq!(st.log_tail, vec!["boom".to_owned()]);
    assert_eq!(st.last_exit_code, Some(1));
    let st = s
        .set_service_desired(b.id, Desired::Running, at(20))
        .await?;
    assert_eq!((st.state, st.restarts), (ServiceState::Pending, 0));
    Ok(())
}

async fn only_the_worker_holding_the_attempt_reports_and_only_while_wanted(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "svc").await?;
    s.set_service_desired(b.id, Desired::Running, at(0)).await?;
    let e = execution(s, &b).await?;
    s.claim_execution(e.id, "w1", at(1), at(30_000))
        .await?
        .context("claimed")?;
    let e = s.get_execution(e.id).await?.context("exists")?;
    let running = report(&b, &e, "w1", ServiceState::Running, 2);
    assert_eq!(s.report_service(&running).await?, Some(0));
    let st = s.service(b.id).await?.context("exists")?;
    assert_eq!(st.state, ServiceState::Running);
    assert_eq!(
        (st.worker_id.as_deref(), st.started_at),
        (Some("w1"), Some(at(2)))
    );
    // Another worker, or an older attempt, is fenced out.
    assert_eq!(
        s.report_service(&report(&b, &e, "w2", ServiceState::Backoff, 3))
            .await?,
        None
    );
    let mut stale = report(&b, &e, "w1", ServiceState::Backoff, 3);
    stale.attempt += 1;
    assert_eq!(s.report_service(&stale).await?, None);
    // Once stopped, even the holder cannot bring the state back.
    s.set_service_desired(b.id, Desired::Stopped, at(4)).await?;
    assert_eq!(
        s.report_service(&report(&b, &e, "w1", ServiceState::Running, 5))
            .await?,
        None
    );
    assert_eq!(
        s.service(b.id).await?.context("exists")?.state,
        ServiceState::Stopped
    );
    Ok(())
}

async fn services_to_start_are_wanted_quiet_and_without_a_live_execution(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let (wanted, stopped, busy) = (
        bot(s, &ada, "wanted").await?,
        bot(s, &ada, "stopped").await?,
        bot(s, &ada, "busy").await?,
    );
    for b in [&wanted, &stopped, &busy] {
        s.set_service_desired(b.id, Desired::Running, at(0)).await?;
    }
    s.set_service_desired(stopped.id, Desired::Stopped, at(0))
        .await?;
    execution(s, &busy).await?;
    assert!(
        s.services_to_start(at(0)).await?.is_empty(),
        "changed too recently"
    );
    assert_eq!(s.services_to_start(at(1)).await?, vec![wanted.id]);
    s.delete_bot(wanted.id, at(2)).await?;
    assert!(
        s.services_to_start(at(3)).await?.is_empty(),
        "a deleted bot's service"
    );
    Ok(())
}
