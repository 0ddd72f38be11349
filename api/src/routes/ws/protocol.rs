//! The WebSocket protocol's vocabulary: topics, client requests, and which events one
//! connection's subscriptions let through.

use std::collections::{HashMap, HashSet};
use std::fmt;

use codex32_shared::bus::Event;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::Caller;

/// A subscription topic, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Topic {
    Executions,
    Workers,
    Execution(Uuid),
    Bot(Uuid),
}

impl Topic {
    pub(super) fn parse(s: &str) -> Result<Self, String> {
        let unknown =
            || format!("unknown topic `{s}`: use executions, workers, execution:<id> or bot:<id>");
        match s {
            "executions" => Ok(Topic::Executions),
            "workers" => Ok(Topic::Workers),
            _ => {
                let (kind, id) = s.split_once(':').ok_or_else(unknown)?;
                let topic: fn(Uuid) -> Topic = match kind {
                    "execution" => Topic::Execution,
                    "bot" => Topic::Bot,
                    _ => return Err(unknown()),
                };
                Uuid::parse_str(id)
                    .map(topic)
                    .map_err(|_| format!("topic `{s}`: `{id}` is not a UUID"))
            }
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Executions => f.write_str("executions"),
            Topic::Workers => f.write_str("workers"),
            Topic::Execution(id) => write!(f, "execution:{id}"),
            Topic::Bot(id) => write!(f, "bot:{id}"),
        }
    }
}

/// What a client sends.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(super) enum Request {
    Subscribe {
        topics: Vec<String>,
        /// Replay stored lines of the `execution:<id>` topics with an id above this first.
        #[serde(default)]
        after: Option<i64>,
    },
    Unsubscribe {
        topics: Vec<String>,
    },
}

/// One connection's topics.
#[derive(Default)]
pub(super) struct Subscriptions {
    executions: bool,
    workers: bool,
    /// Per execution, the id of the last log line sent (0 before any): a live line at or
    /// below it was already replayed.
    pub(super) execution: HashMap<Uuid, i64>,
    bots: HashSet<Uuid>,
}

impl Subscriptions {
    pub(super) fn len(&self) -> usize {
        usize::from(self.executions)
            + usize::from(self.workers)
            + self.execution.len()
            + self.bots.len()
    }

    pub(super) fn add(&mut self, topic: Topic) {
        match topic {
            Topic::Executions => self.executions = true,
            Topic::Workers => self.workers = true,
            Topic::Execution(id) => {
                self.execution.entry(id).or_insert(0);
            }
            Topic::Bot(id) => {
                self.bots.insert(id);
            }
        }
    }

    pub(super) fn remove(&mut self, topic: Topic) {
        match topic {
            Topic::Executions => self.executions = false,
            Topic::Workers => self.workers = false,
            Topic::Execution(id) => {
                self.execution.remove(&id);
            }
            Topic::Bot(id) => {
                self.bots.remove(&id);
            }
        }
    }

