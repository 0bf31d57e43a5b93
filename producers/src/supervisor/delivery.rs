//! Delivering an event that must not be lost (`run.started`, `run.finished`): publish with the
//! same event id again and again until it is acknowledged or a deadline passes. The stream's
//! duplicate window stores it once however many attempts reached the server, so the deadline
//! must stay inside that window (the default deadline, 60 s, is half the default window).
//! `run.started` is delivered in the background while the agent runs, and settled before
//! `run.finished` is sent.

use crate::{PublishError, PublishOutcome, Publisher};
use events::Event;
use std::fmt;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Default longest single attempt; a hung attempt is abandoned and the event sent again.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// An acknowledged event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub outcome: PublishOutcome,
    /// Attempts made, this one included.
    pub attempts: u32,
}

/// An event not acknowledged before its deadline (or refused as invalid).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undelivered {
    pub attempts: u32,
    /// How long delivery was tried.
    pub waited: Duration,
    /// The last failure.
    pub last_error: String,
}

impl fmt::Display for Undelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not acknowledged after {} attempt(s) over {:.1} s (last error: {})",
            self.attempts,
            self.waited.as_secs_f64(),
            self.last_error
        )
    }
}

/// Publishes `event` (same id every time) until acknowledged or `deadline`, giving each attempt
/// at most `attempt_timeout`.
pub async fn publish_until(
    publisher: &Publisher,
    event: &Event,
    deadline: Instant,
    attempt_timeout: Duration,
) -> Result<Delivery, Undelivered> {
    let began = Instant::now();
    let mut attempts = 0;
    let mut last_error = String::from("deadline passed before the first attempt");
    loop {
        let now = Instant::now();
        if now >= deadline && attempts > 0 {
            break;
        }
        attempts += 1;
        let budget = deadline.saturating_duration_since(now).min(attempt_timeout);
        // A zero budget still gets one try at an already-connected server.
        let budget = budget.max(Duration::from_millis(50));
        match tokio::time::timeout(budget, publisher.publish(event)).await {
            Ok(Ok(outcome)) => return Ok(Delivery { outcome, attempts }),
            Ok(Err(e @ PublishError::Invalid(_))) => {
                return Err(Undelivered {
                    attempts,
                    waited: began.elapsed(),
                    last_error: e.to_string(),
                })
            }
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = format!("no acknowledgement within {budget:?}"),
        }
        tracing::warn!(event = %event.id, r#type = %event.event_type(), attempts, error = %last_error, "publish failed; retrying with the same event id");
        let pause = (Duration::from_millis(100) * attempts).min(MAX_BACKOFF);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        tokio::time::sleep(pause.min(remaining)).await;
    }
    Err(Undelivered {
        attempts,
        waited: began.elapsed(),
        last_error,
    })
}

/// An event delivered in the background (`run.started`: the agent is not held up for it).
pub struct BackgroundDelivery {
    event: Event,
    task: JoinHandle<Result<Delivery, Undelivered>>,
}

impl BackgroundDelivery {
    /// Starts delivering `event` as [`publish_until`] does.
    pub fn start(
        publisher: Publisher,
        event: Event,
        deadline: Instant,
        attempt_timeout: Duration,
    ) -> Self {
        let task = {
            let event = event.clone();
            tokio::spawn(async move {
                publish_until(&publisher, &event, deadline, attempt_timeout).await
            })
        };
        Self { event, task }
    }

    /// Its delivery; if it was not acknowledged in the background, it is tried again now, until
    /// `deadline`.
    pub async fn settle(
        self,
        publisher: &Publisher,
        deadline: Instant,
        attempt_timeout: Duration,
    ) -> Result<Delivery, Undelivered> {
        match self.task.await {
            Ok(Ok(delivery)) => Ok(delivery),
            _ => publish_until(publisher, &self.event, deadline, attempt_timeout).await,
        }
    }
}
