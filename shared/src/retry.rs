//! How long a failed or abandoned execution waits before its next attempt (design §4):
//! `min(base * 2^(attempt-1), max)`, with jitter so a burst of failures does not retry in step.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with "equal jitter": half the delay is fixed, half random.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay before the attempt that follows `attempt` (1-based).
    pub fn delay_after(&self, attempt: i32) -> Duration {
        let ceiling = self.ceiling_after(attempt);
        let half = ceiling / 2;
        let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::rng().random_range(0..=spread))
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
}
