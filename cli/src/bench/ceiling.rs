//! Raw ceilings of this machine, measured in the same run as the workloads: what JetStream and
//! PostgreSQL can do with no runledger logic at all.

use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use std::time::Instant;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

/// Raw JetStream publish: the same payloads and subjects, pipelined with as many acks in flight
/// as the `Publisher` keeps, no validation. Returns events per second.
pub async fn raw_publish(
    js: &async_nats::jetstream::Context,
    messages: &[(String, String, Bytes)],
) -> anyhow::Result<f64> {
    let window = producers::PublisherSettings::default().max_in_flight;
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for (subject, id, payload) in messages {
        while in_flight.len() >= window {
            in_flight.next().await.expect("non-empty")?;
        }
        let ack = js
            .send_publish(
                subject.clone(),
                PublishMessage::build()
                    .payload(payload.clone())
                    .message_id(id),
            )
            .await?;
        in_flight.push(async move { ack.await.map(|_| ()) });
    }
    while let Some(r) = in_flight.next().await {
        r?;
    }
    Ok(messages.len() as f64 / started.elapsed().as_secs_f64())
}

/// Raw JetStream publish (as [`raw_publish`]) while a raw reader on its own connection reads
/// every message back through the projector's kind of cursor (no parsing, no database), over the
/// client's connection or (with `wire`) a plain one of its own: the ceiling of anything that must
/// see each event as it is stored. Returns events per second, from
/// the first publish to the last message read.
pub async fn raw_publish_and_read(
    js: &async_nats::jetstream::Context,
    reader_js: &async_nats::jetstream::Context,
    wire: Option<&projector::feed::wire::Endpoint>,
    stream: &str,
    subjects: &events::Subjects,
    messages: &[(String, String, Bytes)],
) -> anyhow::Result<f64> {
    let total = messages.len();
    let mut cursor = projector::feed::cursor::Cursor::open(
        reader_js,
        wire,
        stream,
        "bench-reader",
        subjects,
        0,
        5000,
    )
    .await?;
    anyhow::ensure!(
        cursor.over_wire() == wire.is_some(),
        "the raw reader could not use the connection it was meant to measure"
    );
    let started = Instant::now();
    let read = tokio::spawn(async move {
        let mut seen = 0;
        while seen < total {
            let read = tokio::time::timeout(std::time::Duration::from_secs(10), cursor.next());
            match read.await {
                Ok(delivery) => {
                    delivery?;
                    seen += 1;
                }
                Err(_) => anyhow::bail!("read {seen} of {total} events"),
            }
        }
        Ok(())
    });
    raw_publish(js, messages).await?;
    read.await??;
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Raw PostgreSQL binary COPY of `rows` rows shaped like a timeline entry into a scratch table.
/// Returns rows per second.
pub async fn raw_copy(client: &tokio_postgres::Client, rows: usize) -> anyhow::Result<f64> {
    client
        .batch_execute(
            "DROP TABLE IF EXISTS bench_copy;
             CREATE UNLOGGED TABLE bench_copy (run_id uuid, seq bigint, company_id uuid, type text,
                message text, payload jsonb, at timestamptz)",
        )
        .await?;
    let payload = serde_json::json!({"kind": "heartbeat"});
    let company = uuid::Uuid::new_v4();
    let at = chrono::Utc::now();
    let started = Instant::now();
    let sink = client
        .copy_in("COPY bench_copy FROM STDIN (FORMAT binary)")
        .await?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::UUID,
            Type::INT8,
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::JSONB,
            Type::TIMESTAMPTZ,
        ],
    );
    futures::pin_mut!(writer);
    for i in 0..rows {
        let run = uuid::Uuid::from_u128(i as u128 / 22);
        writer
            .as_mut()
            .write(&[
                &run,
                &(i as i64),
                &company,
                &"run.activity",
                &"heartbeat",
                &payload,
                &at,
            ])
            .await?;
    }
    writer.finish().await?;
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    client.batch_execute("DROP TABLE bench_copy").await?;
    Ok(rate)
}

/// Raw ordered read of the whole stream, over the client's connection or (with `wire`) a plain
/// one of the reader's own. Returns events per second.
pub async fn raw_read(
    js: &async_nats::jetstream::Context,
    wire: Option<&projector::feed::wire::Endpoint>,
    stream: &str,
    subjects: &events::Subjects,
    total: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut reader =
        projector::feed::history::HistoryReader::open(js, wire, stream, subjects, 1).await?;
    anyhow::ensure!(
        reader.over_wire() == wire.is_some(),
        "the raw read could not use the connection it was meant to measure"
    );
    let mut seen = 0u64;
    while seen < total {
        let batch = reader
            .next_batch(5000, std::time::Duration::from_secs(5))
            .await?;
        if batch.is_empty() {
            anyhow::bail!("stream ended after {seen} of {total} events");
        }
        seen += batch.len() as u64;
    }
    Ok(seen as f64 / started.elapsed().as_secs_f64())
}
