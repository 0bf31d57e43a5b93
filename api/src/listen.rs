//! Waking the position poller when the projector commits, instead of at its next poll.
//!
//! Every live batch transaction of the projector sends a notification on
//! [`projector::store::notify::CHANNEL`] naming its schema, consumer and new position. One
//! connection per server LISTENs to it (tokio-postgres hands notifications over through the
//! connection's message stream) and wakes the shared poller ([`Positions`]) for its own schema
//! and position rows (every partition's); the poller then reads the position as always, so a
//! notification is only ever a hint. While the listener is connected the poller polls slowly
//! (`fallback_poll`), for whatever a notification could not carry (a replay's swap, a projector
//! of an older version); when the connection is lost it polls at `poll_interval` again and the
//! listener reconnects.

use crate::freshness::Positions;
use deadpool_postgres::Pool;
use futures::StreamExt;
use projector::store::notify::{PositionMoved, CHANNEL};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

/// Wait between attempts to (re)connect the listener.
const RECONNECT: Duration = Duration::from_secs(1);

/// The `application_name` of the listening session (visible in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "runledger-api-listen";

/// Starts the listener; it stops when `shutdown` turns true.
pub(crate) fn spawn(
    mut config: tokio_postgres::Config,
    pool: Pool,
    consumers: Vec<String>,
    positions: Arc<Positions>,
    mut shutdown: watch::Receiver<bool>,
) {
    config.application_name(APPLICATION_NAME);
    tokio::spawn(async move {
        let mut lost = false;
        loop {
            let outcome = tokio::select! {
                outcome = listen(&config, &pool, &consumers, &positions, lost) => outcome,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            positions.set_listening(false);
            if !lost {
                tracing::warn!(
                    error = %outcome.err().map(|e| e.to_string()).unwrap_or_else(|| "connection closed".into()),
                    "read API lost its notification listener; polling every {:?} until it is back",
                    positions.poll_interval()
                );
                lost = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(RECONNECT) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        positions.set_listening(false);
    });
}

/// One listening session: returns when its connection ends.
async fn listen(
    config: &tokio_postgres::Config,
    pool: &Pool,
    consumers: &[String],
    positions: &Positions,
    reconnect: bool,
) -> Result<(), tokio_postgres::Error> {
    // The read models' schema, as the API's sessions resolve it.
    let schema: String = match pool.get().await {
        Ok(client) => client
            .query_one("SELECT current_schema()", &[])
            .await?
            .get(0),
        Err(e) => {
            tracing::debug!(error = %e, "listener cannot read the schema yet");
            return Ok(());
        }
    };
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let (heard, mut hear) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            // Notices and other messages are not for the listener.
            if let AsyncMessage::Notification(n) = message? {
                if heard.send(n.payload().to_owned()).is_err() {
                    break;
                }
            }
        }
        Ok::<_, tokio_postgres::Error>(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    positions.set_listening(true);
    // Whatever was committed while nobody listened.
    positions.wake();
    if reconnect {
        tracing::info!("read API listens for projector commits again");
    }
    while let Some(payload) = hear.recv().await {
        let ours = PositionMoved::parse(&payload)
            .is_some_and(|moved| consumers.contains(&moved.consumer) && moved.schema == schema);
        if ours {
            positions.wake();
        }
    }
    drop(client);
    match driver.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}
