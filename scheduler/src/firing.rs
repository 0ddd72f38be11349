//! Cron firing. One scheduler at a time leads (a lease in the store, renewed every tick and
//! taken over within [`LEAD_FOR`] of its holder dying); the leader creates one execution per
//! due fire time of each active scheduled bot. A fire time's execution carries the
//! idempotency key `schedule:<ms>`, so the store itself refuses a second execution for the
//! same bot and time — even from a leader that does not yet know it was replaced.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use codex32_shared::Backends;
use codex32_shared::Timestamp;
use codex32_shared::cron::{CronSchedule, MissedRuns, due_fire_times};
use codex32_shared::domain::bot::{MissedPolicy, OverlapPolicy, Schedule};
use codex32_shared::domain::{Bot, ExecStatus, NewExecution};
use codex32_shared::submit::{cancel, submit, submit_many};
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
    /// Each bot's latest fire time as far as this leader knows (None: never fired).
    last_fired: HashMap<Uuid, Option<DateTime<Utc>>>,
    parsed: HashMap<(Uuid, i32), CronSchedule>,
    /// The earliest next fire time seen at the last tick.
    next_due: Option<DateTime<Utc>>,
    /// Each schedule's next fire time, until it passes.
    next_fire: HashMap<(Uuid, i32), DateTime<Utc>>,
}

impl Firing {
    pub fn new(holder: String) -> Self {
        Self {
            holder,
            token: None,
            last_fired: HashMap::new(),
            parsed: HashMap::new(),
            next_due: None,
            next_fire: HashMap::new(),
        }
    }

    /// Whether this scheduler led at its last tick.
    pub fn leading(&self) -> bool {
        self.token.is_some()
    }

    /// Keeps or takes the lead; while leading, fires what is due. Returns executions created.
    pub async fn tick(&mut self, backends: &Backends, now: Timestamp) -> anyhow::Result<usize> {
        // Cleared first: a tick that fails must not leave a past wake-up behind (a busy loop).
        self.next_due = None;
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
        let bots: Vec<Bot> = backends
            .store
            .scheduled_bots()
            .await?
            .into_iter()
            .filter(|b| b.status == "active")
            .collect();
        self.learn_last_fires(backends, &bots).await?;
        let mut due = Vec::new();
        for bot in &bots {
            match self.due_for(bot, now) {
                Ok((cron, times)) if !times.is_empty() => due.push((bot, cron, times)),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(bot_id = %bot.id, error = %e, "Cannot read a schedule; will retry next tick.")
                }
            }
        }
        let created = self.fire_due(backends, due).await?;
        self.next_due = self.earliest_next(&bots, now);
        Ok(created)
    }

    /// When the next fire time of any active schedule comes (None: no schedule), so the
    /// scheduler wakes for it instead of waiting for its next tick.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.next_due.filter(|_| self.leading())
    }

    /// Each schedule's next fire time is computed once and kept until it has passed: a tick
    /// over many schedules does not walk every cron expression again.
    fn earliest_next(&mut self, bots: &[Bot], now: Timestamp) -> Option<DateTime<Utc>> {
        let mut earliest = None;
        for bot in bots {
            let key = (bot.id, bot.version);
            let cached = self.next_fire.get(&key).copied().filter(|at| *at > now.0);
            let next = match cached {
                Some(at) => Some(at),
                None => self
                    .parsed
                    .get(&key)
                    .and_then(|cron| cron.next_after(now.0)),
            };
            if let Some(at) = next {
                self.next_fire.insert(key, at);
                earliest = Some(earliest.map_or(at, |e: DateTime<Utc>| e.min(at)));
            }
        }
        earliest
    }

    /// Reads the last fire time of every bot this leader has not seen yet, in one query, and
    /// forgets what it kept of bots no longer scheduled (deleted, paused) and of versions
    /// replaced by a change (a fire time is kept per bot, whatever its version).
    async fn learn_last_fires(&mut self, backends: &Backends, bots: &[Bot]) -> anyhow::Result<()> {
        let current: HashSet<(Uuid, i32)> = bots.iter().map(|b| (b.id, b.version)).collect();
        let ids: HashSet<Uuid> = current.iter().map(|(id, _)| *id).collect();
        self.last_fired.retain(|id, _| ids.contains(id));
        self.parsed.retain(|key, _| current.contains(key));
        self.next_fire.retain(|key, _| current.contains(key));
        let unknown: Vec<Uuid> = bots
            .iter()
            .map(|b| b.id)
            .filter(|id| !self.last_fired.contains_key(id))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let known: HashMap<Uuid, Timestamp> = backends
            .store
            .last_fires(&unknown)
            .await?
            .into_iter()
            .collect();
        for id in unknown {
            self.last_fired.insert(id, known.get(&id).map(|t| t.0));
        }
        Ok(())
    }

    /// The schedule of `bot` and its fire times due by `now` not fired yet.
    fn due_for(
        &mut self,
        bot: &Bot,
        now: Timestamp,
    ) -> anyhow::Result<(CronSchedule, Vec<DateTime<Utc>>)> {
        let Some(schedule) = &bot.spec.schedule else {
            anyhow::bail!("the bot has no schedule");
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
        let last = self.last_fired.get(&bot.id).copied().flatten();
        // A schedule with no fire yet counts from the bot's last change (when it got it).
        let times = due_fire_times(
            &cron,
            last,
            bot.updated_at.0,
            now.0,
            missed_runs(schedule),
            ON_TIME,
        );
        Ok((cron, times))
    }

    /// Fires what is due as the overlap policies allow: the live executions of every bot that
    /// needs them are read in one query, and the executions are created in one batch
    /// (`cancel_previous`, which must cancel first, fires bot by bot).
    async fn fire_due(
        &mut self,
        backends: &Backends,
        due: Vec<(&Bot, CronSchedule, Vec<DateTime<Utc>>)>,
    ) -> anyhow::Result<usize> {
        let checked: Vec<Uuid> = due
            .iter()
            .filter(|(b, _, _)| overlap_of(b) != OverlapPolicy::Allow)
            .map(|(b, _, _)| b.id)
            .collect();
        let live = backends.store.live_scheduled_bots(&checked).await?;
        let mut created = 0;
        let mut batch = Vec::new();
        for (bot, cron, times) in due {
            let Some(schedule) = &bot.spec.schedule else {
                continue;
            };
            let statuses: Vec<ExecStatus> = live
                .iter()
                .filter(|(id, _)| *id == bot.id)
                .map(|(_, s)| *s)
                .collect();
            let fired: Vec<DateTime<Utc>> = match schedule.overlap {
                OverlapPolicy::Allow => times.clone(),
                OverlapPolicy::Skip if statuses.is_empty() => {
                    times.first().copied().into_iter().collect()
                }
                OverlapPolicy::QueueOne if !statuses.contains(&ExecStatus::Queued) => {
                    times.first().copied().into_iter().collect()
                }
                OverlapPolicy::Skip | OverlapPolicy::QueueOne => {
                    tracing::info!(bot_id = %bot.id, policy = ?schedule.overlap, skipped = times.len(), "Fire times skipped: an earlier scheduled execution is still live.");
                    vec![]
                }
                OverlapPolicy::CancelPrevious => {
                    for at in &times {
                        created += usize::from(fire(backends, bot, schedule, &cron, *at).await?);
                    }
                    vec![]
                }
            };
            batch.extend(
                fired
                    .into_iter()
                    .map(|at| (fire_of(bot, schedule, &cron, at), bot.owner_id)),
            );
            if let Some(last) = times.last() {
                self.last_fired.insert(bot.id, Some(*last));
            }
        }
        Ok(created + submit_fires(backends, batch).await?)
    }
}

