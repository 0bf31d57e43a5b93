//! The fault suite: `runledger up` against its own private nats-server and PostgreSQL under a
//! steady workload, and one fault per test — PostgreSQL stopped (immediate) for 5 s and for 60 s,
//! nats-server killed for 4 s and for 30 s with no traffic, the database's disk filled and freed.
//! After each: the process never exited, the projector and the reconciler caught up with the
//! stream, the outbox is empty, every read-model table equals a clean projection of the same
//! stream, and `/healthz` said what was wrong while it lasted. The stream is partitioned as
//! `RUNLEDGER_TEST_PARTITIONS` says (the private nats-server then maps the partitions, and `up`
//! runs a projector and a reconciler per partition under its leases). (The fault's length is
//! the one deliberate wait here; everything else polls with deadlines.)

use events::{Event, Subjects};
use producers::workload::{interleaved, Mix};
use producers::{Publisher, PublisherSettings};
use projector::store::checksum::checksums;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testsupport::{eventually, NatsServer, PrivatePostgres};
use tokio::sync::watch;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What is done to the servers.
#[derive(Clone, Copy, Debug)]
enum Fault {
    PostgresDown(Duration),
    NatsDown(Duration),
    DiskFull,
}

impl Fault {
    /// What `/healthz` must report at some point while the fault lasts (as [`watch_health`]
    /// records it). NATS down is `degraded`, or `stalled` when work has waited longer than the
    /// stall limit meanwhile (a follow-up in the outbox, say): stalled outranks degraded, and
    /// both say NATS does not answer.
    fn reported_as(self) -> &'static [&'static str] {
        match self {
            Fault::PostgresDown(_) => &["unavailable"],
            Fault::NatsDown(_) => &["degraded, NATS down", "stalled, NATS down"],
            Fault::DiskFull => &["stalled"],
        }
    }

    /// What runledger up's log must show of the fault (that it was felt, and retried).
    fn logged_as(self) -> &'static str {
        match self {
            Fault::PostgresDown(_) => "projector step failed",
            Fault::NatsDown(_) => "",
            Fault::DiskFull => "No space left on device",
        }
    }
}

/// `runledger up` on private servers, with a steady workload.
struct Setup {
    pg: PrivatePostgres,
    nats: NatsServer,
    /// The default subjects, partitioned as `RUNLEDGER_TEST_PARTITIONS` says.
    subjects: Subjects,
    up: Child,
    log: std::path::PathBuf,
    http: String,
    client: reqwest::Client,
}

