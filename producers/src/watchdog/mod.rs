//! The per-host process watchdog behind `runledger watchdog` (and inside `runledger up`).
//!
//! [`Watchdog::sweep`] is one step: read the runs this host is running from the read model,
//! probe each run's supervisor and agent process (pid-reuse safe, see [`crate::process::probe`]) and publish
//! what changed:
//! - supervisor gone, agent alive → `run.process_detached`, once per run;
//! - supervisor and agent gone → terminate what is left of the agent's process group, then
//!   `run.process_lost` with the reference's message;
//! - cancel requested and supervisor gone → terminate the group, `run.finished` `cancelled`.
//!
//! A supervisor that is alive owns its run (an agent gone under a live supervisor is a run being
//! finished). Event ids are derived from the run id and the rule, so a restarted watchdog that
//! decides the same again publishes the same id (stored once); "once per run" also holds across
//! restarts through the read model (a detached warning recorded for the run) and the stream (the
//! run's last event already ends it). [`Watchdog::run`] calls `sweep` every interval.

pub mod watchlist;

use crate::process::group::{terminate_group, GroupKill, GroupTermination};
use crate::process::probe::{probe, supervisor_alive, Liveness};
use crate::{PublishOutcome, Publisher, PublisherSettings};
use async_nats::jetstream::Context;
use chrono::Utc;
use deadpool_postgres::Pool;
use events::run::{RunFinished, RunProcessDetached, RunProcessLost};
use events::{CompanyId, Event, EventData, EventId, RunId, RunOutcome, Subjects};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;
use tokio::time::Instant;
use watchlist::WatchedRun;