fn overlap_of(bot: &Bot) -> OverlapPolicy {
    bot.spec
        .schedule
        .as_ref()
        .map_or(OverlapPolicy::Allow, |s| s.overlap)
}

fn fire_of(bot: &Bot, schedule: &Schedule, cron: &CronSchedule, at: DateTime<Utc>) -> NewExecution {
    let why = format!(
        "fired by schedule {:?} ({}) for {}",
        cron.expression(),
        cron.timezone(),
        at.to_rfc3339()
    );
    let mut new = NewExecution::of(bot, serde_json::json!({ "scheduled_for": at }), why);
    if schedule.overlap == OverlapPolicy::QueueOne {
        // The one that waits must wait for the running one: scheduled runs go one at a time.
        new.max_concurrency = Some(1);
    }
    new.scheduled_for = Some(at.into());
    new.idempotency_key = Some(format!("schedule:{}", at.timestamp_millis()));
    new
}

/// Submits the fires' executions, one batch per owner (each durable with its first timeline
/// entries before anything is queued). Returns how many are new (a fire time's idempotency
/// key returns the execution another leader made).
async fn submit_fires(
    backends: &Backends,
    fires: Vec<(NewExecution, Uuid)>,
) -> anyhow::Result<usize> {
    let mut owners: Vec<Uuid> = fires.iter().map(|(_, owner)| *owner).collect();
    owners.sort();
    owners.dedup();
    let mut created = 0;
    for owner in owners {
        let news: Vec<NewExecution> = fires
            .iter()
            .filter(|(_, o)| *o == owner)
            .map(|(new, _)| new.clone())
            .collect();
        let results = submit_many(backends, &news, owner).await?;
        created += results.iter().filter(|(_, new)| *new).count();
    }
    Ok(created)
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

/// Creates the execution of one fire time of a `cancel_previous` schedule: the live ones are
/// cancelled first.
async fn fire(
    backends: &Backends,
    bot: &Bot,
    schedule: &Schedule,
    cron: &CronSchedule,
    at: DateTime<Utc>,
) -> anyhow::Result<bool> {
    for e in backends.store.live_scheduled(bot.id).await? {
        let why =
            format!("cancelled by the schedule's next fire time ({at}), overlap: cancel_previous");
        cancel(backends, e.id, &why).await?;
    }
    let fire = fire_of(bot, schedule, cron, at);
    let (_, created) = submit(backends, &fire, bot.owner_id).await?;
    Ok(created)
}
