//! Stopping the agent on timeout, cancel or interrupt: the first of those causes, then SIGTERM
//! to its whole process group, a grace period, then SIGKILL; and turning how it ended into an
//! exit code (its own, or 128 + signal like a shell).

use super::cancellation::CancelWatch;
use crate::process::group::signal_group;
use nix::sys::signal::Signal;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::Child;
use tokio::sync::watch;

/// Why the supervisor stopped the agent before it exited by itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// `--timeout-sec` passed.
    Timeout(Duration),
    /// A `run.cancel_requested` for this run, with its reason.
    Cancel(String),
    /// The supervisor itself was asked to stop (SIGINT/SIGTERM).
    Interrupted,
}

/// How the agent process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Self {
        Self {
            code: status.code(),
            signal: status.signal(),
        }
    }
}

impl Exit {
    /// The shell convention: the exit code, or 128 + the signal number.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 1,
        }
    }

    /// The signal's name (`SIGKILL`), or `SIG<n>` for one nix does not know.
    pub fn signal_name(&self) -> Option<String> {
        self.signal.map(|n| match Signal::try_from(n) {
            Ok(s) => s.as_str().to_owned(),
            Err(_) => format!("SIG{n}"),
        })
    }
}

/// The first cause to stop the agent: `timeout` passing, a cancel of the run, or `stop` (the
/// binary's SIGINT/SIGTERM) turning true, checked in that order. Never resolves if none comes.
pub async fn stop_cause(
    timeout: Option<Duration>,
    cancel: &mut CancelWatch,
    stop: &mut watch::Receiver<bool>,
) -> StopCause {
    tokio::select! {
        biased;
        _ = after(timeout) => StopCause::Timeout(timeout.unwrap_or_default()),
        reason = cancel.requested() => StopCause::Cancel(reason),
        _ = crate::stop::requested(stop) => StopCause::Interrupted,
    }
}

async fn after(timeout: Option<Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

/// SIGTERM to the group, up to `grace` for the agent to exit, then SIGKILL to the group (and to
/// the agent itself, in case it left the group). Returns how the agent ended.
pub async fn terminate(child: &mut Child, pgid: i32, grace: Duration) -> std::io::Result<Exit> {
    signal_group(pgid, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.map(Exit::from),
        Err(_) => {
            signal_group(pgid, Signal::SIGKILL);
            let _ = child.start_kill();
            child.wait().await.map(Exit::from)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        let code = Exit {
            code: Some(3),
            signal: None,
        };
        assert_eq!(code.shell_code(), 3);
        assert_eq!(code.signal_name(), None);
        let killed = Exit {
            code: None,
            signal: Some(9),
        };
        assert_eq!(killed.shell_code(), 137);
        assert_eq!(killed.signal_name().as_deref(), Some("SIGKILL"));
        let odd = Exit {
            code: None,
            signal: Some(200),
        };
        assert_eq!(odd.signal_name().as_deref(), Some("SIG200"));
    }
}
