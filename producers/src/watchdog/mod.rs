//! The per-host process watchdog behind `runledger watchdog` (and inside `runledger up`).
//!
//! [`Watchdog::sweep`] is one step: read the runs this host is running from the read model,
//! probe each run's supervisor and agent process (pid-reuse safe, see
//! [`crate::process::probe`]) and publish what changed:
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

mod report;
mod settings;
pub mod watchlist;

pub use report::{lost_message, RunCheck, SweepReport, Verdict};
pub use settings::WatchdogSettings;

use crate::process::group::{terminate_group, GroupTermination};
use crate::process::probe::{probe, supervisor_alive, Liveness};
use crate::{Publisher, PublisherSettings};
use async_nats::jetstream::Context;
use chrono::Utc;
use deadpool_postgres::Pool;
use events::run::{RunFinished, RunProcessDetached, RunProcessLost};
use events::{Event, EventData, EventId, RunId, RunOutcome};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
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
                self.publish(unpublished(run, "unknown", false, verdict), event)
                    .await
            } else {
                self.check(run).await
            };
            report.runs.push(check);
        }
        report.elapsed = began.elapsed();
        Ok(report)
    }

    /// Probes one run and publishes what changed about it.
    async fn check(&mut self, run: &WatchedRun) -> RunCheck {
        let agent = run
            .pid
            .map(|pid| probe(pid, run.process_started_at))
            .unwrap_or(Liveness::Gone);
        let supervised = run.supervisor_pid.is_some_and(|sp| {
            supervisor_alive(sp, &probe(sp, None), &agent, run.process_started_at)
        });
        let process = if run.pid.is_some() {
            agent.as_str()
        } else {
            "unknown"
        };
        if let Some(verdict) = self.nothing_new(run, &agent, supervised) {
            return unpublished(run, process, supervised, verdict);
        }
        let check = unpublished(run, process, supervised, Verdict::Supervised);
        match &run.cancel_reason {
            Some(reason) => self.cancel(run, &agent, reason, check).await,
            None if agent.is_alive() => self.detach(run, check).await,
            None => self.lose(run, &agent, check).await,
        }
    }

    /// The verdict on a run with nothing new to publish, found without the stream: its
    /// supervisor owns it, nothing was recorded to probe, or this watchdog reported it already
    /// and it has not moved on since (a detached run moves on when it is cancelled or its agent
    /// dies; an end waits for the projection).
    fn nothing_new(&self, run: &WatchedRun, agent: &Liveness, supervised: bool) -> Option<Verdict> {
        if supervised {
            return Some(if agent.is_alive() {
                Verdict::Supervised
            } else {
                Verdict::Finishing
            });
        }
        if run.pid.is_none() && run.pgid.is_none() && run.supervisor_pid.is_none() {
            return Some(Verdict::Unprobeable);
        }
        let detached = *self.reported.get(&run.run_id)? == detached_id(run.run_id);
        let moved_on = detached && (run.cancel_reason.is_some() || !agent.is_alive());
        (!moved_on).then_some(if detached {
            Verdict::StillDetached
        } else {
            Verdict::AwaitingProjection
        })
    }

    /// A cancel without supervisor: terminate the group, finish the run `cancelled`.
    async fn cancel(
        &mut self,
        run: &WatchedRun,
        agent: &Liveness,
        reason: &str,
        mut check: RunCheck,
    ) -> RunCheck {
        if self.already_ended(run).await {
            check.verdict = Verdict::AlreadyEnded;
            return check;
        }
        let group = self.terminate(run, agent).await;
        let event = self.event(
            run,
            "watchdog.cancelled",
            EventData::RunFinished(RunFinished {
                run_id: run.run_id,
                outcome: RunOutcome::Cancelled,
                exit_code: None,
                signal: None,
                error: Some(reason.to_owned()),
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
            reason: reason.to_owned(),
            group,
        };
        self.publish(check, event).await
    }

    /// Supervisor gone, agent alive: `run.process_detached`, once per run.
    async fn detach(&mut self, run: &WatchedRun, mut check: RunCheck) -> RunCheck {
        let pid = run.pid.expect("an alive agent has a pid");
        if run.detached_before {
            check.verdict = Verdict::StillDetached;
            return check;
        }
        let event = self.event(
            run,
            "watchdog.process_detached",
            EventData::RunProcessDetached(RunProcessDetached {
                run_id: run.run_id,
                pid,
                host: self.settings.host.clone(),
                extra: Map::new(),
            }),
        );
        check.verdict = Verdict::Detached { pid };
        self.publish(check, event).await
    }

    /// Supervisor and agent gone: terminate what is left of the group, `run.process_lost`.
    async fn lose(&mut self, run: &WatchedRun, agent: &Liveness, mut check: RunCheck) -> RunCheck {
        if self.already_ended(run).await {
            check.verdict = Verdict::AlreadyEnded;
            return check;
        }
        let group = self.terminate(run, agent).await;
        let terminated = matches!(group, GroupTermination::Terminated { .. });
        let message = lost_message(run.pid, run.pgid, terminated);
        let event = self.event(
            run,
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
        self.publish(check, event).await
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

    /// Publishes the event of a finding; one not acknowledged is kept to be published again,
    /// unchanged, next sweep.
    async fn publish(&mut self, mut check: RunCheck, event: Event) -> RunCheck {
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
        check
    }

    fn source(&self) -> String {
        format!("runledger-watchdog/{}", self.settings.host)
    }

    /// An event about `run` with an id derived from the run and `rule`.
    fn event(&self, run: &WatchedRun, rule: &str, data: EventData) -> Event {
        Event::with_id(
            EventId::derived(EventId(run.run_id.0), rule),
            run.company_id,
            self.source(),
            Utc::now(),
            data,
        )
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
                Ok(report) => report::log(&report),
                Err(e) => tracing::warn!(error = %e, "watchdog sweep failed; retrying"),
            }
        }
        tracing::info!("watchdog stopped");
    }
}

/// A check of `run` with its verdict and nothing published (yet).
fn unpublished(
    run: &WatchedRun,
    agent: &'static str,
    supervisor_alive: bool,
    verdict: Verdict,
) -> RunCheck {
    RunCheck {
        run_id: run.run_id,
        company_id: run.company_id,
        agent,
        supervisor_alive,
        verdict,
        event_id: None,
        published: None,
    }
}

/// The id of a run's detached warning (one per run).
fn detached_id(run: RunId) -> EventId {
    EventId::derived(EventId(run.0), "watchdog.process_detached")
}

/// The `extra` object of an event.
fn extra(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}
