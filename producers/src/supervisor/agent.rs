//! The agent process of one run: started in a process group of its own with the environment of
//! the protocol (`docs/supervisor.md`), its output pumped while it runs, waited for until it
//! exits or a stop cause ends it, and what it leaves behind (members of its group, output still
//! open) cleaned up after.

use super::output::{Captured, Pumps};
use super::result::RESULT_FILE_ENV;
use super::termination::{self, Exit, StopCause};
use super::SupervisorSettings;
use crate::process::group::{terminate_group, GroupKill, GroupTermination};
use crate::process::stat;
use events::RunId;
use std::ffi::OsStr;
use std::future::Future;
use std::io::{self, IsTerminal};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A started agent.
pub(super) struct Agent {
    run: RunId,
    child: Child,
    /// Its pid, which is also its process group's id.
    pub(super) pid: Option<i32>,
    /// Its start time in clock ticks since boot: the pid-reuse guard.
    pub(super) started_at: Option<u64>,
    output: Pumps,
}

impl Agent {
    /// Starts `program` with the settings' arguments and environment; the agent is told to write
    /// its result to `result_file`.
    pub(super) fn spawn(
        settings: &SupervisorSettings,
        program: &OsStr,
        result_file: &Path,
    ) -> io::Result<Self> {
        let mut child = command(settings, program, result_file).spawn()?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok());
        // The child is at least a zombie until waited for, so its stat is readable here.
        let started_at = pid.and_then(stat::start_time);
        tracing::debug!(run = %settings.run, pid, "agent started");
        let output = Pumps::start(&mut child, settings.echo_output, settings.excerpt_bytes);
        Ok(Self {
            run: settings.run,
            child,
            pid,
            started_at,
            output,
        })
    }

    /// Waits until the agent exits by itself, or until `stop` gives a cause to stop it first:
    /// then its group gets SIGTERM, and SIGKILL after `grace`. The cause, if any, and the exit.
    pub(super) async fn end(
        &mut self,
        stop: impl Future<Output = StopCause>,
        grace: Duration,
    ) -> io::Result<(Option<StopCause>, Exit)> {
        let cause = tokio::select! {
            biased;
            status = self.child.wait() => return Ok((None, Exit::from(status?))),
            cause = stop => cause,
        };
        tracing::info!(run = %self.run, ?cause, "stopping the agent's process group");
        let pgid = self.pgid();
        let exit = termination::terminate(&mut self.child, pgid, grace).await?;
        Ok((Some(cause), exit))
    }

    /// Terminates what the agent left in its group (members started after it), once it ended.
    pub(super) async fn reap_leftovers(&self, policy: GroupKill) -> GroupTermination {
        let leftovers = terminate_group(self.pgid(), self.started_at, policy).await;
        if leftovers.signalled() {
            tracing::info!(run = %self.run, ?leftovers, "terminated what the agent left in its process group");
        }
        leftovers
    }

    /// What its stdout and stderr left behind, once closed (each waited for a bounded time).
    pub(super) async fn output(self) -> (Captured, Captured) {
        self.output.drain().await
    }

    /// Its process group; 0 (never signalled) if it has no pid.
    fn pgid(&self) -> i32 {
        self.pid.unwrap_or(0)
    }
}

/// The agent's command: its own process group, the protocol's environment, output piped.
fn command(settings: &SupervisorSettings, program: &OsStr, result_file: &Path) -> Command {
    let s = settings;
    let mut command = Command::new(program);
    command
        .args(&s.command[1..])
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        .env("RUNLEDGER_RUN_ID", s.run.to_string())
        .env("RUNLEDGER_COMPANY_ID", s.company.to_string())
        .env("RUNLEDGER_AGENT_ID", s.agent.to_string())
        .env("RUNLEDGER_HOST_ID", &s.host)
        .env(RESULT_FILE_ENV, result_file)
        .process_group(0)
        // The agent's own process group is a background group of a terminal: reading it
        // would stop the agent (SIGTTIN), so a terminal is replaced by /dev/null.
        .stdin(if std::io::stdin().is_terminal() {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    match s.issue {
        Some(issue) => command.env("RUNLEDGER_ISSUE_ID", issue.to_string()),
        None => command.env_remove("RUNLEDGER_ISSUE_ID"),
    };
    command
}
