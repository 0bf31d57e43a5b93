//! The run supervisor behind `runledger run`: starts the agent command in its own process group,
//! publishes `run.started` (with the pid-reuse guard), heartbeats while it lives, stops it on
//! timeout, cancel or interrupt (SIGTERM to the group, grace, SIGKILL), streams its output
//! through unchanged, and publishes `run.finished` — retried with the same event id until
//! acknowledged or a deadline, so the final event is never silently lost.
//!
//! [`Supervisor::run`] reads as those steps, each in the file of its noun: the agent process
//! (`agent.rs`), the delivery of `run.started` and `run.finished` (`delivery.rs`), heartbeats
//! (`heartbeat.rs`), the causes and the way of stopping the agent (`termination.rs`,
//! `cancellation.rs`), its output (`output.rs`), the result it reports (`result.rs`) and the
//! `run.finished` payload made of them (`finished.rs`).
//!
//! The protocol an agent sees (environment, result file/line, exit codes) is documented in
//! `docs/supervisor.md`.

mod agent;
pub mod cancellation;
pub mod delivery;
pub mod finished;
mod heartbeat;
pub mod output;
mod report;
pub mod result;
mod settings;
pub mod termination;

pub use report::{RunReport, NOT_FOUND_EXIT_CODE, NOT_STARTED_EXIT_CODE, UNDELIVERED_EXIT_CODE};
pub use settings::SupervisorSettings;

use crate::process::group::GroupTermination;
use crate::{Publisher, PublisherSettings};
use agent::Agent;
use async_nats::jetstream::Context;
use cancellation::CancelWatch;
use chrono::Utc;
use delivery::{publish_until, BackgroundDelivery, Delivery, Undelivered};
use events::run::{RunFinished, RunStarted};
use events::{Event, EventData, EventId, Subjects};
use heartbeat::Heartbeats;
use result::ResultDir;
use std::ffi::OsStr;
use std::path::PathBuf;
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;

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

/// Supervises one run.
pub struct Supervisor {
    js: Context,
    stream: String,
    publisher: Publisher,
    settings: SupervisorSettings,
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
        let mut agent = match Agent::spawn(s, program, &result_dir.file()) {
            Ok(agent) => agent,
            Err(e) => return Ok(self.not_started(program, e).await),
        };
        let started = self.announce(&agent);
        let heartbeats = Heartbeats::start(
            self.publisher.clone(),
            s.company,
            s.run,
            self.source(),
            s.heartbeat_interval,
        );
        let stop_cause = termination::stop_cause(s.timeout, &mut cancel, &mut stop);
        let (cause, exit) = agent
            .end(stop_cause, s.grace)
            .await
            .map_err(SupervisorError::Wait)?;
        drop(heartbeats);
        drop(cancel);
        let leftovers = agent.reap_leftovers(s.group_kill).await;
        let pid = agent.pid;
        let (stdout, stderr) = agent.output().await;
        let reported = result::collect(&result_dir.file(), stdout.result_line);
        drop(result_dir);
        let finished = finished::payload(s.run, cause, exit, reported, &stdout.tail, &stderr.tail);
        let (started_event, final_event) = self.finish(started, &finished).await;
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

    /// `run.started` for the agent, delivered in the background while it runs.
    fn announce(&self, agent: &Agent) -> BackgroundDelivery {
        let s = &self.settings;
        let started = self.event(
            "supervisor.run.started",
            EventData::RunStarted(RunStarted {
                run_id: s.run,
                agent_id: s.agent,
                issue_id: s.issue,
                host: s.host.clone(),
                pid: agent.pid,
                pgid: agent.pid,
                process_started_at: agent.started_at,
                supervisor_pid: i32::try_from(std::process::id()).ok(),
                extra: Default::default(),
            }),
        );
        BackgroundDelivery::start(
            self.publisher.clone(),
            started,
            Instant::now() + s.final_event_deadline,
            s.publish_attempt_timeout,
        )
    }

    /// Settles `run.started` (sent again if it was not acknowledged while the agent ran), then
    /// delivers `run.finished`; one deadline for both.
    async fn finish(
        &self,
        started: BackgroundDelivery,
        finished: &RunFinished,
    ) -> (Result<Delivery, Undelivered>, Result<Delivery, Undelivered>) {
        let deadline = Instant::now() + self.settings.final_event_deadline;
        let started = started
            .settle(
                &self.publisher,
                deadline,
                self.settings.publish_attempt_timeout,
            )
            .await;
        (started, self.deliver_finished(finished, deadline).await)
    }

    /// The command could not be started: the run failed without a process.
    async fn not_started(&self, program: &OsStr, e: std::io::Error) -> RunReport {
        let s = &self.settings;
        let finished = finished::not_started(s.run, program, &e);
        let deadline = Instant::now() + s.final_event_deadline;
        let final_event = self.deliver_finished(&finished, deadline).await;
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

    /// Publishes `run.finished` until acknowledged or `deadline`.
    async fn deliver_finished(
        &self,
        finished: &RunFinished,
        deadline: Instant,
    ) -> Result<Delivery, Undelivered> {
        let event = self.event(
            "supervisor.run.finished",
            EventData::RunFinished(finished.clone()),
        );
        publish_until(
            &self.publisher,
            &event,
            deadline,
            self.settings.publish_attempt_timeout,
        )
        .await
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
}
