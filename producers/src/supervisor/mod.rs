//! The run supervisor behind `runledger run`: starts the agent command in its own process group,
//! publishes `run.started` (with the pid-reuse guard), heartbeats while it lives, stops it on
//! timeout, cancel or interrupt (SIGTERM to the group, grace, SIGKILL), streams its output
//! through unchanged, and publishes `run.finished` — retried with the same event id until
//! acknowledged or a deadline, so the final event is never silently lost.
//!
//! The protocol an agent sees (environment, result file/line, exit codes) is documented in
//! `docs/supervisor.md`.

pub mod cancellation;
pub mod delivery;
pub mod output;
pub mod result;
pub mod termination;

use crate::process::group::{terminate_group, GroupKill, GroupTermination};
use crate::process::stat;
use crate::{Publisher, PublisherSettings};
use async_nats::jetstream::Context;
use cancellation::CancelWatch;
use chrono::Utc;
use delivery::{publish_until, Delivery, Undelivered};
use events::run::{RunActivity, RunFinished, RunStarted};
use events::{
    ActivityKind, AgentId, CompanyId, Event, EventData, EventId, IssueId, RunId, RunOutcome,
    Subjects,
};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use termination::{Exit, StopCause};
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;

/// Exit code of the supervisor when `run.finished` could not be published before the deadline
/// (`EX_TEMPFAIL`): the ledger does not know how the run ended.
pub const UNDELIVERED_EXIT_CODE: i32 = 75;
/// Exit code when the command could not be found (as in a shell).
pub const NOT_FOUND_EXIT_CODE: i32 = 127;
/// Exit code when the command was found but could not be started (as in a shell).
pub const NOT_STARTED_EXIT_CODE: i32 = 126;
/// How long the output readers may take after the agent's group is gone (a process that left
/// the group may still hold the pipes).
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// Why a run could not be supervised at all (nothing was started).
#[derive(Debug, Error)]
pub enum SupervisorError {
    #[error("no command to run: give it after `--`")]
    EmptyCommand,
    #[error("stream `{stream}`: {message} (is the stream set up? `runledger up` creates it)")]
    Stream { stream: String, message: String },
    #[error("creating the result directory {path}: {source}")]
    ResultDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("waiting for the agent process: {0}")]
    Wait(std::io::Error),
}

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

/// How a supervised run ended.
#[derive(Debug)]
pub struct RunReport {
    pub run_id: RunId,
    /// The agent's pid (`None` if it could not be started).
    pub pid: Option<i32>,
    /// How the agent process ended (`None` if it could not be started).
    pub exit: Option<Exit>,
    /// The `run.finished` payload published (or attempted).
    pub finished: RunFinished,
    /// `run.started` delivery (`None` if the agent could not be started).
    pub started_event: Option<Result<Delivery, Undelivered>>,
    /// `run.finished` delivery.
    pub final_event: Result<Delivery, Undelivered>,
    /// What happened to processes the agent left in its group.
    pub leftovers: GroupTermination,
    /// Why the command could not be started, if it could not.
    pub spawn_error: Option<std::io::ErrorKind>,
}

impl RunReport {
    /// The supervisor's exit code: the agent's (or 128 + signal); 126/127 if it could not be
    /// started; [`UNDELIVERED_EXIT_CODE`] if `run.finished` was not acknowledged in time.
    pub fn exit_code(&self) -> i32 {
        if self.final_event.is_err() {
            return UNDELIVERED_EXIT_CODE;
        }
        match (&self.exit, self.spawn_error) {
            (Some(exit), _) => exit.shell_code(),
            (None, Some(std::io::ErrorKind::NotFound)) => NOT_FOUND_EXIT_CODE,
            (None, _) => NOT_STARTED_EXIT_CODE,
        }
    }
}

/// Supervises one run.
pub struct Supervisor {
    js: Context,
    stream: String,
    publisher: Publisher,
    settings: SupervisorSettings,
}

/// A private directory for the result file, removed when the run ends.
struct ResultDir(PathBuf);

impl ResultDir {
    fn create(run: RunId) -> Result<Self, SupervisorError> {
        use std::os::unix::fs::DirBuilderExt;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let path = std::env::temp_dir().join(format!("runledger-{run}-{}", &tag[..8]));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| SupervisorError::ResultDir {
                path: path.clone(),
                source,
            })?;
        Ok(Self(path))
    }

    fn file(&self) -> PathBuf {
        self.0.join("result.json")
    }
}

