//! Logs, the audit log, the worker registry and health.

use super::*;

store_cases!(
    a_large_batch_of_log_lines_reads_back_in_order_from_any_offset,
    a_log_batch_that_fails_writes_none_of_its_lines,
    audit_entries_are_recorded_with_and_without_an_actor,
    a_worker_upserted_twice_is_listed_once_with_its_latest_state,
    the_store_answers_a_ping_and_migrating_again_changes_nothing,
    a_growing_table_once_analyzed_has_its_size_in_its_statistics,
);

async fn a_large_batch_of_log_lines_reads_back_in_order_from_any_offset(
    s: &dyn Store,
) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let (e, other) = (execution(s, &b).await?, execution(s, &b).await?);
    let line = |execution_id, i: usize| NewLogLine {
        execution_id,
        attempt: 1,
        stream: if i.is_multiple_of(2) {
            LogStream::Stdout
        } else {
            LogStream::Stderr
        },
        line: format!("line {i}"),
        at: at(i as i64),
    };
    // More than one INSERT's worth, with another execution's lines interleaved.
    let mut batch: Vec<NewLogLine> = (0..1234).map(|i| line(e.id, i)).collect();
    for i in 0..3 {
        batch.insert(i * 600, line(other.id, i));
    }
    let ids = s.append_logs(&batch).await?;
    let read = s.read_logs(e.id, 0, 5_000).await?;
    assert_eq!(read.len(), 1234);
    let ours: Vec<i64> = batch
        .iter()
        .zip(&ids)
        .filter(|(l, _)| l.execution_id == e.id)
        .map(|(_, id)| *id)
        .collect();
    assert_eq!(
        ours,
        ids_of_logs(&read),
        "append_logs returns ids in input order"
    );
    for (i, l) in read.iter().enumerate() {
        assert_eq!(
            (l.line.as_str(), l.execution_id, l.attempt),
            (format!("line {i}").as_str(), e.id, 1)
        );
        assert_eq!(
            l.stream,
            if i.is_multiple_of(2) {
                LogStream::Stdout
            } else {
                LogStream::Stderr
            }
        );
        assert_eq!(l.at, at(i as i64));
    }
    assert!(read.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    let rest = s.read_logs(e.id, read[999].id, 5_000).await?;
    assert_eq!((rest.len(), rest[0].line.as_str()), (234, "line 1000"));
    let first = s.read_logs(e.id, 0, 10).await?;
    assert_eq!(
        first.iter().map(|l| l.id).collect::<Vec<_>>(),
        ids_of_logs(&read[..10])
    );
    assert!(s.read_logs(e.id, read[1233].id, 10).await?.is_empty());
    assert_eq!(s.read_logs(other.id, 0, 10).await?.len(), 3);
    assert!(s.append_logs(&[]).await?.is_empty());
    Ok(())
}

fn ids_of_logs(lines: &[codex32_shared::domain::LogLine]) -> Vec<i64> {
    lines.iter().map(|l| l.id).collect()
}

