//! Storm control (reference §10, "retry storms", "continuation storms"): automatic wakeups of one
//! issue back off exponentially and stop at a ceiling per rolling window.
//!
//! Every automatic wakeup the reconciler grants for an issue (process-loss retry, stranded-issue
//! recovery, liveness continuation) is remembered with its event time. The next one is granted
//! only if fewer than `ceiling` were granted in the last `window`, and only `base_backoff ×
//! 2^(n-1)` (capped at `max_backoff`) after the previous one, where `n` is how many the window
//! holds. Time is the causing event's time, never the wall clock, so a replay refuses the same
//! wakeups. A refusal is a value with a reason and the time it would be allowed again.

use chrono::{DateTime, TimeDelta, Utc};
use std::fmt;

/// How automatic wakeups of one issue are rationed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StormPolicy {
    /// Gap required after the first automatic wakeup of a window; doubles with each further one.
    pub base_backoff: TimeDelta,
    /// The gap never grows beyond this.
    pub max_backoff: TimeDelta,
    /// Most automatic wakeups per issue within `window` (0: none at all).
    pub ceiling: u32,
    /// The rolling window of the ceiling.
    pub window: TimeDelta,
}

impl Default for StormPolicy {
    /// 30 s base backoff, at most 30 min, 6 automatic wakeups per issue per rolling hour.
    fn default() -> Self {
        Self {
            base_backoff: TimeDelta::seconds(30),
            max_backoff: TimeDelta::minutes(30),
            ceiling: 6,
            window: TimeDelta::hours(1),
        }
    }
}

/// Whether one more automatic wakeup of an issue is allowed now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Wake the agent.
    Grant,
    /// Do not; say why, and when it would be allowed.
    Refuse(Refusal),
}

/// A refused automatic wakeup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Human-readable cause, e.g. "6 automatic wakeups of this issue in the last 1h (ceiling 6)".
    pub reason: String,
    /// When a wakeup would be granted (`None`: never by waiting, e.g. a ceiling of 0).
    pub retry_after: Option<DateTime<Utc>>,
}

/// A duration as `30s`, `2m 30s`, `1h`.
pub struct Human(pub TimeDelta);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.to_std() {
            Ok(d) => write!(
                f,
                "{}",
                humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
            ),
            Err(_) => write!(f, "{}s", self.0.num_seconds()),
        }
    }
}

/// The gap required after the previous wakeup when `in_window` wakeups are already in the window.
pub fn backoff(policy: &StormPolicy, in_window: u32) -> TimeDelta {
    if in_window == 0 {
        return TimeDelta::zero();
    }
    let doublings = (in_window - 1).min(30);
    let gap = policy
        .base_backoff
        .checked_mul(1 << doublings)
        .unwrap_or(policy.max_backoff);
    gap.min(policy.max_backoff)
}

/// Decides whether an automatic wakeup of an issue is allowed at `now`, given the times of the
/// automatic wakeups already granted for it (any order; older ones are ignored).
pub fn check(policy: &StormPolicy, granted: &[DateTime<Utc>], now: DateTime<Utc>) -> Verdict {
    if policy.ceiling == 0 {
        return Verdict::Refuse(Refusal {
            reason: "automatic wakeups are disabled (ceiling 0)".into(),
            retry_after: None,
        });
    }
    let since = now - policy.window;
    let in_window: Vec<DateTime<Utc>> = granted.iter().copied().filter(|t| *t > since).collect();
    let n = u32::try_from(in_window.len()).unwrap_or(u32::MAX);
    let window = Human(policy.window);
    if n >= policy.ceiling {
        let oldest = in_window.iter().min().copied().unwrap_or(now);
        return Verdict::Refuse(Refusal {
            reason: format!(
                "{n} automatic wakeups of this issue in the last {window} (ceiling {})",
                policy.ceiling
            ),
            retry_after: Some(oldest + policy.window),
        });
    }
    let Some(last) = in_window.iter().max().copied() else {
        return Verdict::Grant;
    };
    let gap = backoff(policy, n);
    if now < last + gap {
        return Verdict::Refuse(Refusal {
            reason: format!(
                "automatic wakeups of this issue back off: wakeup {} within {window} must wait {} after the previous one",
                n + 1,
                Human(gap)
            ),
            retry_after: Some(last + gap),
        });
    }
    Verdict::Grant
}