impl Drop for ResultDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn after(timeout: Option<Duration>) {
    match timeout {
        Some(t) => tokio::time::sleep(t).await,
        None => std::future::pending().await,
    }
}

impl Supervisor {
    /// A supervisor publishing into `stream` (which must exist) under `subjects`.
    pub fn new(
        js: Context,
        stream: impl Into<String>,
        subjects: Subjects,
        settings: SupervisorSettings,
    ) -> Self {
        let publisher = Publisher::new(js.clone(), subjects, PublisherSettings::default());
        Self {
            js,
            stream: stream.into(),
            publisher,
            settings,
        }
    }

    pub fn settings(&self) -> &SupervisorSettings {
        &self.settings
    }

    fn source(&self) -> String {
        format!("runledger-supervisor/{}", self.settings.host)
    }

    /// An event of this run with an id derived from the run and `rule` (published once).
    fn event(&self, rule: &str, data: EventData) -> Event {
        Event::with_id(
            EventId::derived(EventId(self.settings.run.0), rule),
            self.settings.company,
            self.source(),
            Utc::now(),
            data,
        )
    }

    /// Runs the agent to its end. `stop` turning true (the binary's SIGINT/SIGTERM) stops the
    /// agent like a cancel. Errors only if nothing could be started; every started run ends
    /// with a report, whose `final_event` says whether the ledger knows the ending.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<RunReport, SupervisorError> {
        let s = &self.settings;
        let Some(program) = s.command.first() else {
            return Err(SupervisorError::EmptyCommand);
        };
        let subject = self.publisher.subjects().run(s.company, s.run);
        let mut cancel = CancelWatch::start(&self.js, &self.stream, subject, s.run).await?;
        let result_dir = ResultDir::create(s.run)?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(&s.command[1..])
            .envs(s.env.iter().map(|(k, v)| (k, v)))
            .env("RUNLEDGER_RUN_ID", s.run.to_string())
            .env("RUNLEDGER_COMPANY_ID", s.company.to_string())
            .env("RUNLEDGER_AGENT_ID", s.agent.to_string())
            .env("RUNLEDGER_HOST_ID", &s.host)
            .env(result::RESULT_FILE_ENV, result_dir.file())
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
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => return Ok(self.not_started(program, e).await),
        };
        let pid = child.id().and_then(|p| i32::try_from(p).ok());
        // The child is at least a zombie until waited for, so its stat is readable here.
        let started_at = pid.and_then(stat::start_time);
        tracing::debug!(run = %s.run, pid, "agent started");
        let started = self.event(
            "supervisor.run.started",
            EventData::RunStarted(RunStarted {
                run_id: s.run,
                agent_id: s.agent,
                issue_id: s.issue,
                host: s.host.clone(),
                pid,
                pgid: pid,
                process_started_at: started_at,
                supervisor_pid: i32::try_from(std::process::id()).ok(),
                extra: Default::default(),
            }),
        );
        let started_task = {
            let publisher = self.publisher.clone();
            let started = started.clone();
            let deadline = Instant::now() + s.final_event_deadline;
            let attempt = s.publish_attempt_timeout;
            tokio::spawn(
                async move { publish_until(&publisher, &started, deadline, attempt).await },
            )
        };
        let stdout_pump = tokio::spawn(output::pump(
            child.stdout.take().expect("stdout is piped"),
            s.echo_output.then(tokio::io::stdout),
            s.excerpt_bytes,
            true,
        ));
        let stderr_pump = tokio::spawn(output::pump(
            child.stderr.take().expect("stderr is piped"),
            s.echo_output.then(tokio::io::stderr),
            s.excerpt_bytes,
            false,
        ));
        let heartbeats = tokio::spawn(heartbeats(
            self.publisher.clone(),
            s.company,
            s.run,
            self.source(),
            s.heartbeat_interval,
        ));

        let ended = tokio::select! {
            biased;
            status = child.wait() => Ok(Exit::from(status.map_err(SupervisorError::Wait)?)),
            _ = after(s.timeout) => Err(StopCause::Timeout(s.timeout.unwrap_or_default())),
            reason = cancel.requested() => Err(StopCause::Cancel(reason)),
            _ = stop_requested(&mut stop) => Err(StopCause::Interrupted),
        };
        let pgid = pid.unwrap_or(0);
        let (cause, exit) = match ended {
            Ok(exit) => (None, exit),
            Err(cause) => {
                tracing::info!(run = %s.run, ?cause, "stopping the agent's process group");
                let exit = termination::terminate(&mut child, pgid, s.grace)
                    .await
                    .map_err(SupervisorError::Wait)?;
                (Some(cause), exit)
            }
        };
        heartbeats.abort();
        drop(cancel);
        let leftovers = terminate_group(pgid, started_at, s.group_kill).await;
        if leftovers.signalled() {
            tracing::info!(run = %s.run, ?leftovers, "terminated what the agent left in its process group");
        }
        let stdout = drain(stdout_pump).await;
        let stderr = drain(stderr_pump).await;
        let agent = result::collect(&result_dir.file(), stdout.result_line);
        drop(result_dir);

        let finished = finished_payload(s.run, cause, exit, agent, &stdout.tail, &stderr.tail);
        let deadline = Instant::now() + s.final_event_deadline;
        let started_event = match started_task.await {
            Ok(Ok(delivery)) => Ok(delivery),
            // Not acknowledged while the agent ran: try again now, before the final event.
            _ => {
                publish_until(
                    &self.publisher,
                    &started,
                    deadline,
                    s.publish_attempt_timeout,
                )
                .await
            }
        };
        let final_event = publish_until(
            &self.publisher,
            &self.event(
                "supervisor.run.finished",
                EventData::RunFinished(finished.clone()),
            ),
            deadline,
            s.publish_attempt_timeout,
        )
        .await;
        Ok(RunReport {
            run_id: s.run,
            pid,
            exit: Some(exit),
            finished,
            started_event: Some(started_event),
            final_event,
            leftovers,
            spawn_error: None,
        })
    }

    /// The command could not be started: the run failed without a process.
    async fn not_started(&self, program: &OsString, e: std::io::Error) -> RunReport {
        let s = &self.settings;
        let finished = RunFinished {
            run_id: s.run,
            outcome: RunOutcome::Failed,
            exit_code: None,
            signal: None,
            error: Some(format!(
                "could not start `{}`: {e}",
                Path::new(program).display()
            )),
            error_code: None,
            result: Default::default(),
            stdout_excerpt: None,
            stderr_excerpt: None,
            usage: None,
            extra: Default::default(),
        };
        let deadline = Instant::now() + s.final_event_deadline;
        let final_event = publish_until(
            &self.publisher,
            &self.event(
                "supervisor.run.finished",
                EventData::RunFinished(finished.clone()),
            ),
            deadline,
            s.publish_attempt_timeout,
        )
        .await;
        RunReport {
            run_id: s.run,
            pid: None,
            exit: None,
            finished,
            started_event: None,
            final_event,
            leftovers: GroupTermination::Empty,
            spawn_error: Some(e.kind()),
        }
    }
}