async fn audit_entries_are_recorded_with_and_without_an_actor(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let entry = AuditEntry {
        actor_id: Some(ada.id),
        action: "bot.create".into(),
        target: "bot:daily".into(),
        details: json!({"version": 1}),
        at: at(0),
    };
    s.record_audit(&entry).await?;
    s.record_audit(&entry).await?;
    s.record_audit(&AuditEntry {
        actor_id: None,
        action: "worker.lost".into(),
        at: at(5_000),
        ..entry.clone()
    })
    .await?;
    s.record_audit(&AuditEntry {
        action: "bot_x.weird".into(),
        at: at(6_000),
        ..entry
    })
    .await?;
    let all = s
        .list_audit(&AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await?;
    let actions: Vec<&str> = all.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(
        actions,
        ["bot_x.weird", "worker.lost", "bot.create", "bot.create"],
        "newest first"
    );
    assert_eq!(all[1].actor_id, None);
    assert_eq!(all[2].details, json!({"version": 1}));
    let bots = s
        .list_audit(&AuditFilter {
            action_prefix: Some("bot.".into()),
            limit: 10,
            ..Default::default()
        })
        .await?;
    assert_eq!(
        bots.len(),
        2,
        "a prefix matches literally: `bot_x.` is not `bot.`"
    );
    let by_ada = s
        .list_audit(&AuditFilter {
            actor_id: Some(ada.id),
            since: Some(at(1)),
            limit: 10,
            ..Default::default()
        })
        .await?;
    assert_eq!(by_ada.len(), 1, "actor and time filters combine");
    let one = s
        .list_audit(&AuditFilter {
            target: Some("bot:daily".into()),
            limit: 1,
            ..Default::default()
        })
        .await?;
    assert_eq!(one.len(), 1);
    Ok(())
}

async fn a_worker_upserted_twice_is_listed_once_with_its_latest_state(s: &dyn Store) -> TestResult {
    let first = WorkerInfo {
        id: "worker-a".into(),
        hostname: "host-1".into(),
        version: "0.1.0".into(),
        pools: vec!["default".into()],
        slots: 4,
        running: 0,
        state: "running".into(),
        sandbox: "none".into(),
        started_at: at(0),
        last_seen_at: at(0),
    };
    s.upsert_worker(&first).await?;
    // The same id again: a heartbeat, here from a restarted, upgraded process.
    let latest = WorkerInfo {
        hostname: "host-2".into(),
        version: "0.2.0".into(),
        pools: vec!["default".into(), "gpu".into()],
        slots: 8,
        running: 3,
        state: "draining".into(),
        sandbox: "cgroup v1: memory, cpu, pids".into(),
        started_at: at(5_000),
        last_seen_at: at(6_000),
        ..first.clone()
    };
    s.upsert_worker(&latest).await?;
    s.upsert_worker(&WorkerInfo {
        id: "worker-b".into(),
        last_seen_at: at(1_000),
        ..first
    })
    .await?;
    let listed = s.list_workers().await?;
    let order: Vec<&str> = listed.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(
        order,
        vec!["worker-a", "worker-b"],
        "most recently seen first"
    );
    let a = &listed[0];
    assert_eq!(
        (a.hostname.as_str(), a.version.as_str(), &a.pools),
        ("host-2", "0.2.0", &latest.pools)
    );
    assert_eq!((a.slots, a.running, a.state.as_str()), (8, 3, "draining"));
    assert_eq!((a.started_at, a.last_seen_at), (at(5_000), at(6_000)));
    assert_eq!(a.sandbox, "cgroup v1: memory, cpu, pids");
    Ok(())
}

async fn the_store_answers_a_ping_and_migrating_again_changes_nothing(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    s.ping().await?;
    s.migrate().await?;
    assert_eq!(ids_of_users(s).await?, vec![ada.id]);
    Ok(())
}

/// A batch is all or nothing, even across statements: a writer that retries a failed batch
/// must not duplicate the lines that got in the first time.
async fn a_log_batch_that_fails_writes_none_of_its_lines(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let e = execution(s, &b).await?;
    let mut batch: Vec<NewLogLine> = (0..1200)
        .map(|i| NewLogLine {
            execution_id: e.id,
            attempt: 1,
            stream: LogStream::Stdout,
            line: format!("line {i}"),
            at: at(i),
        })
        .collect();
    // A line of an execution that does not exist, past the first statement's worth.
    batch[1100].execution_id = Uuid::now_v7();
    assert!(s.append_logs(&batch).await.is_err());
    assert!(s.read_logs(e.id, 0, 5_000).await?.is_empty());
    Ok(())
}

/// PostgreSQL names `executions` (SQLite no table: it keeps no plans to renew), and only the
/// tables it names can be analyzed.
async fn a_growing_table_once_analyzed_has_its_size_in_its_statistics(s: &dyn Store) -> TestResult {
    let ada = user(s, "ada@example.com").await?;
    let b = bot(s, &ada, "daily").await?;
    let news: Vec<NewExecution> = (0..300).map(|_| new_execution(&b)).collect();
    s.create_executions(&news, ada.id, at(0)).await?;
    for size in s.table_sizes().await? {
        ensure!(size.table == "executions", "{size:?}");
        ensure!(
            size.pages > 0 && size.pages_in_statistics == 0,
            "a table never analyzed: {size:?}"
        );
        s.analyze(&size.table).await?;
    }
    for size in s.table_sizes().await? {
        ensure!(size.pages_in_statistics == size.pages, "{size:?}");
    }
    ensure!(
        matches!(s.analyze("users").await, Err(StoreError::Config(_))),
        "a table the store does not name is refused"
    );
    Ok(())
}