    /// Whether `event` goes to this client (visibility of `execution:` and `bot:` topics was
    /// checked when subscribing); moves the log position on.
    pub(super) fn wants(&mut self, caller: &Caller, event: &Event) -> bool {
        match event {
            Event::ExecutionUpdated {
                id,
                bot_id,
                owner_id,
                ..
            } => {
                (self.executions && caller.sees(*owner_id))
                    || self.execution.contains_key(id)
                    || self.bots.contains(bot_id)
            }
            Event::ExecutionLog {
                id, execution_id, ..
            } => match (self.execution.get_mut(execution_id), id) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(last), Some(id)) if *id > *last => {
                    *last = *id;
                    true
                }
                (Some(_), Some(_)) => false,
            },
            Event::WorkerHeartbeat { .. } => self.workers,
            Event::ServiceUpdated {
                bot_id, owner_id, ..
            } => (self.executions && caller.sees(*owner_id)) || self.bots.contains(bot_id),
            Event::CancelRequested { .. }
            | Event::DrainRequested { .. }
            | Event::RestartRequested { .. }
            | Event::ApiKeyRevoked { .. }
            | Event::BotChanged { .. }
            | Event::SecretsChanged { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use codex32_shared::domain::{ExecStatus, LogStream, Role};

    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            user_id: Uuid::from_u128(1),
            role,
            api_key_id: None,
        }
    }

    fn updated(id: Uuid, bot_id: Uuid, owner_id: Uuid) -> Event {
        Event::ExecutionUpdated {
            id,
            bot_id,
            owner_id,
            status: ExecStatus::Running,
            attempt: 1,
            worker_id: None,
            exit_code: None,
            error: None,
        }
    }

    fn log(execution_id: Uuid, id: Option<i64>) -> Event {
        Event::ExecutionLog {
            id,
            execution_id,
            attempt: 1,
            stream: LogStream::Stdout,
            line: "x".into(),
        }
    }

    #[test]
    fn topics_parse_and_print_back_and_bad_ones_say_why() {
        let id = Uuid::from_u128(7);
        for t in [
            "executions",
            "workers",
            &format!("execution:{id}"),
            &format!("bot:{id}"),
        ] {
            assert_eq!(Topic::parse(t).unwrap().to_string(), t);
        }
        assert!(Topic::parse("nope").unwrap_err().contains("unknown topic"));
        assert!(Topic::parse("job:1").unwrap_err().contains("unknown topic"));
        assert!(
            Topic::parse("execution:1")
                .unwrap_err()
                .contains("not a UUID")
        );
    }

    #[test]
    fn events_go_where_subscriptions_and_visibility_allow() {
        let (mine, theirs) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let (e, bot) = (Uuid::from_u128(10), Uuid::from_u128(20));
        let mut subs = Subscriptions::default();
        let user = caller(Role::User);
        assert!(!subs.wants(&user, &updated(e, bot, mine)));
        subs.add(Topic::Executions);
        assert!(subs.wants(&user, &updated(e, bot, mine)));
        assert!(!subs.wants(&user, &updated(e, bot, theirs)));
        assert!(subs.wants(&caller(Role::Viewer), &updated(e, bot, theirs)));
        subs.remove(Topic::Executions);
        subs.add(Topic::Bot(bot));
        assert!(
            subs.wants(&user, &updated(e, bot, theirs)),
            "checked at subscribe"
        );
        assert!(!subs.wants(&user, &log(e, Some(1))));
        assert!(!subs.wants(&user, &Event::CancelRequested { execution_id: e }));
        subs.add(Topic::Execution(e));
        assert!(!subs.wants(&user, &Event::CancelRequested { execution_id: e }));
        assert!(!subs.wants(
            &user,
            &Event::WorkerHeartbeat {
                worker_id: "w".into(),
                running: 0,
                slots: 1,
                state: "alive".into(),
            }
        ));
    }

    #[test]
    fn service_events_go_to_their_bot_and_to_those_who_see_its_owner() {
        let (mine, theirs, bot) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(20));
        let restarted = |owner_id| Event::ServiceUpdated {
            bot_id: bot,
            owner_id,
            execution_id: None,
            worker_id: Some("w0".into()),
            state: codex32_shared::domain::ServiceState::Backoff,
            restarts: 3,
            reason: Some("exited with code 1".into()),
        };
        let user = caller(Role::User);
        let mut subs = Subscriptions::default();
        assert!(!subs.wants(&user, &restarted(mine)));
        subs.add(Topic::Executions);
        assert!(subs.wants(&user, &restarted(mine)));
        assert!(!subs.wants(&user, &restarted(theirs)));
        subs.remove(Topic::Executions);
        subs.add(Topic::Bot(bot));
        assert!(
            subs.wants(&user, &restarted(theirs)),
            "checked at subscribe"
        );
        let request = Event::RestartRequested {
            execution_id: bot,
            reason: "x".into(),
        };
        assert!(
            !subs.wants(&user, &request),
            "internal events stay internal"
        );
    }

    #[test]
    fn a_log_line_at_or_below_the_last_one_sent_is_dropped() {
        let e = Uuid::from_u128(10);
        let user = caller(Role::User);
        let mut subs = Subscriptions::default();
        subs.add(Topic::Execution(e));
        subs.execution.insert(e, 5);
        assert!(!subs.wants(&user, &log(e, Some(5))));
        assert!(subs.wants(&user, &log(e, Some(6))));
        assert!(!subs.wants(&user, &log(e, Some(6))));
        assert!(subs.wants(&user, &log(e, None)), "lines without an id pass");
    }
}