/// Why a sweep could not look at the runs (publishing problems are reported per run instead).
#[derive(Debug, Error)]
pub enum WatchdogError {
    #[error("reading the runs read model: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("getting a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// How a watchdog behaves.
#[derive(Clone, Debug)]
pub struct WatchdogSettings {
    /// The host id whose runs are watched (`run.started.host`).
    pub host: String,
    /// The stream holding the runs' events (to see whether a run already ended).
    pub stream: String,
    pub subjects: Subjects,
    /// Between sweeps in [`Watchdog::run`].
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

/// Watches the runs of one host.
pub struct Watchdog {
    pool: Pool,
    js: Context,
    publisher: Publisher,
    settings: WatchdogSettings,
    /// Ends (lost, cancelled) and detached warnings published and acknowledged, by run; forgotten
    /// once the run leaves the watchlist.
    reported: HashMap<RunId, EventId>,
    /// Events decided but not acknowledged yet: published again, unchanged, next sweep.
    pending: HashMap<RunId, (Event, Verdict)>,
}

impl Watchdog {
    pub fn new(pool: Pool, js: Context, settings: WatchdogSettings) -> Self {
        let publisher = Publisher::new(
            js.clone(),
            settings.subjects.clone(),
            PublisherSettings::default(),
        );
        Self {
            pool,
            js,
            publisher,
            settings,
            reported: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    pub fn settings(&self) -> &WatchdogSettings {
        &self.settings
    }

    fn source(&self) -> String {
        format!("runledger-watchdog/{}", self.settings.host)
    }

    fn event(&self, company: CompanyId, run: RunId, rule: &str, data: EventData) -> Event {
        Event::with_id(
            EventId::derived(EventId(run.0), rule),
            company,
            self.source(),
            Utc::now(),
            data,
        )
    }

    /// Checks every running run of this host once and publishes what changed.
    pub async fn sweep(&mut self) -> Result<SweepReport, WatchdogError> {
        let began = Instant::now();
        let runs = watchlist::running_on(&self.pool, &self.settings.host).await?;
        let watched: HashSet<RunId> = runs.iter().map(|r| r.run_id).collect();
        self.reported.retain(|run, _| watched.contains(run));
        self.pending.retain(|run, _| watched.contains(run));
        let mut report = SweepReport::default();
        for run in &runs {
            let check = if let Some((event, verdict)) = self.pending.get(&run.run_id).cloned() {
                report.republished += 1;
                let mut check = RunCheck {
                    run_id: run.run_id,
                    company_id: run.company_id,
                    agent: "unknown",
                    supervisor_alive: false,
                    verdict,
                    event_id: None,
                    published: None,
                };
                self.publish(&mut check, event).await;
                check
            } else {
                self.check(run).await
            };
            report.runs.push(check);
        }
        report.elapsed = began.elapsed();
        Ok(report)
    }

    async fn check(&mut self, run: &WatchedRun) -> RunCheck {
        let agent = run
            .pid
            .map(|pid| probe(pid, run.process_started_at))
            .unwrap_or(Liveness::Gone);
        let supervisor = run.supervisor_pid.is_some_and(|sp| {
            supervisor_alive(sp, &probe(sp, None), &agent, run.process_started_at)
        });
        let mut check = RunCheck {
            run_id: run.run_id,
            company_id: run.company_id,
            agent: if run.pid.is_some() {
                agent.as_str()
            } else {
                "unknown"
            },
            supervisor_alive: supervisor,
            verdict: Verdict::Supervised,
            event_id: None,
            published: None,
        };
        if supervisor {
            check.verdict = if agent.is_alive() {
                Verdict::Supervised
            } else {
                Verdict::Finishing
            };
            return check;
        }
        if run.pid.is_none() && run.pgid.is_none() && run.supervisor_pid.is_none() {
            check.verdict = Verdict::Unprobeable;
            return check;
        }
        if let Some(event) = self.reported.get(&run.run_id) {
            let detached = *event == detached_id(run.run_id);
            // A detached run moves on when it is cancelled or its agent dies; an end waits.
            let moved_on = detached && (run.cancel_reason.is_some() || !agent.is_alive());
            if !moved_on {
                check.verdict = if detached {
                    Verdict::StillDetached
                } else {
                    Verdict::AwaitingProjection
                };
                return check;
            }
        }
        if let Some(reason) = &run.cancel_reason {
            if self.already_ended(run).await {
                check.verdict = Verdict::AlreadyEnded;
                return check;
            }
            let group = self.terminate(run, &agent).await;
            let event = self.event(
                run.company_id,
                run.run_id,
                "watchdog.cancelled",
                EventData::RunFinished(RunFinished {
                    run_id: run.run_id,
                    outcome: RunOutcome::Cancelled,
                    exit_code: None,
                    signal: None,
                    error: Some(reason.clone()),
                    error_code: None,
                    result: Map::new(),
                    stdout_excerpt: None,
                    stderr_excerpt: None,
                    usage: None,
                    extra: extra(json!({
                        "stopped_by": "watchdog",
                        "host": self.settings.host,
                    })),
                }),
            );
            check.verdict = Verdict::Cancelled {
                reason: reason.clone(),
                group,
            };
            self.publish(&mut check, event).await;
            return check;
        }
        if agent.is_alive() {
            let pid = run.pid.expect("an alive agent has a pid");
            if run.detached_before {
                check.verdict = Verdict::StillDetached;
                return check;
            }
            let event = self.event(
                run.company_id,
                run.run_id,
                "watchdog.process_detached",
                EventData::RunProcessDetached(RunProcessDetached {
                    run_id: run.run_id,
                    pid,
                    host: self.settings.host.clone(),
                    extra: Map::new(),
                }),
            );
            check.verdict = Verdict::Detached { pid };
            self.publish(&mut check, event).await;
            return check;
        }
        if self.already_ended(run).await {
            check.verdict = Verdict::AlreadyEnded;
            return check;
        }
        let group = self.terminate(run, &agent).await;
        let terminated = matches!(group, GroupTermination::Terminated { .. });
        let message = lost_message(run.pid, run.pgid, terminated);
        let event = self.event(
            run.company_id,
            run.run_id,
            "watchdog.process_lost",
            EventData::RunProcessLost(RunProcessLost {
                run_id: run.run_id,
                pid: run.pid,
                pgid: run.pgid,
                descendant_group_terminated: terminated,
                message: message.clone(),
                extra: extra(json!({
                    "host": self.settings.host,
                    "process": check.agent,
                })),
            }),
        );
        check.verdict = Verdict::Lost {
            message,
            descendant_group_terminated: terminated,
            group,
        };
        self.publish(&mut check, event).await;
        check
    }

    /// Terminates the run's process group, unless its pid now belongs to another process (then
    /// the group number is not the run's either: a pid is only reused once its group is empty).
    async fn terminate(&self, run: &WatchedRun, agent: &Liveness) -> GroupTermination {
        if matches!(agent, Liveness::Reused { .. }) {
            return GroupTermination::Empty;
        }
        match run.pgid.or(run.pid) {
            Some(pgid) => {
                terminate_group(pgid, run.process_started_at, self.settings.group_kill).await
            }
            None => GroupTermination::Empty,
        }
    }

    /// Whether the run's last event on the stream already ends it (the supervisor finished it,
    /// or an earlier watchdog reported it lost) while the read model has not caught up.
    async fn already_ended(&self, run: &WatchedRun) -> bool {
        let subject = self.settings.subjects.run(run.company_id, run.run_id);
        let lookup = async {
            let stream = self.js.get_stream(&self.settings.stream).await.ok()?;
            let message = stream
                .get_last_raw_message_by_subject(&subject)
                .await
                .ok()?;
            let event = Event::from_slice(&message.payload).ok()?;
            Some(matches!(
                event.data,
                EventData::RunFinished(_) | EventData::RunProcessLost(_)
            ))
        };
        tokio::time::timeout(self.settings.publish_timeout, lookup)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    async fn publish(&mut self, check: &mut RunCheck, event: Event) {
        check.event_id = Some(event.id);
        let result = match tokio::time::timeout(
            self.settings.publish_timeout,
            self.publisher.publish(&event),
        )
        .await
        {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no acknowledgement within {:?}",
                self.settings.publish_timeout
            )),
        };
        match &result {
            Ok(_) => {
                self.pending.remove(&check.run_id);
                self.reported.insert(check.run_id, event.id);
            }
            Err(e) => {
                tracing::warn!(run = %check.run_id, event = %event.id, error = %e, "watchdog event not published; retrying next sweep");
                self.pending
                    .insert(check.run_id, (event, check.verdict.clone()));
            }
        }
        check.published = Some(result);
    }

    /// Sweeps every `interval` until `stop` turns true. A failed sweep is logged and retried.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        tracing::info!(host = %self.settings.host, interval = ?self.settings.interval, "watchdog started");
        let mut ticks = tokio::time::interval(self.settings.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = crate::stop::requested(&mut stop) => break,
            }
            match self.sweep().await {
                Ok(report) => log(&report),
                Err(e) => tracing::warn!(error = %e, "watchdog sweep failed; retrying"),
            }
        }
        tracing::info!("watchdog stopped");
    }
}

fn detached_id(run: RunId) -> EventId {
    EventId::derived(EventId(run.0), "watchdog.process_detached")
}

fn extra(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn log(report: &SweepReport) {
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