impl Setup {
    async fn start(small_disk: bool) -> Self {
        let pg = if small_disk {
            PrivatePostgres::on_small_disk(96).await
        } else {
            PrivatePostgres::start().await
        }
        .expect("a private PostgreSQL starts");
        pg.create_database("runledger").await.unwrap();
        pg.create_database("clean").await.unwrap();
        let subjects = Subjects::default()
            .partitioned(testsupport::partitions())
            .unwrap();
        let nats = NatsServer::mapping(&subjects)
            .await
            .expect("a private nats-server starts");
        let port = free_port();
        let log =
            std::env::temp_dir().join(format!("rl-faults-{}.log", uuid::Uuid::new_v4().simple()));
        let up = Command::new(env!("CARGO_BIN_EXE_runledger"))
            .arg("up")
            .env("NATS_URL", nats.url())
            .env("DATABASE_URL", pg.url("runledger"))
            .env("RUNLEDGER_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("RUNLEDGER_STALL_AFTER", "2s")
            .env("RUNLEDGER_TICK_INTERVAL", "0s")
            .env("RUNLEDGER_PARTITIONS", subjects.partitions().to_string())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("runledger up starts");
        let mut setup = Self {
            pg,
            nats,
            subjects,
            up,
            log,
            http: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        };
        eventually(
            Duration::from_secs(60),
            "runledger up to answer /healthz",
            || {
                let setup = &setup;
                async move { setup.health().await.filter(|h| h["status"] == "ok") }
            },
        )
        .await;
        setup.assert_running();
        setup
    }

    async fn health(&self) -> Option<Value> {
        let reply = self
            .client
            .get(format!("{}/healthz", self.http))
            .send()
            .await
            .ok()?;
        reply.json().await.ok()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.up.try_wait().unwrap() {
            panic!(
                "runledger up exited ({status}):\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    async fn publisher(&self) -> Publisher {
        let client = async_nats::connect(self.nats.url()).await.unwrap();
        Publisher::new(
            async_nats::jetstream::new(client),
            self.subjects.clone(),
            PublisherSettings::default(),
        )
    }
}

/// Publishes `events` at about 100 per second while `paused` is false; an event that cannot be
/// published (NATS down) is tried again, with the same id, until it is. Returns when all are
/// published or `stop` turns true.
async fn workload(
    publisher: Publisher,
    events: Vec<Event>,
    mut paused: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
) -> usize {
    let mut published = 0;
    for chunk in events.chunks(10) {
        for event in chunk {
            loop {
                if *stop.borrow() {
                    return published;
                }
                let _ = paused.wait_for(|p| !*p).await;
                match publisher.publish(event).await {
                    Ok(_) => break,
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await, // retry pause
                }
            }
            published += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // the workload's pace
    }
    published
}

/// Polls `/healthz` every 100 ms and keeps every status it saw.
/// What a `/healthz` answer says, as the fault checks read it: its status, and whether NATS was
/// down.
fn observed(health: &Value) -> Option<String> {
    let status = health["status"].as_str()?;
    Some(match health["nats"]["ok"] == false {
        true => format!("{status}, NATS down"),
        false => status.to_owned(),
    })
}

fn watch_health(setup: &Setup, stop: watch::Receiver<bool>) -> Arc<Mutex<BTreeSet<String>>> {
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let (client, url, into) = (
        setup.client.clone(),
        format!("{}/healthz", setup.http),
        seen.clone(),
    );
    tokio::spawn(async move {
        while !*stop.borrow() {
            let status = match client.get(&url).send().await {
                Ok(reply) => reply
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|h| observed(&h))
                    .unwrap_or_else(|| "unreadable".into()),
                Err(_) => "no answer".into(),
            };
            into.lock().unwrap().insert(status);
            tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
        }
    });
    seen
}

async fn survives(fault: Fault) {
    let mut setup = Setup::start(matches!(fault, Fault::DiskFull)).await;
    // Eight companies, 200 runs: with partitions, several partitions work.
    let events = interleaved(&Mix::varied(25), 7..15);
    let total = events.len();
    let (pause, paused) = watch::channel(false);
    let (stop, stopped) = watch::channel(false);
    let load = tokio::spawn(workload(
        setup.publisher().await,
        events,
        paused,
        stopped.clone(),
    ));
    let seen = watch_health(&setup, stopped);

    // Under way first.
    eventually(Duration::from_secs(60), "the projector under way", || {
        let setup = &setup;
        async move {
            let h = setup.health().await?;
            (h["projector"]["position"].as_i64()? > 200).then_some(())
        }
    })
    .await;

    match fault {
        Fault::PostgresDown(length) => {
            setup.pg.stop_immediate();
            tokio::time::sleep(length).await; // the outage itself
            setup.assert_running();
            setup.pg.start_again().await.unwrap();
        }
        Fault::NatsDown(length) => {
            pause.send(true).unwrap();
            setup.nats.stop();
            tokio::time::sleep(length).await; // the outage itself
                                              // At least that long, and until /healthz has answered while it lasts (on a loaded
                                              // machine its probes, 2 s each while NATS is away, may not have yet).
            eventually(
                Duration::from_secs(60),
                "/healthz to answer while NATS is down",
                || {
                    let (setup, seen) = (&setup, &seen);
                    async move {
                        let h = setup.health().await?;
                        seen.lock().unwrap().insert(observed(&h)?);
                        (h["nats"]["ok"] == false).then_some(())
                    }
                },
            )
            .await;
            setup.assert_running();
            setup.nats.restart().await.unwrap();
            pause.send(false).unwrap();
        }
        Fault::DiskFull => {
            let filler = setup.pg.fill_disk().unwrap();
            eventually(
                Duration::from_secs(60),
                "/healthz to report the stall",
                || {
                    let setup = &setup;
                    async move {
                        let h = setup.health().await?;
                        (h["status"] == "stalled").then_some(())
                    }
                },
            )
            .await;
            setup.assert_running();
            std::fs::remove_file(filler).unwrap();
        }
    }

    // Everything published, then everything read, decided, published and projected.
    let published = tokio::time::timeout(Duration::from_secs(180), load)
        .await
        .expect("the workload finishes")
        .unwrap();
    assert_eq!(published, total);
    let settled = eventually(
        Duration::from_secs(120),
        "lag 0 and an empty outbox",
        || {
            let setup = &setup;
            async move {
                let h = setup.health().await?;
                let done = h["status"] == "ok"
                    && h["projector"]["lag"] == 0
                    && h["reconciler"]["lag"] == 0
                    && h["reconciler"]["outbox_unpublished"] == 0;
                done.then_some(h)
            }
        },
    )
    .await;
    stop.send(true).unwrap();
    setup.assert_running();
    let seen = seen.lock().unwrap().clone();
    assert!(
        fault.reported_as().iter().any(|said| seen.contains(*said)),
        "{fault:?}: /healthz never said any of {:?} (saw {seen:?})",
        fault.reported_as()
    );

    // A clean projection of the same stream, in another database, equals what up projected.
    let last = settled["projector"]["stream_last_seq"].as_i64().unwrap() as u64;
    let clean_pool = pool(
        &setup.pg.url("clean"),
        2 * setup.subjects.partitions() as usize + 2,
    );
    {
        let mut client = clean_pool.get().await.unwrap();
        projector::store::migrate::migrate(&mut client, "public")
            .await
            .unwrap();
    }
    let client = async_nats::connect(setup.nats.url()).await.unwrap();
    let mut settings =
        projector::ProjectorSettings::new(producers::DEFAULT_STREAM, setup.subjects.clone());
    settings.consumer = "clean".into();
    let mut clean = testsupport::Projectors::start(
        clean_pool.clone(),
        async_nats::jetstream::new(client),
        settings,
    )
    .await;
    testsupport::step_to(&mut clean, last).await;
    let up_pool = pool(&setup.pg.url("runledger"), 2);
    let projected = checksums(&**up_pool.get().await.unwrap()).await.unwrap();
    let expected = checksums(&**clean_pool.get().await.unwrap()).await.unwrap();
    assert_eq!(
        projected, expected,
        "{fault:?}: the read models differ from a clean projection"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(setup.up.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = setup.up.wait().unwrap();
    let log = std::fs::read_to_string(&setup.log).unwrap_or_default();
    let _ = std::fs::remove_file(&setup.log);
    assert!(
        status.success(),
        "runledger up stopped with {status}:\n{log}"
    );
    assert!(
        log.contains(fault.logged_as()),
        "{fault:?}: the log does not show `{}`:\n{log}",
        fault.logged_as()
    );
}

fn pool(url: &str, size: usize) -> deadpool_postgres::Pool {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    deadpool_postgres::Pool::builder(manager)
        .max_size(size)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_for_5_seconds() {
    survives(Fault::PostgresDown(Duration::from_secs(5))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_for_60_seconds() {
    survives(Fault::PostgresDown(Duration::from_secs(60))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_for_4_seconds_without_traffic() {
    survives(Fault::NatsDown(Duration::from_secs(4))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_for_30_seconds_without_traffic() {
    survives(Fault::NatsDown(Duration::from_secs(30))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_disk_full_then_freed() {
    survives(Fault::DiskFull).await;
}
