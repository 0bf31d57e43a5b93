//! Scratch resources for a benchmark: a uniquely named database and stream, removed on
//! [`Scratch::cleanup`].

use crate::db;
use crate::settings::{DbArgs, NatsArgs};
use events::Subjects;
use producers::{ensure_stream, StreamSettings};
use std::time::Duration;

pub struct Scratch {
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub stream: String,
    pub subjects: Subjects,
    pub database_url: String,
    admin_url: String,
    database: String,
}

fn tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A unique subject prefix for a scratch stream (a server's partition mapping names it, so it
/// may have to be known before the stream exists).
pub fn prefix() -> String {
    format!("rlbench_{}", tag())
}

impl Scratch {
    /// An unpartitioned, unreplicated stream and a database.
    pub async fn new(nats: &NatsArgs, db_args: &DbArgs) -> anyhow::Result<Self> {
        Self::with_stream(nats, db_args, Subjects::new(&prefix())?, 1).await
    }

    /// A stream of `subjects` (their prefix and partitions) with `replicas` copies, and a
    /// database. On a JetStream cluster the stream's leader may still be being elected when
    /// this returns: see [`Scratch::wait_for_leader`].
    pub async fn with_stream(
        nats: &NatsArgs,
        db_args: &DbArgs,
        subjects: Subjects,
        replicas: usize,
    ) -> anyhow::Result<Self> {
        let client = nats.connect("runledger bench").await?;
        let js = async_nats::jetstream::new(client.clone());
        let tag = tag();
        let stream = format!("RLBENCH_{}", tag.to_uppercase());
        ensure_stream(
            &js,
            &StreamSettings {
                name: stream.clone(),
                subjects: subjects.clone(),
                duplicate_window: Duration::from_secs(120),
                replicas,
            },
        )
        .await?;
        let admin_url = db_args.url_or_default();
        let database = format!("runledger_bench_{tag}");
        let mut config: tokio_postgres::Config = admin_url.parse()?;
        config.dbname("postgres");
        let (admin, conn) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await?;
        let database_url = with_database(&admin_url, &database)?;
        Ok(Self {
            client,
            js,
            stream,
            subjects,
            database_url,
            admin_url,
            database,
        })
    }

    /// Waits until the stream has a leader and `replicas - 1` current followers (a new
    /// replicated stream elects its leader after it is created), polling until a deadline.
    pub async fn wait_for_leader(&self, replicas: usize, within: Duration) -> anyhow::Result<()> {
        if replicas <= 1 {
            return Ok(());
        }
        let deadline = std::time::Instant::now() + within;
        let mut seen = String::from("no answer");
        loop {
            match self.js.get_stream(&self.stream).await {
                Ok(mut stream) => match stream.info().await {
                    Ok(info) => {
                        if let Some(cluster) = &info.cluster {
                            let current = cluster.replicas.iter().filter(|r| r.current).count();
                            if cluster.leader.is_some() && current + 1 >= replicas {
                                return Ok(());
                            }
                            seen = format!(
                                "leader {:?}, {current} of {} followers current",
                                cluster.leader,
                                replicas - 1
                            );
                        }
                    }
                    Err(e) => seen = e.to_string(),
                },
                Err(e) => seen = e.to_string(),
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "stream {} was not led with {replicas} current replicas within {within:?} \
                 (last seen: {seen})",
                self.stream
            );
            tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
        }
    }

    /// A `Publisher` with default settings on the scratch stream.
    pub fn publisher(&self) -> producers::Publisher {
        producers::Publisher::new(
            self.js.clone(),
            self.subjects.clone(),
            producers::PublisherSettings::default(),
        )
    }

    /// A migrated pool on the scratch database.
    pub async fn pool(&self) -> anyhow::Result<deadpool_postgres::Pool> {
        let pool = db::pool(&self.database_url, "public", 8)?;
        let mut client = pool.get().await?;
        projector::store::migrate::migrate(&mut client, "public").await?;
        Ok(pool)
    }

    /// Deletes the stream and drops the database. The stream's deletion waits 5 s at most
    /// (its server may be gone already, e.g. a private one stopped by the same Ctrl-C).
    pub async fn cleanup(self) {
        let _ =
            tokio::time::timeout(Duration::from_secs(5), self.js.delete_stream(&self.stream)).await;
        if let Ok(mut config) = self.admin_url.parse::<tokio_postgres::Config>() {
            config.dbname("postgres");
            if let Ok((admin, conn)) = config.connect(tokio_postgres::NoTls).await {
                tokio::spawn(conn);
                let _ = admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.database
                    ))
                    .await;
            }
        }
    }
}

/// `url` with its database replaced (key/value and URL forms).
fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.dbname(database);
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let mut parts = vec![format!("host={}", hosts.join(","))];
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!("password={}", String::from_utf8_lossy(password)));
    }
    parts.push(format!("dbname={database}"));
    Ok(parts.join(" "))
}