/// Waits a bounded time for an output reader to reach end of file.
async fn drain(pump: tokio::task::JoinHandle<output::Captured>) -> output::Captured {
    let abort = pump.abort_handle();
    match tokio::time::timeout(DRAIN_WAIT, pump).await {
        Ok(Ok(captured)) => captured,
        Ok(Err(_)) => output::Captured::default(),
        Err(_) => {
            tracing::warn!("agent output still open after its process group ended; excerpt cut");
            abort.abort();
            output::Captured::default()
        }
    }
}

/// Publishes a `run.activity` heartbeat every `interval` until aborted. A failed heartbeat is
/// only logged: heartbeats are liveness hints, never worth blocking the agent for.
async fn heartbeats(
    publisher: Publisher,
    company: CompanyId,
    run: RunId,
    source: String,
    interval: Duration,
) {
    if interval.is_zero() {
        return;
    }
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        let now = Utc::now();
        let event = Event::new(
            company,
            source.clone(),
            now,
            EventData::RunActivity(RunActivity {
                run_id: run,
                kind: ActivityKind::Heartbeat,
                message: None,
                at: now,
                extra: Default::default(),
            }),
        );
        let budget = interval.max(Duration::from_secs(1));
        match tokio::time::timeout(budget, publisher.publish(&event)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(%run, error = %e, "heartbeat not published"),
            Err(_) => tracing::warn!(%run, "heartbeat not acknowledged in {budget:?}"),
        }
    }
}

