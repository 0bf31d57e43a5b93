//! The outbox drainer: publishes the follow-ups the decisions wrote, in decision order, with each
//! event's id as `Nats-Msg-Id`, and marks them published. A row is published as it was stored:
//! its subject and its exact bytes, never parsed and encoded again. A crash between publishing and marking
//! publishes the event again on restart; JetStream stores it once (duplicate window), and beyond
//! the window the outbox holds rows until the consumer has read past the stream head, where it
//! sees the earlier copy and marks the row instead of publishing it twice.

use crate::error::ReconcilerError;
use deadpool_postgres::Pool;
use producers::{Encoded, Publisher};
use projector::store::lease::{self, Fence};
use uuid::Uuid;

/// Publishes the outbox of one reconciler schema.
#[derive(Clone)]
pub struct Outbox {
    pool: Pool,
    schema: String,
    consumer: String,
    publisher: Publisher,
    /// Rows published per round.
    pub batch: i64,
    /// The lease a shared partition's drainer must still hold (`None`: unshared).
    fence: Option<Fence>,
}

impl Outbox {
    /// The outbox in `schema` of the reconciler whose position row is `consumer`.
    pub fn new(
        pool: Pool,
        schema: &str,
        consumer: &str,
        publisher: Publisher,
    ) -> Result<Self, ReconcilerError> {
        projector::store::migrate::check_schema_name(schema)?;
        Ok(Self {
            pool,
            schema: schema.to_owned(),
            consumer: consumer.to_owned(),
            publisher,
            batch: 256,
            fence: None,
        })
    }

    /// The drainer of a shared partition: each round proves it still owns the partition, and
    /// holds the lease (share lock) while it publishes and marks, so an instance that lost the
    /// partition publishes and marks nothing.
    pub fn fenced(self, fence: Option<Fence>) -> Self {
        Self { fence, ..self }
    }

    /// Publishes every publishable follow-up (unpublished, and held no further than the
    /// position); returns how many were published. On a publish failure, the ones before it
    /// are marked and the error is returned; the rest stay for the next drain.
    pub async fn drain(&self) -> Result<usize, ReconcilerError> {
        let mut client = self.pool.get().await?;
        let schema = &self.schema;
        let select = format!(
            "SELECT event_id, subject, payload FROM {schema}.outbox
             WHERE NOT published AND hold_until_seq <= COALESCE(
                 (SELECT last_seq FROM {schema}.reconciler_positions WHERE consumer = $1), 0)
             ORDER BY seq LIMIT $2"
        );
        let mark = format!("UPDATE {schema}.outbox SET published = true WHERE event_id = ANY($1)");
        let mut total = 0;
        loop {
            let tx = client.transaction().await?;
            if let Some(fence) = &self.fence {
                lease::check(&*tx, fence).await?;
            }
            let rows = tx.query(&select, &[&self.consumer, &self.batch]).await?;
            if rows.is_empty() {
                tx.commit().await?;
                return Ok(total);
            }
            let ids: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
            let encoded: Vec<Encoded> = rows
                .iter()
                .map(|row| Encoded {
                    id: row.get::<_, Uuid>(0).to_string(),
                    subject: row.get(1),
                    payload: row.get::<_, Vec<u8>>(2).into(),
                })
                .collect();
            let results = self.publisher.publish_encoded(encoded).await;
            let mut published: Vec<Uuid> = Vec::with_capacity(ids.len());
            let mut failure = None;
            for (id, result) in ids.iter().zip(results) {
                match result {
                    Ok(_) => published.push(*id),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            let statement = tx.prepare_cached(&mark).await?;
            tx.execute(&statement, &[&published]).await?;
            tx.commit().await?;
            total += published.len();
            if let Some(e) = failure {
                return Err(e.into());
            }
            if (rows.len() as i64) < self.batch {
                return Ok(total);
            }
        }
    }

    /// Follow-ups not published yet (held ones included).
    pub async fn backlog(&self) -> Result<i64, ReconcilerError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {}.outbox WHERE NOT published",
                    self.schema
                ),
                &[],
            )
            .await?;
        Ok(row.get(0))
    }
}
