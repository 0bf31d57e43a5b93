//! JetStream isolation: a unique stream name and subject prefix per test (on the shared server,
//! or on a private one from [`crate::PrivateNats`]), and what tests without a database read back
//! from their stream.
//!
//! With `RUNLEDGER_TEST_PARTITIONS=P` (P > 1, see [`crate::partitions`]) [`TestStream::new`]'s
//! stream is partitioned: the partition mapping is a server setting for one subject prefix, so
//! the stream lives on a private single-node `nats-server` of its own configured with the
//! mapping of its unique prefix (a catch-all `*.*.*.*` mapping on the shared server would also
//! map four-token JetStream API subjects), killed and removed with the stream.

use anyhow::Context;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use events::{Event, Subjects};
use futures::StreamExt;
use producers::{ensure_stream, StreamSettings};
use std::time::Duration;

const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// A unique stream name and subject prefix; the stream is deleted on drop.
pub struct TestStream {
    /// The server's URL (with partitions: the private server's; what `NATS_URL` takes).
    pub url: String,
    pub stream: String,
    pub prefix: String,
    pub client: async_nats::Client,
    /// Partitions the stream is split into (1: unpartitioned).
    pub partitions: u32,
    /// With partitions: the private server that maps this stream's prefix, killed (and its
    /// store removed) when the stream goes.
    server: Option<crate::PrivateNats>,
}

impl TestStream {
    /// Names a unique stream and prefix (the caller creates the stream): on the shared server,
    /// or with `RUNLEDGER_TEST_PARTITIONS` > 1 partitioned, on a private server with the mapping.
    pub async fn new() -> anyhow::Result<Self> {
        let partitions = crate::partitions();
        if partitions > 1 {
            return Self::partitioned(partitions).await;
        }
        Self::unpartitioned().await
    }

    /// Names a unique stream and prefix on the shared server, unpartitioned whatever
    /// `RUNLEDGER_TEST_PARTITIONS` says (for tests of the one-partition layout itself).
    pub async fn unpartitioned() -> anyhow::Result<Self> {
        let url =
            std::env::var("RUNLEDGER_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
        Self::on(&url).await
    }

    /// Names a unique stream and prefix on the server at `url` (unpartitioned: a test's own
    /// server has no mapping).
    pub async fn on(url: &str) -> anyhow::Result<Self> {
        let client = connect(url).await.with_context(|| {
            format!("connecting to NATS at {url} (is nats-server -js running?)")
        })?;
        let (stream, prefix) = names();
        Ok(Self {
            url: url.to_owned(),
            stream,
            prefix,
            client,
            partitions: 1,
            server: None,
        })
    }

    /// A stream split into `partitions`, on a private server that maps its prefix.
    pub async fn partitioned(partitions: u32) -> anyhow::Result<Self> {
        let (stream, prefix) = names();
        let subjects = Subjects::new(&prefix)?.partitioned(partitions)?;
        let mapping = subjects
            .mapping()
            .context("a partitioned stream has a mapping")?;
        let server = crate::PrivateNats::start(1, &[mapping]).await?;
        let url = server.url();
        let client = connect(&url).await?;
        Ok(Self {
            url,
            stream,
            prefix,
            client,
            partitions,
            server: Some(server),
        })
    }

    /// The stream's subjects (partitioned as the stream is).
    pub fn subjects(&self) -> Subjects {
        Subjects::new(&self.prefix)
            .expect("the test prefix is a valid prefix")
            .partitioned(self.partitions)
            .expect("a valid partition count")
    }

    pub fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client.clone())
    }

    /// Creates the stream as runledger does (a 2-minute duplicate window); its subjects.
    pub async fn create(&self) -> Subjects {
        let subjects = self.subjects();
        ensure_stream(
            &self.jetstream(),
            &StreamSettings {
                name: self.stream.clone(),
                subjects: subjects.clone(),
                duplicate_window: Duration::from_secs(120),
                replicas: 1,
            },
        )
        .await
        .expect("the test stream is created");
        subjects
    }

    /// Every event stored on `subject` so far, in order; none while the stream cannot be read,
    /// so a poll can simply ask again.
    pub async fn subject_events(&self, subject: &str) -> Vec<Event> {
        let Ok(stream) = self.jetstream().get_stream(&self.stream).await else {
            return Vec::new();
        };
        let Ok(mut consumer) = stream
            .create_consumer(pull::Config {
                filter_subject: subject.to_owned(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(10),
                ..Default::default()
            })
            .await
        else {
            return Vec::new();
        };
        let pending = consumer.info().await.map_or(0, |i| i.num_pending) as usize;
        let mut events = Vec::new();
        if pending == 0 {
            return events;
        }
        let Ok(mut messages) = consumer
            .batch()
            .max_messages(pending)
            .expires(Duration::from_secs(2))
            .messages()
            .await
        else {
            return events;
        };
        while let Some(Ok(message)) = messages.next().await {
            events.push(Event::from_slice(&message.payload).expect("an event on the subject"));
            if events.len() == pending {
                break;
            }
        }
        events
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        if self.server.is_some() {
            // The private server and its store go right after (the field's own drop).
            return;
        }
        let url = self.url.clone();
        let stream = self.stream.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(client) = connect(&url).await {
                    let js = async_nats::jetstream::new(client.clone());
                    let _ = js.delete_stream(&stream).await;
                    let _ = client.flush().await;
                }
            });
        })
        .join();
    }
}

/// A unique stream name and subject prefix.
fn names() -> (String, String) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    (
        format!("RLTEST_{}", &tag[..16]).to_uppercase(),
        format!("rltest_{}", &tag[..16]),
    )
}

/// Connects to the server, or to any of several comma-separated ones (a cluster).
pub async fn connect(urls: &str) -> anyhow::Result<async_nats::Client> {
    let servers = urls
        .split(',')
        .map(|url| url.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("NATS URL(s) `{urls}`"))?;
    Ok(async_nats::connect(servers).await?)
}
