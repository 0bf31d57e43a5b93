//! What the supervisor runs and how: the run's identity, the command and its environment, and
//! the intervals of the protocol (timeout, grace, heartbeats, final-event deadline).

use super::{delivery, output};
use crate::process::group::GroupKill;
use events::{AgentId, CompanyId, IssueId, RunId};
use std::ffi::OsString;
use std::time::Duration;

/// What to run and how.
#[derive(Clone, Debug)]
pub struct SupervisorSettings {
    pub company: CompanyId,
    pub agent: AgentId,
    pub run: RunId,
    pub issue: Option<IssueId>,
    /// Host id written into `run.started` (the watchdog of this host looks for it).
    pub host: String,
    /// Program and arguments.
    pub command: Vec<OsString>,
    /// Extra environment for the agent (e.g. `NATS_URL`, `RUNLEDGER_SUBJECT_PREFIX`).
    pub env: Vec<(OsString, OsString)>,
    /// Stop the agent after this long (outcome `timed_out`); `None`: no limit.
    pub timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL on timeout, cancel or interrupt.
    pub grace: Duration,
    /// Between heartbeats; zero: none.
    pub heartbeat_interval: Duration,
    /// How long `run.finished` is retried after the agent ended.
    pub final_event_deadline: Duration,
    /// Longest single publish attempt of `run.started`/`run.finished` before sending again.
    pub publish_attempt_timeout: Duration,
    /// Size of each output excerpt in `run.finished`.
    pub excerpt_bytes: usize,
    /// Copy the agent's stdout/stderr to the supervisor's (off in tests that keep output quiet).
    pub echo_output: bool,
    /// How leftovers of the agent's group are terminated after it exits.
    pub group_kill: GroupKill,
}

impl SupervisorSettings {
    /// Defaults: a fresh run id, no timeout, 20 s grace, heartbeats every 10 s, 60 s final-event
    /// deadline, 4 KiB excerpts, output echoed.
    pub fn new(company: CompanyId, agent: AgentId, host: String, command: Vec<OsString>) -> Self {
        Self {
            company,
            agent,
            run: RunId::new_random(),
            issue: None,
            host,
            command,
            env: Vec::new(),
            timeout: None,
            grace: Duration::from_secs(20),
            heartbeat_interval: Duration::from_secs(10),
            final_event_deadline: Duration::from_secs(60),
            publish_attempt_timeout: delivery::DEFAULT_ATTEMPT_TIMEOUT,
            excerpt_bytes: output::DEFAULT_EXCERPT_BYTES,
            echo_output: true,
            group_kill: GroupKill::default(),
        }
    }
}
