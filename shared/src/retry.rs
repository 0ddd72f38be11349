//! How long a failed or abandoned execution waits before its next attempt (design §4):
//! `min(base * 2^(attempt-1), max)`, with jitter so a burst of failures does not retry in step.

use std::time::Duration;

use rand::Rng;

use crate::Timestamp;
use crate::domain::{BotSpec, ExecStatus};

/// What a failed attempt leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `Queued` for another attempt, else the final status.
    pub status: ExecStatus,
    /// When the next attempt may start.
    pub run_at: Option<Timestamp>,
    /// The failure, with what happens next, for the execution's `error`.
    pub error: String,
}

/// Exponential backoff with "equal jitter": half the delay is fixed, half random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The bot's backoff where it sets one, this (the deployment's) otherwise.
    pub fn for_bot(&self, spec: &BotSpec) -> RetryPolicy {
        let secs = |s: Option<f64>, d: Duration| s.map_or(d, Duration::from_secs_f64);
        let base = secs(spec.retry.backoff_base_s, self.base);
        RetryPolicy {
            base,
            max: secs(spec.retry.backoff_max_s, self.max).max(base),
        }
    }

    /// The delay before the attempt that follows `attempt` (1-based).
    pub fn delay_after(&self, attempt: i32) -> Duration {
        let ceiling = self.ceiling_after(attempt);
        let half = ceiling / 2;
        let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::rng().random_range(0..=spread))
    }

    /// Another attempt after a backoff while attempts remain, else `failed_as` for good.
    pub fn after_failure(
        &self,
        attempt: i32,
        max_attempts: i32,
        now: Timestamp,
        failed_as: ExecStatus,
        message: &str,
    ) -> Decision {
        if attempt < max_attempts {
            let delay = self.delay_after(attempt);
            Decision {
                status: ExecStatus::Queued,
                run_at: Some(now.plus_millis(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))),
                error: format!(
                    "{message}; retry {} of {max_attempts} in {:.1} s",
                    attempt + 1,
                    delay.as_secs_f64()
                ),
            }
        } else {
            let error = if max_attempts > 1 {
                format!("{message} (after {attempt} attempts)")
            } else {
                message.to_owned()
            };
            Decision {
                status: failed_as,
                run_at: None,
                error,
            }
        }
    }

    /// The delay without jitter: the most `delay_after` returns.
    pub fn ceiling_after(&self, attempt: i32) -> Duration {
        let exp = u32::try_from(attempt.saturating_sub(1))
            .unwrap_or(0)
            .min(30);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_max_and_jitter_stays_within_half() {
        let p = RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        assert_eq!(p.ceiling_after(1), Duration::from_secs(1));
        assert_eq!(p.ceiling_after(3), Duration::from_secs(4));
        assert_eq!(p.ceiling_after(30), Duration::from_secs(10));
        for attempt in 1..8 {
            let d = p.delay_after(attempt);
            assert!(d >= p.ceiling_after(attempt) / 2 && d <= p.ceiling_after(attempt));
        }
    }

    #[test]
    fn a_failure_is_retried_while_attempts_remain_then_ends_as_given() {
        let p = RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        let now = Timestamp::from_millis(1_000_000);
        let retry = p.after_failure(1, 3, now, ExecStatus::TimedOut, "timed out");
        assert_eq!(retry.status, ExecStatus::Queued);
        assert!(
            retry.run_at.unwrap() > now && retry.error.contains("retry 2 of 3 in"),
            "{retry:?}"
        );
        let last = p.after_failure(3, 3, now, ExecStatus::TimedOut, "timed out");
        assert_eq!(
            (last.status, last.run_at, last.error.as_str()),
            (ExecStatus::TimedOut, None, "timed out (after 3 attempts)")
        );
        assert_eq!(
            p.after_failure(1, 1, now, ExecStatus::Failed, "boom").error,
            "boom"
        );
    }
}
