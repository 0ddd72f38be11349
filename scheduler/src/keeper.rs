//! The service keeper: a service wanted running that has no live execution — its start was
//! cut between its two writes, or its worker died between the service's end and its report —
//! gets a new one. Run by the cron leader only, so two schedulers never revive the same one.

use std::time::Duration;

use codex32_shared::Backends;
use codex32_shared::Timestamp;
use codex32_shared::services::revive;

/// How long a service row must be unchanged before the keeper acts (a start in progress
/// writes the row, then creates the execution).
const QUIET: Duration = Duration::from_secs(10);

/// Starts again the services that need it; returns how many.
pub async fn keep_services(backends: &Backends) -> anyhow::Result<usize> {
    let quiet_since = Timestamp::now().plus_millis(-(QUIET.as_millis() as i64));
    let mut revived = 0;
    for bot_id in backends.store.services_to_start(quiet_since).await? {
        let Some(bot) = backends.store.get_bot(bot_id).await? else {
            continue;
        };
        let exec = revive(backends, &bot).await?;
        tracing::warn!(bot_id = %bot.id, execution_id = %exec.id, "Service had no live execution; started it again.");
        revived += 1;
    }
    Ok(revived)
}
