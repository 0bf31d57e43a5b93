//! Storm control (reference §10, "retry storms", "continuation storms"): automatic wakeups of one
//! issue beyond the original's bounded flows back off exponentially and stop at a ceiling per
//! rolling window.
//!
//! Every automatic wakeup the reconciler grants for an issue is remembered with its event time
//! and its kind. Each kind has a free allowance per issue and window that the original's bounded
//! flows never exceed ([`Kind::allowance`]: the process-loss retry 1, the stranded-issue requeue
//! 1, liveness continuations 2, the missing-comment follow-up 1): within it a wakeup is granted
//! at once, never slowed. What goes beyond (repeated chains, loops between rules, floods of
//! causes) is the *excess*: the `n`-th excess wakeup of a window waits `base_backoff × 2^(n-1)`
//! (capped at `max_backoff`) after the previous wakeup (granted or deferred), so it is
//! **deferred** to that event time, and once `ceiling` excess wakeups are granted or deferred in
//! the window, the next is **refused**. Time is the causing event's time, never the wall clock,
//! so a replay decides the same.

use chrono::{DateTime, TimeDelta, Utc};
use std::fmt;

/// How automatic wakeups of one issue are rationed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StormPolicy {
    /// Wait of the first excess wakeup of a window after the previous wakeup; doubles with each
    /// further one.
    pub base_backoff: TimeDelta,
    /// The gap never grows beyond this.
    pub max_backoff: TimeDelta,
    /// Most excess wakeups (granted or deferred) per issue within `window`; more are refused
    /// (0: no automatic wakeups at all).
    pub ceiling: u32,
    /// The rolling window of the ceiling.
    pub window: TimeDelta,
}

impl Default for StormPolicy {
    /// 30 s base backoff, at most 30 min, 6 excess wakeups per issue per rolling hour.
    fn default() -> Self {
        Self {
            base_backoff: TimeDelta::seconds(30),
            max_backoff: TimeDelta::minutes(30),
            ceiling: 6,
            window: TimeDelta::hours(1),
        }
    }
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

/// The kind of an automatic wakeup, by its wakeup reason: what its free allowance is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The single retry of a lost run.
    ProcessLossRetry,
    /// The stranded-issue requeue (dispatch or continuation recovery).
    StrandedRequeue,
    /// A bounded liveness continuation.
    LivenessContinuation,
    /// The missing-comment follow-up.
    MissingComment,
    /// Anything else: no free allowance.
    Other,
}

impl Kind {
    /// The kind of a wakeup with `reason`.
    pub fn of(reason: &str) -> Kind {
        match reason {
            crate::retry::WAKE_REASON => Kind::ProcessLossRetry,
            crate::escalation::DISPATCH_WAKE_REASON
            | crate::escalation::ISSUE_CONTINUATION_NEEDED => Kind::StrandedRequeue,
            crate::continuation::WAKE_REASON => Kind::LivenessContinuation,
            crate::comment::WAKE_REASON => Kind::MissingComment,
            _ => Kind::Other,
        }
    }

    /// Wakeups of this kind per issue and window that never count as excess: what the
    /// original's bounded flows send at most (one retry, one requeue, two continuations per
    /// chain, one missing-comment follow-up).
    pub fn allowance(self) -> usize {
        match self {
            Kind::ProcessLossRetry | Kind::StrandedRequeue | Kind::MissingComment => 1,
            Kind::LivenessContinuation => crate::continuation::MAX_CONTINUATION_ATTEMPTS as usize,
            Kind::Other => 0,
        }
    }
}

/// Whether one more automatic wakeup of an issue goes out now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Wake the agent now.
    Grant,
    /// Wake it at `due` (event time), unless the issue has moved on by then.
    Defer {
        /// When it is due.
        due: DateTime<Utc>,
        /// Why it waits.
        reason: String,
    },
    /// Do not; say why, and when it would be allowed.
    Refuse(Refusal),
}

/// How many of `granted` (wakeup reasons in the window) go beyond their kinds' allowances.
pub fn excess<'a>(granted: impl IntoIterator<Item = &'a str>) -> usize {
    let mut per_kind = std::collections::BTreeMap::<Kind, usize>::new();
    for reason in granted {
        *per_kind.entry(Kind::of(reason)).or_default() += 1;
    }
    per_kind
        .iter()
        .map(|(kind, n)| n.saturating_sub(kind.allowance()))
        .sum()
}

/// Decides whether an automatic wakeup with `reason` of an issue goes out at `now`, given the
/// wakeups already granted for it (time and reason, any order; older ones are ignored) and the
/// due times of its open deferrals (each is an excess wakeup to come).
pub fn check(
    policy: &StormPolicy,
    granted: &[(DateTime<Utc>, String)],
    deferred: &[DateTime<Utc>],
    reason: &str,
    now: DateTime<Utc>,
) -> Verdict {
    if policy.ceiling == 0 {
        return Verdict::Refuse(Refusal {
            reason: "automatic wakeups are disabled (ceiling 0)".into(),
            retry_after: None,
        });
    }
    let since = now - policy.window;
    let in_window: Vec<&(DateTime<Utc>, String)> =
        granted.iter().filter(|(t, _)| *t > since).collect();
    let kind = Kind::of(reason);
    let same_kind = in_window
        .iter()
        .filter(|(_, r)| Kind::of(r) == kind)
        .count();
    if same_kind < kind.allowance() {
        return Verdict::Grant;
    }
    let n = excess(in_window.iter().map(|(_, r)| r.as_str())) + deferred.len();
    let window = Human(policy.window);
    let ceiling = usize::try_from(policy.ceiling).unwrap_or(usize::MAX);
    if n >= ceiling {
        let oldest = in_window.iter().map(|(t, _)| *t).min();
        return Verdict::Refuse(Refusal {
            reason: format!(
                "{n} automatic wakeups of this issue beyond the bounded flows in the last {window} (ceiling {})",
                policy.ceiling
            ),
            retry_after: oldest.map(|t| t + policy.window),
        });
    }
    let last = in_window
        .iter()
        .map(|(t, _)| *t)
        .chain(deferred.iter().copied())
        .max();
    let Some(last) = last else {
        return Verdict::Grant;
    };
    let gap = backoff(policy, u32::try_from(n + 1).unwrap_or(u32::MAX));
    let due = last + gap;
    if due <= now {
        return Verdict::Grant;
    }
    Verdict::Defer {
        due,
        reason: format!(
            "automatic wakeups of this issue back off: wakeup {} beyond the bounded flows within {window} waits {} after the previous one",
            n + 1,
            Human(gap)
        ),
    }
}
