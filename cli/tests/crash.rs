//! Exactly once under crashes: the projector is killed with SIGKILL again and again while events
//! keep arriving; afterwards every read-model table must be identical (row counts and checksums)
//! to a clean, uninterrupted projection of the same stream. On an unpartitioned stream the
//! process killed is `runledger project`; with `RUNLEDGER_TEST_PARTITIONS` > 1 it is a
//! `runledger worker` instance running every partition's projector (and reconciler, whose
//! follow-ups are events like any other), each new instance taking the partitions over once the
//! killed one's leases expire. `runledger project` itself refuses a partitioned stream, naming
//! the worker.

use producers::workload::{interleaved, Mix};
use projector::store::checksum::checksums;
use std::process::Child;
use std::time::Duration;
use testsupport::{step_to, Deadline, Kit, Projectors, TestDb};

/// The projector of `kit`'s stream as a process: `runledger project`, or with partitions a
/// `runledger worker` instance.
fn spawn_projector(kit: &Kit) -> Child {
    kit.reader_process(env!("CARGO_BIN_EXE_runledger"), "project", "crash-test")
        .env("RUNLEDGER_TICK_INTERVAL", "0s")
        .env("RUNLEDGER_BATCH_SIZE", "7")
        .env("RUNLEDGER_BATCH_LINGER", "1ms")
        .spawn()
        .expect("runledger binary runs")
}

/// The stream sequence up to which the projector process has folded everything.
async fn position(kit: &Kit) -> i64 {
    let Ok(client) = kit.db.client().await else {
        return 0;
    };
    Projectors::stored_position(&client, &kit.js(), &kit.projector_settings()).await
}

#[tokio::test]
async fn repeated_kill_9_leaves_tables_identical_to_a_clean_projection() {
    let kit = Kit::new().await;
    // Ten companies, 150 runs.
    let events = interleaved(&Mix::varied(15), 7..17);
    let (first, second) = events.split_at(events.len() / 2);
    kit.publish(first).await;
    // bad input in the middle of the stream
    let nil = uuid::Uuid::nil();
    kit.publish_raw(&format!("{}.{nil}.run.{nil}", kit.ts.prefix), b"{broken")
        .await;

    let mut kills = 0;
    let mut last_seen = 0;
    let mut published_rest = false;
    loop {
        let mut child = spawn_projector(&kit);
        let target = last_seen + 60;
        let deadline = Deadline::after(Duration::from_secs(30));
        let reached = loop {
            let p = position(&kit).await;
            let done = published_rest && p >= kit.last_seq().await as i64;
            if p >= target || done || deadline.passed() {
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
            kit.publish(second).await;
            published_rest = true;
        }
        let last = kit.last_seq().await as i64;
        if published_rest && reached >= last {
            break;
        }
        assert!(kills < 200, "no progress: position {reached} of {last}");
    }
    assert!(kills >= 5, "the projector was killed {kills} times");
    eprintln!("{kills} kills");

    let clean = TestDb::new().await.unwrap();
    projector::store::migrate::migrate(&mut clean.client().await.unwrap(), "public")
        .await
        .unwrap();
    let mut reference = Projectors::start(
        clean.pool_of(2 * kit.partitions() as usize + 4),
        kit.js(),
        kit.projector_settings(),
    )
    .await;
    step_to(&mut reference, kit.last_seq().await).await;
    let crashed_sums = checksums(&kit.db.client().await.unwrap()).await.unwrap();
    let clean_sums = checksums(&clean.client().await.unwrap()).await.unwrap();
    assert_eq!(
        crashed_sums, clean_sums,
        "crashed and clean projections differ"
    );
    assert_eq!(crashed_sums["dead_letters"].0, 1);
    assert!(crashed_sums["runs"].0 >= 150);
    assert!(crashed_sums["document_revisions"].0 > 0);
}
