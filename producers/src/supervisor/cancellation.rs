//! Listening for `run.cancel_requested` on the run's own subject. An ordered JetStream consumer
//! from the start of the subject is used rather than a plain subscription, so a cancel published
//! before the supervisor started, or while it was disconnected from NATS, is still seen.

use super::SupervisorError;
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::Context;
use events::{Event, EventData, RunId};
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A running watch for the cancel of one run.
pub struct CancelWatch {
    rx: mpsc::Receiver<String>,
    task: JoinHandle<()>,
}

impl CancelWatch {
    /// Starts watching `subject` (the run's subject) in `stream` for a cancel of `run`.
    pub async fn start(
        js: &Context,
        stream: &str,
        subject: String,
        run: RunId,
    ) -> Result<Self, SupervisorError> {
        let err = |what: &str, e: &dyn std::fmt::Display| SupervisorError::Stream {
            stream: stream.to_owned(),
            message: format!("{what}: {e}"),
        };
        let handle = js
            .get_stream(stream)
            .await
            .map_err(|e| err("opening the stream", &e))?;
        let consumer = handle
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject,
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| err("creating the cancel consumer", &e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| err("reading the run's subject", &e))?;
        let (tx, rx) = mpsc::channel(1);
        let task = tokio::spawn(hand_on_cancel(messages, run, tx));
        Ok(Self { rx, task })
    }

    /// Resolves with the reason when a cancel arrives; never, if none does.
    pub async fn requested(&mut self) -> String {
        match self.rx.recv().await {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }
}

/// Reads the run's subject until a cancel of `run` arrives, and hands its reason on.
async fn hand_on_cancel(mut messages: pull::Ordered, run: RunId, tx: mpsc::Sender<String>) {
    while let Some(message) = messages.next().await {
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                // The ordered consumer recreates itself; do not spin meanwhile.
                tracing::debug!(error = %e, "cancel watch: consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(event) = Event::from_slice(&message.payload) else {
            continue;
        };
        if let EventData::RunCancelRequested(cancel) = event.data {
            if cancel.run_id == run {
                let _ = tx.send(cancel.reason).await;
                return;
            }
        }
    }
    tracing::warn!("cancel watch ended: cancels of this run will not be seen");
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
