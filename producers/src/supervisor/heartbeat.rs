//! Heartbeats: a `run.activity` of kind `heartbeat` every interval while the agent lives. They
//! are liveness hints, never worth blocking the agent for: a heartbeat that cannot be published
//! is only logged.

use crate::Publisher;
use chrono::Utc;
use events::run::RunActivity;
use events::{ActivityKind, CompanyId, Event, EventData, RunId};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The heartbeats of one run, published by a task of their own until this is dropped.
pub(super) struct Heartbeats(JoinHandle<()>);

impl Heartbeats {
    /// Starts publishing a heartbeat every `interval` (zero: none), the first after one interval.
    pub(super) fn start(
        publisher: Publisher,
        company: CompanyId,
        run: RunId,
        source: String,
        interval: Duration,
    ) -> Self {
        Self(tokio::spawn(beat(
            publisher, company, run, source, interval,
        )))
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn beat(
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
