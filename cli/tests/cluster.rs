//! Scale-out under failures: a three-node JetStream cluster holds an R3 stream split into eight
//! partitions, and three `runledger worker` instances share them. While a workload of 100
//! companies is ingested, the stream leader's node is killed with SIGKILL (and started again
//! later) and so is one instance. At the end every read-model table equals a clean
//! single-instance projection of the same stream, and the follow-ups the reconcilers published
//! are each in the stream once and exactly those an uninterrupted reconciler decides from the
//! same stream: none lost, none doubled, none decided otherwise. A second test freezes an instance (SIGSTOP) past its leases and proves that, once
//! resumed, it commits nothing.

use async_nats::jetstream::Context;
use events::{Event, EventId, EventType, Subjects};
use producers::workload::{Mix, Workload};
use producers::{ensure_stream, Publisher, PublisherSettings, StreamSettings};
use projector::feed::{Feed, FeedSpec, Reader};
use projector::membership::position_key;
use projector::store::checksum::checksums;
use projector::{Projector, ProjectorSettings};
use reconciler::dry_run::{dry_run, DryRunPlan};
use reconciler::engine::{Policy, SOURCE};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testsupport::{Deadline, PrivateNats, TestDb, TestStream};

const PARTITIONS: u32 = 8;
const TICK: Duration = Duration::from_secs(1);

fn subjects(prefix: &str) -> Subjects {
    Subjects::new(prefix)
        .unwrap()
        .partitioned(PARTITIONS)
        .unwrap()
}

/// A stream on the cluster, partitioned, with `replicas` copies.
async fn stream(js: &Context, name: &str, prefix: &str, replicas: usize) {
    let settings = StreamSettings {
        name: name.to_owned(),
        subjects: subjects(prefix),
        duplicate_window: Duration::from_secs(120),
        replicas,
    };
    ensure_stream(js, &settings).await.unwrap();
}

/// 100 companies' workloads interleaved one event at a time, each partition's clock ticking
/// between them (ticks derived from interval, slot and partition, as the reconcilers derive
/// them).
fn workload(runs_per_company: usize) -> Vec<Event> {
    let mut companies: Vec<Workload> = (0..100)
        .map(|c| Workload::new(&Mix::varied(runs_per_company), 1000 + c))
        .collect();
    let mut events = Vec::new();
    let mut round = 0;
    loop {
        let before = events.len();
        for company in &mut companies {
            events.extend(company.next());
        }
        if events.len() == before {
            break;
        }
        round += 1;
        if round % 40 == 0 {
            let last = events.last().map(|e: &Event| e.time).unwrap();
            let slot = reconciler::tick::slot_of(last, TICK);
            for p in 0..PARTITIONS {
                events.push(reconciler::tick::partition_tick(TICK, slot, Some(p)));
            }
        }
    }
    events
}

async fn publish(publisher: &Publisher, events: &[Event]) {
    for chunk in events.chunks(2000) {
        for result in publisher.publish_all(chunk).await {
            result.expect("published (retried under the same id through a leader election)");
        }
    }
}

fn spawn_worker(nats: &str, db: &TestDb, stream: &str, prefix: &str, name: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_runledger"))
        .arg("worker")
        .env("NATS_URL", nats)
        .env("DATABASE_URL", db.url())
        .env("RUNLEDGER_STREAM", stream)
        .env("RUNLEDGER_SUBJECT_PREFIX", prefix)
        .env("RUNLEDGER_PARTITIONS", PARTITIONS.to_string())
        .env("RUNLEDGER_STREAM_REPLICAS", "3")
        .env("RUNLEDGER_TICK_INTERVAL", "0s")
        .env("RUNLEDGER_INSTANCE_NAME", name)
        .env("RUNLEDGER_LEASE_TTL", "3s")
        .env("RUNLEDGER_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runledger binary runs")
}

/// The last stream sequence among `filter`'s subjects (0: none; unknown while the servers
/// cannot say: the maximum, which nobody has read).
async fn last_in(js: &Context, stream: &str, filter: String) -> u64 {
    projector::feed::last_seq_of(js, stream, &filter)
        .await
        .unwrap_or(u64::MAX)
}

