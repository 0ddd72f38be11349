//! Cron firing. One scheduler at a time leads (a lease in the store, renewed every tick and
//! taken over within [`LEAD_FOR`] of its holder dying); the leader creates one execution per
//! due fire time of each active scheduled bot. A fire time's execution carries the
//! idempotency key `schedule:<ms>`, so the store itself refuses a second execution for the
//! same bot and time — even from a leader that does not yet know it was replaced.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use codex32_shared::Backends;
use codex32_shared::Timestamp;
use codex32_shared::cron::{CronSchedule, MissedRuns, due_fire_times};
use codex32_shared::domain::bot::{MissedPolicy, OverlapPolicy, Schedule};
use codex32_shared::domain::{Bot, ExecStatus, NewExecution};
use codex32_shared::submit::{cancel, submit};
use uuid::Uuid;

/// How long a leader's lease lasts without renewal: the takeover time after it dies.
pub const LEAD_FOR: std::time::Duration = std::time::Duration::from_secs(3);
/// A fire time this recent is on time; older ones were missed (downtime).
const ON_TIME: chrono::Duration = chrono::Duration::seconds(2);
const LEASE_NAME: &str = "cron";

/// The cron state of one scheduler process.
pub struct Firing {
    holder: String,
    /// The fencing token while leading.
    token: Option<i64>,
    last_fired: HashMap<Uuid, DateTime<Utc>>,
    parsed: HashMap<(Uuid, i32), CronSchedule>,
}

impl Firing {
    pub fn new(holder: String) -> Self {
        Self {
            holder,
            token: None,
            last_fired: HashMap::new(),
            parsed: HashMap::new(),
        }
    }

    /// Whether this scheduler led at its last tick.
    pub fn leading(&self) -> bool {
        self.token.is_some()
    }

    /// Keeps or takes the lead; while leading, fires what is due. Returns executions created.
    pub async fn tick(&mut self, backends: &Backends, now: Timestamp) -> anyhow::Result<usize> {
        let until = now.plus_millis(LEAD_FOR.as_millis() as i64);
        match backends
            .store
            .try_lead(LEASE_NAME, &self.holder, now, until)
            .await?
        {
            None => {
                if self.token.take().is_some() {
                    tracing::warn!(holder = %self.holder, "Lost the cron lead to another scheduler.");
                }
                return Ok(0);
            }
            Some(token) if self.token != Some(token) => {
                tracing::info!(holder = %self.holder, token, "Leading the cron schedules.");
                self.token = Some(token);
                // What another leader fired meanwhile is in the store, not here.
                self.last_fired.clear();
            }
            Some(_) => {}
        }
        let mut created = 0;
        for bot in backends.store.scheduled_bots().await? {
            if bot.status != "active" {
                continue;
            }
            match self.fire_bot(backends, &bot, now).await {
                Ok(n) => created += n,
                Err(e) => {
                    tracing::warn!(bot_id = %bot.id, error = %e, "Cannot fire a schedule; will retry next tick.")
                }
            }
        }
        Ok(created)
    }

    async fn fire_bot(
        &mut self,
        backends: &Backends,
        bot: &Bot,
        now: Timestamp,
    ) -> anyhow::Result<usize> {
        let Some(schedule) = &bot.spec.schedule else {
            return Ok(0);
        };
        let cron = match self.parsed.get(&(bot.id, bot.version)) {
            Some(cron) => cron.clone(),
            None => {
                let cron = CronSchedule::parse(&schedule.cron, &schedule.timezone)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                self.parsed.insert((bot.id, bot.version), cron.clone());
                cron
            }
        };
        let last = match self.last_fired.get(&bot.id) {
            Some(at) => Some(*at),
            None => backends.store.last_fire(bot.id).await?.map(|t| t.0),
        };
        // A schedule with no fire yet counts from the bot's last change (when it got it).
        let due = due_fire_times(
            &cron,
            last,
            bot.updated_at.0,
            now.0,
            missed_runs(schedule),
            ON_TIME,
        );
        let mut created = 0;
        for at in due {
            created += usize::from(fire(backends, bot, schedule, &cron, at).await?);
            self.last_fired.insert(bot.id, at);
        }
        Ok(created)
    }
}

fn missed_runs(schedule: &Schedule) -> MissedRuns {
    match schedule.missed {
        MissedPolicy::Skip => MissedRuns::Skip,
        MissedPolicy::RunOnce => MissedRuns::RunOnce,
        MissedPolicy::RunAll => MissedRuns::RunAll {
            cap: schedule.missed_cap as usize,
        },
    }
}

/// Creates the execution of one fire time, as the overlap policy allows.
async fn fire(
    backends: &Backends,
    bot: &Bot,
    schedule: &Schedule,
    cron: &CronSchedule,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    if schedule.overlap != OverlapPolicy::Allow {
        let live = backends.store.live_scheduled(bot.id).await?;
        let blocked = match schedule.overlap {
            OverlapPolicy::Skip => !live.is_empty(),
            OverlapPolicy::QueueOne => live.iter().any(|e| e.status == ExecStatus::Queued),
            OverlapPolicy::CancelPrevious | OverlapPolicy::Allow => false,
        };
        if blocked {
            tracing::info!(bot_id = %bot.id, fire_time = %at, policy = ?schedule.overlap, "Fire time skipped: an earlier scheduled execution is still live.");
            return Ok(false);
        }
        if schedule.overlap == OverlapPolicy::CancelPrevious {
            for e in live {
                cancel(backends, e.id, &format!("cancelled by the schedule's next fire time ({at}), overlap: cancel_previous")).await?;
            }
        }
    }
    let mut new = NewExecution::of(bot, serde_json::json!({ "scheduled_for": at }));
    if schedule.overlap == OverlapPolicy::QueueOne {
        // The one that waits must wait for the running one: scheduled runs go one at a time.
        new.max_concurrency = Some(1);
    }
    new.scheduled_for = Some(at.into());
    new.idempotency_key = Some(format!("schedule:{}", at.timestamp_millis()));
    let why = format!(
        "fired by schedule {:?} ({}) for {}",
        cron.expression(),
        cron.timezone(),
        at.to_rfc3339()
    );
    let (_, created) = submit(backends, &new, bot.owner_id, &why).await?;
    Ok(created)
}
