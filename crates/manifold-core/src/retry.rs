//! The retry schedule: a small pure function. The store, not a library, decides when a delivery
//! runs next.

use std::time::Duration;

use serde::Deserialize;

/// Per-destination retry policy (`retry = { max_attempts = 10, initial_backoff = "30s", max_backoff = "8h" }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, including the first. After the last failed one the delivery is dead.
    pub max_attempts: u32,
    #[serde(with = "crate::config::duration")]
    pub initial_backoff: Duration,
    #[serde(with = "crate::config::duration")]
    pub max_backoff: Duration,
    /// Full jitter (random delay in `[0, backoff]`); off gives the exact doubling schedule.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            initial_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(8 * 3600),
            jitter: true,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after this delay.
    RetryIn(Duration),
    /// No attempts left.
    GiveUp,
}

impl RetryPolicy {
    /// The un-jittered backoff after attempt `attempt` (1-based) failed:
    /// `initial * 2^(attempt-1)`, capped at `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(40);
        let factor = 1u64 << exp;
        let ms = (self.initial_backoff.as_millis() as u64).saturating_mul(factor);
        Duration::from_millis(ms).min(self.max_backoff)
    }

    /// Decide what follows failed attempt number `attempt` (1-based). `retry_after` is the
    /// server's hint, honoured within `[initial_backoff, max_backoff]`. `unit` is a random number
    /// in `[0, 1)` used for full jitter.
    pub fn next(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Next {
        if attempt >= self.max_attempts {
            return Next::GiveUp;
        }
        if let Some(hint) = retry_after {
            return Next::RetryIn(hint.clamp(self.initial_backoff, self.max_backoff));
        }
        let base = self.backoff(attempt);
        if self.jitter {
            let unit = unit.clamp(0.0, 1.0);
            Next::RetryIn(Duration::from_millis(
                (base.as_millis() as f64 * unit) as u64,
            ))
        } else {
            Next::RetryIn(base)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            jitter: false,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn doubles_from_initial_to_cap() {
        let p = policy();
        let secs: Vec<u64> = (1..=12).map(|a| p.backoff(a).as_secs()).collect();
        assert_eq!(
            secs,
            vec![
                30, 60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 28800, 28800
            ]
        );
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let p = policy();
        assert_eq!(
            p.next(9, None, 0.5),
            Next::RetryIn(Duration::from_secs(7680))
        );
        assert_eq!(p.next(10, None, 0.5), Next::GiveUp);
        assert_eq!(p.next(11, None, 0.5), Next::GiveUp);
    }

    #[test]
    fn retry_after_is_clamped_to_bounds() {
        let p = policy();
        assert_eq!(
            p.next(1, Some(Duration::from_secs(1)), 0.0),
            Next::RetryIn(Duration::from_secs(30))
        );
        assert_eq!(
            p.next(1, Some(Duration::from_secs(120)), 0.0),
            Next::RetryIn(Duration::from_secs(120))
        );
        assert_eq!(
            p.next(1, Some(Duration::from_secs(86400)), 0.0),
            Next::RetryIn(Duration::from_secs(8 * 3600))
        );
    }

    #[test]
    fn full_jitter_stays_within_backoff() {
        let p = RetryPolicy::default();
        for unit in [0.0, 0.25, 0.5, 0.999] {
            match p.next(3, None, unit) {
                Next::RetryIn(d) => assert!(d <= Duration::from_secs(120), "{d:?}"),
                Next::GiveUp => panic!("gave up early"),
            }
        }
        assert_eq!(p.next(3, None, 0.5), Next::RetryIn(Duration::from_secs(60)));
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let p = RetryPolicy {
            max_attempts: u32::MAX,
            ..policy()
        };
        assert_eq!(p.backoff(u32::MAX - 1), Duration::from_secs(8 * 3600));
    }
}