/// Child processes killed (SIGKILL) when the test ends, however it ends.
struct Reaped(Vec<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether every partition's projector and reconciler have read their partition to its end and
/// published every follow-up.
async fn settled(js: &Context, stream: &str, prefix: &str, db: &TestDb) -> bool {
    let subjects = subjects(prefix);
    let Ok(client) = db.client().await else {
        return false;
    };
    for p in 0..PARTITIONS {
        let last = last_in(js, stream, subjects.partition_filter(p)).await as i64;
        let projector = client
            .query_opt(
                "SELECT last_seq FROM projector_positions WHERE consumer = $1",
                &[&position_key("runledger-projector", &subjects, p)],
            )
            .await
            .ok()
            .flatten()
            .map_or(0, |r| r.get::<_, i64>(0));
        let schema = format!("runledger_reconciler_p{p}");
        let reconciler = client
            .query_opt(
                &format!("SELECT last_seq FROM {schema}.reconciler_positions"),
                &[],
            )
            .await
            .ok()
            .flatten()
            .map_or(0, |r| r.get::<_, i64>(0));
        let unpublished: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {schema}.outbox WHERE NOT published"),
                &[],
            )
            .await
            .map_or(1, |r| r.get(0));
        if projector < last || reconciler < last || unpublished > 0 {
            return false;
        }
    }
    true
}

/// Every event of `stream`, in order.
async fn history(js: &Context, stream: &str, prefix: &str) -> Vec<Event> {
    let last = projector::feed::stream_last_seq(js, stream).await.unwrap();
    let spec = FeedSpec {
        stream: stream.to_owned(),
        subjects: subjects(prefix),
        reader: Reader::History,
        batch_size: 2000,
        linger: Duration::from_millis(5),
    };
    let mut feed = Feed::open(js, spec, 0).await.unwrap();
    let mut events = Vec::new();
    let mut seen = 0;
    let deadline = Deadline::after(Duration::from_secs(60));
    while seen < last {
        assert!(!deadline.passed(), "history ended at {seen} before {last}");
        let Some(batch) = feed.next(Duration::from_millis(200)).await.unwrap() else {
            continue;
        };
        for (message, parsed) in batch.iter() {
            seen = message.seq;
            assert!(
                parsed.event().is_some(),
                "seq {} is not an event",
                message.seq
            );
            events.extend(parsed.event().cloned());
        }
    }
    events
}

/// The reconcilers' follow-ups (ticks excluded) as id → JSON, and how many copies there are.
async fn follow_ups(js: &Context, stream: &str, prefix: &str) -> (BTreeMap<EventId, Value>, usize) {
    let found: Vec<Event> = history(js, stream, prefix)
        .await
        .into_iter()
        .filter(|e| e.source == SOURCE && e.event_type() != EventType::ReconcilerTicked)
        .collect();
    let copies = found.len();
    (
        found.into_iter().map(|e| (e.id, e.to_value())).collect(),
        copies,
    )
}

/// One in-process reconciler per partition deciding the whole of `stream` again from the
/// start, uninterrupted and publishing nothing (the dry run: the live batch path on a scratch
/// schema), compared with the follow-ups the stream holds: (follow-ups identical, differences).
async fn uninterrupted_decisions(
    js: &Context,
    stream: &str,
    prefix: &str,
    db: &TestDb,
) -> (usize, Vec<String>) {
    let mut identical = 0;
    let mut differences = Vec::new();
    for p in 0..PARTITIONS {
        let plan = DryRunPlan {
            stream: stream.to_owned(),
            subjects: subjects(prefix),
            policy: Policy::default(),
            from_seq: 1,
            scratch_schema: format!("uninterrupted_p{p}"),
            batch_size: 500,
            partition: Some(p),
        };
        let report = dry_run(&db.pool(), js, &plan).await.unwrap();
        identical += report.identical;
        differences.extend(
            report
                .missing
                .iter()
                .map(|f| format!("p{p} not in the stream: {f:?}")),
        );
        differences.extend(
            report
                .unexpected
                .iter()
                .map(|f| format!("p{p} not decided: {f:?}")),
        );
        differences.extend(
            report
                .changed
                .iter()
                .map(|f| format!("p{p} decided otherwise: {f:?}")),
        );
    }
    (identical, differences)
}

