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
/// every message back through an async-nats pull consumer like the feed's (no parsing, no gap
/// check, no database): the ceiling of anything that must see each event as it is stored.
/// Returns events per second, from the first publish to the last message read.
pub async fn raw_publish_and_read(
    js: &async_nats::jetstream::Context,
    reader_js: &async_nats::jetstream::Context,
    stream: &str,
    subjects: &events::Subjects,
    messages: &[(String, String, Bytes)],
) -> anyhow::Result<f64> {
    let total = messages.len() as u64;
    let mut reader = raw_reader(reader_js, stream, subjects).await?;
    let started = Instant::now();
    let read = tokio::spawn(async move { read_all(&mut reader, total).await });
    raw_publish(js, messages).await?;
    read.await??;
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// An ephemeral pull consumer of the whole stream without acks, pulled as the feed pulls.
async fn raw_reader(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subjects: &events::Subjects,
) -> anyhow::Result<async_nats::jetstream::consumer::pull::Stream> {
    use async_nats::jetstream::consumer::{pull, AckPolicy};
    let consumer = js
        .get_stream(stream)
        .await?
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::None,
            filter_subject: subjects.all(),
            inactive_threshold: std::time::Duration::from_secs(30),
            memory_storage: true,
            ..Default::default()
        })
        .await?;
    Ok(consumer
        .stream()
        .max_messages_per_batch(2000)
        .heartbeat(std::time::Duration::from_secs(5))
        .messages()
        .await?)
}

/// Reads `total` messages, each given at most 10 s.
async fn read_all(
    reader: &mut async_nats::jetstream::consumer::pull::Stream,
    total: u64,
) -> anyhow::Result<()> {
    let mut seen = 0;
    while seen < total {
        match tokio::time::timeout(std::time::Duration::from_secs(10), reader.next()).await {
            Ok(Some(message)) => {
                message.map_err(|e| anyhow::anyhow!("reading: {e}"))?;
                seen += 1;
            }
            Ok(None) | Err(_) => anyhow::bail!("read {seen} of {total} events"),
        }
    }
    Ok(())
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

/// Raw ordered read of the whole stream through an async-nats pull consumer like the feed's (no
/// parsing, no gap check). Returns events per second.
pub async fn raw_read(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subjects: &events::Subjects,
    total: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut reader = raw_reader(js, stream, subjects).await?;
    read_all(&mut reader, total).await?;
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
