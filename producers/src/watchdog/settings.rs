//! How a watchdog behaves: the host whose runs it watches, where their events are, and how
//! often and how patiently it looks.

use crate::process::group::GroupKill;
use events::Subjects;
use std::time::Duration;

/// How a watchdog behaves.
#[derive(Clone, Debug)]
pub struct WatchdogSettings {
    /// The host id whose runs are watched (`run.started.host`).
    pub host: String,
    /// The stream holding the runs' events (to see whether a run already ended).
    pub stream: String,
    pub subjects: Subjects,
    /// Between sweeps in [`Watchdog::run`](super::Watchdog::run).
    pub interval: Duration,
    /// How orphaned groups are terminated (SIGTERM, poll 100 ms, SIGKILL at 2 s).
    pub group_kill: GroupKill,
    /// Longest wait for one publish or stream lookup; an unacknowledged event is published
    /// again (same id) on the next sweep.
    pub publish_timeout: Duration,
}

impl WatchdogSettings {
    /// Defaults: a sweep every second, the reference's group kill, 5 s publish timeout.
    pub fn new(host: impl Into<String>, stream: impl Into<String>, subjects: Subjects) -> Self {
        Self {
            host: host.into(),
            stream: stream.into(),
            subjects,
            interval: Duration::from_secs(1),
            group_kill: GroupKill::default(),
            publish_timeout: Duration::from_secs(5),
        }
    }
}
