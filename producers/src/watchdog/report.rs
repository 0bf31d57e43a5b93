//! What a sweep found: a verdict per run, the event published for each finding and whether it
//! was acknowledged; and the reference's text for a lost process.

use crate::process::group::GroupTermination;
use crate::PublishOutcome;
use events::{CompanyId, EventId, RunId};
use std::time::Duration;

/// What the watchdog concluded about one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Supervisor and agent alive.
    Supervised,
    /// Supervisor alive, agent gone: the supervisor is finishing the run.
    Finishing,
    /// Supervisor gone, agent alive, already reported as detached.
    StillDetached,
    /// Supervisor gone, agent alive: `run.process_detached` published now.
    Detached { pid: i32 },
    /// Supervisor and agent gone: `run.process_lost` published now.
    Lost {
        message: String,
        descendant_group_terminated: bool,
        group: GroupTermination,
    },
    /// Cancel requested with the supervisor gone: group terminated, `run.finished` published.
    Cancelled {
        reason: String,
        group: GroupTermination,
    },
    /// This watchdog already published the run's end; the read model has not caught up.
    AwaitingProjection,
    /// The stream already holds the run's end (`run.finished` or `run.process_lost`).
    AlreadyEnded,
    /// No pid, group or supervisor recorded: nothing to probe.
    Unprobeable,
}

impl Verdict {
    /// Whether this verdict published (or tried to publish) an event.
    pub fn is_finding(&self) -> bool {
        matches!(
            self,
            Self::Detached { .. } | Self::Lost { .. } | Self::Cancelled { .. }
        )
    }
}

/// One run as one sweep saw it.
#[derive(Clone, Debug)]
pub struct RunCheck {
    pub run_id: RunId,
    pub company_id: CompanyId,
    /// The agent process: `alive`, `exited`, `zombie`, `pid_reused`, or `unknown` (no pid).
    pub agent: &'static str,
    pub supervisor_alive: bool,
    pub verdict: Verdict,
    /// The event published for a finding.
    pub event_id: Option<EventId>,
    /// Its publish result (`Err` with the reason if not acknowledged; retried next sweep).
    pub published: Option<Result<PublishOutcome, String>>,
}

/// What one sweep found and published.
#[derive(Clone, Debug, Default)]
pub struct SweepReport {
    pub runs: Vec<RunCheck>,
    /// Events published again because an earlier sweep could not get them acknowledged.
    pub republished: usize,
    /// How long the sweep took (group terminations included).
    pub elapsed: Duration,
}

impl SweepReport {
    /// The runs with a finding (an event published or attempted).
    pub fn findings(&self) -> impl Iterator<Item = &RunCheck> {
        self.runs.iter().filter(|r| r.verdict.is_finding())
    }

    /// The check of one run, if the sweep saw it.
    pub fn run(&self, run: RunId) -> Option<&RunCheck> {
        self.runs.iter().find(|r| r.run_id == run)
    }
}

/// The reference's text for a lost process.
pub fn lost_message(pid: Option<i32>, pgid: Option<i32>, group_terminated: bool) -> String {
    match (pid, pgid, group_terminated) {
        (_, Some(pgid), true) => format!(
            "Process lost -- parent pid {} exited, but descendant process group {pgid} was still alive and was terminated",
            pid.map_or("unknown".to_owned(), |p| p.to_string())
        ),
        (Some(pid), _, _) => format!("Process lost -- child pid {pid} is no longer running"),
        (None, Some(pgid), _) => {
            format!("Process lost -- process group {pgid} is no longer running")
        }
        (None, None, _) => "Process lost -- server may have restarted".to_owned(),
    }
}

/// Logs the findings of a sweep (a detached or lost run is a warning).
pub(super) fn log(report: &SweepReport) {
    for check in report.findings() {
        match &check.verdict {
            Verdict::Detached { pid } => {
                tracing::warn!(run = %check.run_id, pid, "supervisor gone, agent alive: detached")
            }
            Verdict::Lost { message, .. } => {
                tracing::warn!(run = %check.run_id, "{message}")
            }
            Verdict::Cancelled { reason, .. } => {
                tracing::info!(run = %check.run_id, %reason, "cancelled a run without supervisor")
            }
            _ => {}
        }
    }
    tracing::debug!(runs = report.runs.len(), elapsed = ?report.elapsed, "watchdog sweep");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_messages_follow_the_reference() {
        assert_eq!(
            lost_message(Some(4242), Some(4242), true),
            "Process lost -- parent pid 4242 exited, but descendant process group 4242 was still alive and was terminated"
        );
        assert_eq!(
            lost_message(None, Some(7), true),
            "Process lost -- parent pid unknown exited, but descendant process group 7 was still alive and was terminated"
        );
        assert_eq!(
            lost_message(Some(4242), Some(4242), false),
            "Process lost -- child pid 4242 is no longer running"
        );
        assert_eq!(
            lost_message(None, Some(7), false),
            "Process lost -- process group 7 is no longer running"
        );
        assert_eq!(
            lost_message(None, None, false),
            "Process lost -- server may have restarted"
        );
    }
}
