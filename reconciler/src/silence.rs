//! Detached runs cannot hang forever (reference §10, "detached runs hung forever"): a run whose
//! supervisor is gone but whose agent process lives on (`process_detached`) and that has shown no
//! activity for the silence timeout is asked to stop with a `run.cancel_requested`. Its supervisor
//! or the host watchdog ends the process, and the normal cancel or loss path follows.

use chrono::{DateTime, TimeDelta, Utc};

use crate::storm::Human;

/// Default silence timeout of a detached run.
pub const DEFAULT_SILENCE_TIMEOUT: TimeDelta = TimeDelta::minutes(15);

/// A running run flagged `process_detached`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetachedRun {
    /// When the watchdog flagged it.
    pub detached_at: Option<DateTime<Utc>>,
    /// The last event naming the run (any activity, heartbeats included).
    pub last_activity_at: Option<DateTime<Utc>>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
}

impl DetachedRun {
    /// The last sign of life: the newest of the three times.
    pub fn silent_since(&self) -> Option<DateTime<Utc>> {
        [self.detached_at, self.last_activity_at, self.started_at]
            .into_iter()
            .flatten()
            .max()
    }
}

/// The cancel reason if the run has been silent for `timeout` at `now`, else `None`.
/// The reason avoids "pause" and "budget", so the run's stop reason is `cancelled`.
pub fn check(run: &DetachedRun, now: DateTime<Utc>, timeout: TimeDelta) -> Option<String> {
    let since = run.silent_since()?;
    if now - since < timeout {
        return None;
    }
    Some(format!(
        "Detached run silent for {} (no activity since {}); cancelled by the reconciler's silence timeout",
        Human(timeout),
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    ))
}