/// The `run.finished` payload from how the agent ended and what it reported.
pub fn finished_payload(
    run: RunId,
    cause: Option<StopCause>,
    exit: Exit,
    agent: result::AgentResult,
    stdout: &output::Tail,
    stderr: &output::Tail,
) -> RunFinished {
    let (outcome, error, error_code) = match cause {
        Some(StopCause::Timeout(t)) => (
            RunOutcome::TimedOut,
            Some(format!("Timed out after {} s", t.as_secs_f64())),
            None,
        ),
        Some(StopCause::Cancel(reason)) => (RunOutcome::Cancelled, Some(reason), None),
        Some(StopCause::Interrupted) => (
            RunOutcome::Cancelled,
            Some("Cancelled: the supervisor was stopped (SIGINT/SIGTERM)".into()),
            None,
        ),
        None => match (exit.code, exit.signal_name()) {
            (Some(0), _) if agent.error.is_none() => (RunOutcome::Succeeded, None, None),
            (Some(0), _) => (RunOutcome::Failed, agent.error, agent.error_code),
            (Some(code), _) => (
                RunOutcome::Failed,
                agent
                    .error
                    .or_else(|| Some(format!("Process exited with code {code}"))),
                agent.error_code,
            ),
            (None, signal) => (
                RunOutcome::Failed,
                agent.error.or_else(|| {
                    Some(format!(
                        "Process was killed by signal {}",
                        signal.as_deref().unwrap_or("unknown")
                    ))
                }),
                agent.error_code,
            ),
        },
    };
    RunFinished {
        run_id: run,
        outcome,
        exit_code: exit.code,
        signal: exit.signal_name(),
        error,
        error_code,
        result: agent.result,
        stdout_excerpt: stdout.excerpt(),
        stderr_excerpt: stderr.excerpt(),
        usage: agent.usage,
        extra: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use result::AgentResult;

    fn exit(code: Option<i32>, signal: Option<i32>) -> Exit {
        Exit { code, signal }
    }

    fn payload(cause: Option<StopCause>, e: Exit, agent: AgentResult) -> RunFinished {
        finished_payload(
            RunId::new_random(),
            cause,
            e,
            agent,
            &output::Tail::new(8),
            &output::Tail::new(8),
        )
    }

    #[test]
    fn outcomes_follow_the_exit_and_the_stop_cause() {
        let ok = payload(None, exit(Some(0), None), AgentResult::default());
        assert_eq!((ok.outcome, ok.error), (RunOutcome::Succeeded, None));
        let three = payload(None, exit(Some(3), None), AgentResult::default());
        assert_eq!(three.outcome, RunOutcome::Failed);
        assert_eq!(three.error.as_deref(), Some("Process exited with code 3"));
        let killed = payload(None, exit(None, Some(9)), AgentResult::default());
        assert_eq!(killed.signal.as_deref(), Some("SIGKILL"));
        assert_eq!(
            killed.error.as_deref(),
            Some("Process was killed by signal SIGKILL")
        );
        let timed_out = payload(
            Some(StopCause::Timeout(Duration::from_millis(1500))),
            exit(None, Some(15)),
            AgentResult::default(),
        );
        assert_eq!(timed_out.outcome, RunOutcome::TimedOut);
        assert_eq!(timed_out.error.as_deref(), Some("Timed out after 1.5 s"));
        let cancelled = payload(
            Some(StopCause::Cancel("Cancelled by control plane".into())),
            exit(None, Some(15)),
            AgentResult::default(),
        );
        assert_eq!(cancelled.outcome, RunOutcome::Cancelled);
        assert_eq!(
            cancelled.error.as_deref(),
            Some("Cancelled by control plane")
        );
    }

    #[test]
    fn an_agent_error_fails_a_zero_exit() {
        let agent = AgentResult {
            error: Some("tests fail".into()),
            error_code: Some("tests_failed".into()),
            ..Default::default()
        };
        let p = payload(None, exit(Some(0), None), agent);
        assert_eq!(p.outcome, RunOutcome::Failed);
        assert_eq!(p.error.as_deref(), Some("tests fail"));
        assert_eq!(p.error_code.as_deref(), Some("tests_failed"));
    }
}
