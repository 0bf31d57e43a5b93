//! JetStream isolation: a unique stream name and subject prefix per test on the shared server,
//! or a private `nats-server` on a free port for tests that must stop or restart the server;
//! and what tests without a database read back from their stream.

use anyhow::Context;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use events::{Event, Subjects};
use futures::StreamExt;
use producers::{ensure_stream, StreamSettings};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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
        let client = async_nats::connect(url).await.with_context(|| {
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
                if let Ok(client) = async_nats::connect(&url).await {
                    let js = async_nats::jetstream::new(client.clone());
                    let _ = js.delete_stream(&stream).await;
                    let _ = client.flush().await;
                }
            });
        })
        .join();
    }
}

/// A private `nats-server -js` on a free loopback port with its own store; killed on drop.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
}

impl NatsServer {
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let store =
            std::env::temp_dir().join(format!("rltest-nats-{}", uuid::Uuid::new_v4().simple()));
        let mut server = Self {
            child: None,
            port,
            store,
        };
        server.spawn()?;
        server.wait_ready().await?;
        Ok(server)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting nats-server (is it installed? the README's test command installs it)",
            )?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let url = self.url();
        crate::eventually(
            Duration::from_secs(10),
            "the private nats-server to accept connections",
            || {
                let url = url.clone();
                async move {
                    let client = async_nats::connect(&url).await.ok()?;
                    // JetStream answers its API (query_account wants fields 2.9 does not send).
                    let reply = client.request("$JS.API.INFO", "".into()).await.ok()?;
                    String::from_utf8_lossy(&reply.payload)
                        .contains("account_info_response")
                        .then_some(())
                }
            },
        )
        .await;
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (kill -9) without removing its store.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()?;
        self.wait_ready().await
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
