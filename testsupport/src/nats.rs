//! JetStream isolation: a unique stream name and subject prefix per test (on the shared server,
//! or on a private one from [`crate::PrivateNats`]), and what tests without a database read back
//! from their stream.

use anyhow::Context;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use events::{Event, Subjects};
use futures::StreamExt;
use producers::{ensure_stream, StreamSettings};
use std::time::Duration;

const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// A unique stream name and subject prefix; the stream is deleted on drop.
pub struct TestStream {
    pub url: String,
    pub stream: String,
    pub prefix: String,
    pub client: async_nats::Client,
}

impl TestStream {
    /// Names a unique stream and prefix on the shared server (the caller creates the stream).
    pub async fn new() -> anyhow::Result<Self> {
        let url =
            std::env::var("RUNLEDGER_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
        Self::on(&url).await
    }

    /// Names a unique stream and prefix on the server at `url`.
    pub async fn on(url: &str) -> anyhow::Result<Self> {
        let client = connect(url).await.with_context(|| {
            format!("connecting to NATS at {url} (is nats-server -js running?)")
        })?;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        Ok(Self {
            url: url.to_owned(),
            stream: format!("RLTEST_{}", &tag[..16]).to_uppercase(),
            prefix: format!("rltest_{}", &tag[..16]),
            client,
        })
    }

    pub fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client.clone())
    }

    /// Creates the stream as runledger does (a 2-minute duplicate window); its subjects.
    pub async fn create(&self) -> Subjects {
        let subjects = Subjects::new(&self.prefix).expect("the test prefix is a valid prefix");
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

/// Connects to the server, or to any of several comma-separated ones (a cluster).
pub async fn connect(urls: &str) -> anyhow::Result<async_nats::Client> {
    let servers = urls
        .split(',')
        .map(|url| url.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("NATS URL(s) `{urls}`"))?;
    Ok(async_nats::connect(servers).await?)
}
