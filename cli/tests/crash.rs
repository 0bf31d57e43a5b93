//! Exactly once under crashes: `runledger project` is killed with SIGKILL again and again while
//! events keep arriving; afterwards every read-model table must be identical (row counts and
//! checksums) to a clean, uninterrupted projection of the same stream.

use events::Subjects;
use producers::workload::{generate, Mix};
use producers::{ensure_stream, Publisher, PublisherSettings, StreamSettings};
use projector::store::checksum::checksums;
use projector::{Projector, ProjectorSettings};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testsupport::{Deadline, TestDb, TestStream};

fn spawn_projector(ts: &TestStream, db: &TestDb) -> Child {
    Command::new(env!("CARGO_BIN_EXE_runledger"))
        .arg("project")
        .env("NATS_URL", &ts.url)
        .env("DATABASE_URL", db.url())
        .env("RUNLEDGER_STREAM", &ts.stream)
        .env("RUNLEDGER_SUBJECT_PREFIX", &ts.prefix)
        .env("RUNLEDGER_BATCH_SIZE", "7")
        .env("RUNLEDGER_BATCH_LINGER", "1ms")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runledger binary runs")
}

async fn position(db: &TestDb) -> i64 {
    let client = db.client().await.unwrap();
    client
        .query_opt("SELECT last_seq FROM projector_positions", &[])
        .await
        .ok()
        .flatten()
        .map_or(0, |r| r.get(0))
}

#[tokio::test]
async fn repeated_kill_9_leaves_tables_identical_to_a_clean_projection() {
    let ts = TestStream::unpartitioned().await.unwrap();
    let subjects = Subjects::new(&ts.prefix).unwrap();
    let js = ts.jetstream();
    let settings = StreamSettings {
        name: ts.stream.clone(),
        subjects: subjects.clone(),
        duplicate_window: Duration::from_secs(120),
        replicas: 1,
    };
    ensure_stream(&js, &settings).await.unwrap();
    let publisher = Publisher::new(js.clone(), subjects.clone(), PublisherSettings::default());
    let events = generate(&Mix::varied(150), 7);
    let (first, second) = events.split_at(events.len() / 2);
    for r in publisher.publish_all(first).await {
        r.unwrap();
    }
    // bad input in the middle of the stream
    let bad_subject = format!(
        "{}.{}.run.{}",
        ts.prefix,
        uuid::Uuid::nil(),
        uuid::Uuid::nil()
    );
    js.publish(bad_subject, "{broken".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let crashed = TestDb::new().await.unwrap();
    let mut kills = 0;
    let mut last_seen = 0;
    let mut published_rest = false;
    loop {
        let mut child = spawn_projector(&ts, &crashed);
        let target = last_seen + 60;
        let deadline = Deadline::after(Duration::from_secs(30));
        let reached = loop {
            let p = position(&crashed).await;
            if p >= target || deadline.passed() {
                break p;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "projector exited by itself"
            );
            tokio::time::sleep(Duration::from_millis(5)).await; // a poll interval, not a wait for a result
        };
        child.kill().unwrap(); // SIGKILL, wherever it is
        child.wait().unwrap();
        kills += 1;
        last_seen = reached;
        if kills == 3 && !published_rest {
            for r in publisher.publish_all(second).await {
                r.unwrap();
            }
            published_rest = true;
        }
        let last = projector::feed::stream_last_seq(&js, &ts.stream)
            .await
            .unwrap() as i64;
        if published_rest && reached >= last {
            break;
        }
        assert!(kills < 200, "no progress: position {reached} of {last}");
    }
    assert!(kills >= 5, "the projector was killed {kills} times");

    let clean = TestDb::new().await.unwrap();
    projector::store::migrate::migrate(&mut clean.client().await.unwrap(), "public")
        .await
        .unwrap();
    let mut reference = Projector::start(
        clean.pool(),
        js.clone(),
        ProjectorSettings::new(&ts.stream, subjects.clone()),
    )
    .await
    .unwrap();
    let last = projector::feed::stream_last_seq(&js, &ts.stream)
        .await
        .unwrap() as i64;
    let deadline = Deadline::after(Duration::from_secs(60));
    while reference.position().await.unwrap() < last {
        assert!(!deadline.passed(), "the clean projection did not catch up");
        reference.step(Duration::from_millis(100)).await.unwrap();
    }
    let crashed_sums = checksums(&crashed.client().await.unwrap()).await.unwrap();
    let clean_sums = checksums(&clean.client().await.unwrap()).await.unwrap();
    assert_eq!(
        crashed_sums, clean_sums,
        "crashed and clean projections differ"
    );
    assert_eq!(crashed_sums["dead_letters"].0, 1);
    assert!(crashed_sums["runs"].0 >= 150);
    assert!(crashed_sums["document_revisions"].0 > 0);
}