#[tokio::test]
async fn three_instances_on_a_three_node_cluster_lose_and_double_nothing_through_kills() {
    let live_prefix = "rlcl";
    let mappings = vec![subjects(live_prefix).mapping().unwrap()];
    let mut cluster = PrivateNats::start(3, &mappings).await.unwrap();
    let js = TestStream::on(&cluster.url()).await.unwrap().jetstream();
    let live = "RLCLUSTER";
    stream(&js, live, live_prefix, 3).await;
    producers::check_partition_mapping(&js.client(), &subjects(live_prefix))
        .await
        .unwrap();

    let events = workload(24);
    assert!(events.len() >= 20_000, "{} events", events.len());
    let db = TestDb::new().await.unwrap();
    let url = cluster.url();
    let mut instances = Reaped(
        ["a", "b", "c"]
            .iter()
            .map(|name| spawn_worker(&url, &db, live, live_prefix, name))
            .collect(),
    );
    let publisher = Publisher::new(
        js.clone(),
        subjects(live_prefix),
        PublisherSettings::default(),
    );
    let third = events.len() / 3;
    publish(&publisher, &events[..third]).await;

    // The stream leader's node dies mid-ingest; publishing goes on through the election.
    let mut handle = js.get_stream(live).await.unwrap();
    let info = handle.info().await.unwrap();
    let leader = info
        .cluster
        .clone()
        .and_then(|c| c.leader)
        .expect("the stream has a leader");
    let node = cluster
        .node_named(&leader)
        .expect("the leader is one of the nodes");
    cluster.kill(node);
    publish(&publisher, &events[third..2 * third]).await;
    // And so does an instance; the others take its partitions over.
    instances.0[1].kill().unwrap();
    instances.0[1].wait().unwrap();
    let killed = std::time::Instant::now();
    let deadline = Deadline::after(Duration::from_secs(30));
    loop {
        let owners = owners(&db).await;
        if owners.len() == 2 * PARTITIONS as usize && owners.values().all(|o| o != "b") {
            break;
        }
        assert!(
            !deadline.passed(),
            "b's partitions were not taken over: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await; // a poll interval
    }
    let takeover = killed.elapsed();
    // Leases of 3 s, renewed every second: taken over within the lease and a round.
    assert!(
        takeover < Duration::from_secs(5),
        "takeover took {takeover:?}"
    );
    publish(&publisher, &events[2 * third..]).await;
    cluster.restart(node).await.unwrap();

    let deadline = Deadline::after(Duration::from_secs(600));
    while !settled(&js, live, live_prefix, &db).await {
        assert!(!deadline.passed(), "the instances did not catch up");
        for (i, child) in instances.0.iter_mut().enumerate() {
            if i != 1 {
                assert!(child.try_wait().unwrap().is_none(), "instance {i} exited");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await; // a poll interval
    }
    // `runledger status`: the cluster whole again, every partition with a live owner, caught up.
    let status = cli_with(
        &url,
        db.url(),
        live,
        live_prefix,
        PARTITIONS,
        &["status", "--json"],
    );
    assert!(status["cluster"]["leader"].is_string(), "{status}");
    assert_eq!(
        status["cluster"]["replicas"].as_array().unwrap().len(),
        2,
        "{status}"
    );
    let partitions = status["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2 * PARTITIONS as usize, "{status}");
    for p in partitions {
        assert_eq!(p["lag"], 0, "{p}");
        let owner = p["owner"].as_str().unwrap_or_default();
        assert!(owner.starts_with("a@") || owner.starts_with("c@"), "{p}");
    }
    drop(instances);

    // Read models: equal to one clean projector reading the whole stream.
    let reference = TestDb::new().await.unwrap();
    projector::store::migrate::migrate(&mut reference.client().await.unwrap(), "public")
        .await
        .unwrap();
    let mut projector = Projector::start(
        reference.pool(),
        js.clone(),
        ProjectorSettings::new(live, subjects(live_prefix)),
    )
    .await
    .unwrap();
    let last = projector::feed::stream_last_seq(&js, live).await.unwrap() as i64;
    let deadline = Deadline::after(Duration::from_secs(300));
    while projector.position().await.unwrap() < last {
        assert!(!deadline.passed(), "the clean projection did not catch up");
        projector.step(Duration::from_millis(100)).await.unwrap();
    }
    let shared = checksums(&db.client().await.unwrap()).await.unwrap();
    let single = checksums(&reference.client().await.unwrap()).await.unwrap();
    assert_eq!(shared, single, "shared and single projections differ");
    assert!(shared["runs"].0 >= 2400, "{shared:?}");

    // Follow-ups: each once, and exactly what an uninterrupted reconciler decides from the
    // same stream: none lost, none extra, none decided otherwise.
    let (found, found_copies) = follow_ups(&js, live, live_prefix).await;
    assert_eq!(
        found_copies,
        found.len(),
        "the instances published each follow-up once"
    );
    let scratch = TestDb::new().await.unwrap();
    let (identical, differences) = uninterrupted_decisions(&js, live, live_prefix, &scratch).await;
    assert!(
        differences.is_empty(),
        "{} differences, e.g. {:?}",
        differences.len(),
        &differences[..differences.len().min(3)]
    );
    assert_eq!(
        identical,
        found.len(),
        "every follow-up in the stream was decided"
    );
    assert!(found.len() > 100, "{} follow-ups", found.len());
    eprintln!(
        "takeover after kill -9 in {takeover:?}; {} events, {} follow-ups, tables {:?}",
        events.len(),
        found.len(),
        shared
            .iter()
            .map(|(t, (n, _))| (t.clone(), *n))
            .collect::<Vec<_>>()
    );
}

/// (role, partition) → owning instance's name, for every lease held.
async fn owners(db: &TestDb) -> BTreeMap<(String, i32), String> {
    let Ok(client) = db.client().await else {
        return BTreeMap::new();
    };
    client
        .query(
            "SELECT l.role, l.partition, i.name FROM runledger_cluster.leases l
               JOIN runledger_cluster.instances i ON i.instance = l.owner
              WHERE l.expires_at > now()",
            &[],
        )
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| ((r.get(0), r.get(1)), r.get(2)))
                .collect()
        })
        .unwrap_or_default()
}

/// Every partition's projector position row: consumer → (last_seq, writer).
async fn projector_rows(db: &TestDb) -> BTreeMap<String, (i64, Option<uuid::Uuid>)> {
    let client = db.client().await.unwrap();
    client
        .query(
            "SELECT consumer, last_seq, writer FROM projector_positions",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect()
}

/// Waits until instance `name` owns all four leases (two partitions, two readers).
async fn wait_owner(db: &TestDb, name: &str) {
    let deadline = Deadline::after(Duration::from_secs(60));
    loop {
        let owners = owners(db).await;
        if owners.len() == 4 && owners.values().all(|o| o == name) {
            return;
        }
        assert!(
            !deadline.passed(),
            "{name} did not take every partition: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // a poll interval
    }
}

/// Waits until both partitions' projector and reconciler have read everything.
async fn wait_caught_up(js: &Context, stream: &str, prefix: &str, db: &TestDb) {
    let deadline = Deadline::after(Duration::from_secs(120));
    loop {
        let subjects = Subjects::new(prefix).unwrap().partitioned(2).unwrap();
        let mut done = true;
        let rows = projector_rows(db).await;
        let client = db.client().await.unwrap();
        for p in 0..2 {
            let last = last_in(js, stream, subjects.partition_filter(p)).await as i64;
            let projector = rows
                .get(&position_key("runledger-projector", &subjects, p))
                .map_or(0, |r| r.0);
            let reconciler: i64 = client
                .query_opt(
                    &format!("SELECT last_seq FROM runledger_reconciler_p{p}.reconciler_positions"),
                    &[],
                )
                .await
                .ok()
                .flatten()
                .map_or(0, |r| r.get(0));
            done &= projector >= last && reconciler >= last;
        }
        if done {
            return;
        }
        assert!(!deadline.passed(), "the partitions did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await; // a poll interval
    }
}

fn signal(child: &Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

#[tokio::test]
async fn an_instance_frozen_past_its_leases_commits_nothing_once_resumed() {
    let prefix = "rlfz";
    let partitioned = Subjects::new(prefix).unwrap().partitioned(2).unwrap();
    let nats = PrivateNats::start(1, &[partitioned.mapping().unwrap()])
        .await
        .unwrap();
    let js = TestStream::on(&nats.url()).await.unwrap().jetstream();
    let name = "RLFROZEN";
    ensure_stream(
        &js,
        &StreamSettings {
            name: name.into(),
            subjects: partitioned.clone(),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
        },
    )
    .await
    .unwrap();
    let db = TestDb::new().await.unwrap();
    let db_url = db.url().to_owned();
    let spawn = |instance: &str| {
        Command::new(env!("CARGO_BIN_EXE_runledger"))
            .arg("worker")
            .env("NATS_URL", nats.url())
            .env("DATABASE_URL", db_url.clone())
            .env("RUNLEDGER_STREAM", name)
            .env("RUNLEDGER_SUBJECT_PREFIX", prefix)
            .env("RUNLEDGER_PARTITIONS", "2")
            .env("RUNLEDGER_TICK_INTERVAL", "0s")
            .env("RUNLEDGER_INSTANCE_NAME", instance)
            .env("RUNLEDGER_LEASE_TTL", "2s")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("runledger binary runs")
    };
    let publisher = Publisher::new(
        js.clone(),
        partitioned.clone(),
        PublisherSettings::default(),
    );
    let events: Vec<Event> = (0..6)
        .flat_map(|c| Workload::new(&Mix::varied(20), 500 + c))
        .collect();
    let (first, rest) = events.split_at(events.len() / 3);
    let (second, third) = rest.split_at(rest.len() / 2);

    let mut children = Reaped(vec![spawn("frozen")]);
    wait_owner(&db, "frozen").await;
    publish(&publisher, first).await;
    wait_caught_up(&js, name, prefix, &db).await;
    // Every commit to a projector position row from now on is recorded (a rolled-back batch
    // leaves nothing); the frozen instance's workers stamp their writer tokens.
    let frozen_writers: Vec<uuid::Uuid> = projector_rows(&db)
        .await
        .into_values()
        .filter_map(|(_, writer)| writer)
        .collect();
    assert_eq!(frozen_writers.len(), 2);
    db.client()
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE commits (consumer text, writer uuid, last_seq bigint);
             CREATE FUNCTION record_commit() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO commits VALUES (NEW.consumer, NEW.writer, NEW.last_seq);
                 RETURN NEW;
             END $$;
             CREATE TRIGGER record_commit AFTER UPDATE ON projector_positions
                 FOR EACH ROW EXECUTE FUNCTION record_commit();",
        )
        .await
        .unwrap();
    signal(&children.0[0], nix::sys::signal::Signal::SIGSTOP);

    children.0.push(spawn("taker"));
    wait_owner(&db, "taker").await;
    publish(&publisher, second).await;
    wait_caught_up(&js, name, prefix, &db).await;
    // More work waits when the frozen instance resumes: its workers still believe they own
    // the partitions until its next round, and try.
    publish(&publisher, third).await;
    let resumed = chrono::Utc::now();
    signal(&children.0[0], nix::sys::signal::Signal::SIGCONT);
    let deadline = Deadline::after(Duration::from_secs(60));
    loop {
        // The frozen instance has run a round since it was resumed: it knows what it lost.
        let seen: Option<chrono::DateTime<chrono::Utc>> = db
            .client()
            .await
            .unwrap()
            .query_opt(
                "SELECT seen_at FROM runledger_cluster.instances WHERE name = 'frozen'",
                &[],
            )
            .await
            .unwrap()
            .map(|r| r.get(0));
        if seen.is_some_and(|s| s > resumed) {
            break;
        }
        assert!(!deadline.passed(), "the resumed instance ran no round");
        tokio::time::sleep(Duration::from_millis(100)).await; // a poll interval
    }
    wait_caught_up(&js, name, prefix, &db).await;
    let commits: Vec<(String, Option<uuid::Uuid>)> = db
        .client()
        .await
        .unwrap()
        .query("SELECT consumer, writer FROM commits", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(commits.len() >= 2, "the taker committed: {commits:?}");
    for (consumer, writer) in &commits {
        assert!(
            !writer.is_some_and(|w| frozen_writers.contains(&w)),
            "{consumer}: a worker of the frozen instance committed after losing its lease"
        );
    }
    assert!(
        children.0[0].try_wait().unwrap().is_none(),
        "the resumed instance runs on"
    );
    // `runledger status` lists every partition of both readers with its owner, caught up.
    let status = cli(&nats.url(), &db_url, name, prefix, &["status", "--json"]);
    let partitions = status["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 4, "{status}");
    for p in partitions {
        assert_eq!(p["lag"], 0, "{p}");
        // The instances may be handing a partition over (fair shares again): no owner then.
        let owner = p["owner"].as_str().unwrap_or("frozen@");
        assert!(
            owner.starts_with("frozen@") || owner.starts_with("taker@"),
            "{p}"
        );
    }
    drop(children);
    // And what was committed is exactly a clean projection.
    let reference = TestDb::new().await.unwrap();
    projector::store::migrate::migrate(&mut reference.client().await.unwrap(), "public")
        .await
        .unwrap();
    let mut projector = Projector::start(
        reference.pool(),
        js.clone(),
        ProjectorSettings::new(name, partitioned.clone()),
    )
    .await
    .unwrap();
    let last = projector::feed::stream_last_seq(&js, name).await.unwrap() as i64;
    let deadline = Deadline::after(Duration::from_secs(120));
    while projector.position().await.unwrap() < last {
        assert!(!deadline.passed(), "the clean projection did not catch up");
        projector.step(Duration::from_millis(100)).await.unwrap();
    }
    assert_eq!(
        checksums(&db.client().await.unwrap()).await.unwrap(),
        checksums(&reference.client().await.unwrap()).await.unwrap()
    );
    // A replay rebuilds both partitions, each to its own position, and swaps once.
    let replayed = cli(&nats.url(), &db_url, name, prefix, &["replay", "--json"]);
    assert_eq!(replayed["outcome"], "swapped", "{replayed}");
    for table in replayed["tables"].as_array().unwrap() {
        assert_eq!(table["equal"], true, "{table}");
    }
    assert_eq!(
        checksums(&db.client().await.unwrap()).await.unwrap(),
        checksums(&reference.client().await.unwrap()).await.unwrap()
    );
    // The dry run decides every partition as its reconciler did: nothing missing or extra.
    let dry = Command::new(env!("CARGO_BIN_EXE_runledger"))
        .args(["reconcile", "--dry-run"])
        .env("NATS_URL", nats.url())
        .env("DATABASE_URL", &db_url)
        .env("RUNLEDGER_STREAM", name)
        .env("RUNLEDGER_SUBJECT_PREFIX", prefix)
        .env("RUNLEDGER_PARTITIONS", "2")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "the dry run differs: {printed}\n{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    for partition in ["partition 0:", "partition 1:"] {
        assert!(printed.contains(partition), "{printed}");
    }
    assert_eq!(printed.matches("dry run of causes").count(), 2, "{printed}");
}

/// Runs a `runledger` command on the two-partition stream; its last line of JSON.
fn cli(nats: &str, db: &str, stream: &str, prefix: &str, args: &[&str]) -> Value {
    cli_with(nats, db, stream, prefix, 2, args)
}

/// Runs a `runledger` command on a stream of `partitions` partitions; its last line of JSON.
fn cli_with(
    nats: &str,
    db: &str,
    stream: &str,
    prefix: &str,
    partitions: u32,
    args: &[&str],
) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_runledger"))
        .args(args)
        .env("NATS_URL", nats)
        .env("DATABASE_URL", db)
        .env("RUNLEDGER_STREAM", stream)
        .env("RUNLEDGER_SUBJECT_PREFIX", prefix)
        .env("RUNLEDGER_PARTITIONS", partitions.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no JSON from {args:?}: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}
