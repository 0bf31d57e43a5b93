//! `runledger migrate` and `runledger status` through the binary, on a private database and
//! stream (partitioned as `RUNLEDGER_TEST_PARTITIONS` says): migrate brings the read models and
//! the reconciler's schema (every partition's) up to date (again: nothing to do), and status
//! tells where the reconciler is — not started, decided but not published, published but not
//! read back — as a whole and, with partitions, partition by partition, honouring
//! `--reconciler-schema` / `--reconciler-name`; status and replay refuse a partition count other
//! than the stream's.

use events::Event;
use reconciler::engine::Policy;
use reconciler::migrate::partition_schemas;
use reconciler::ReconcilerSettings;
use serde_json::{json, Value};
use std::process::{Command, Output};
use std::time::Duration;
use testsupport::{Deadline, Kit, Reconcilers, TestDb, TestStream};

fn runledger(db: &TestDb, ts: &TestStream, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runledger"))
        .args(args)
        .env("NATS_URL", &ts.url)
        .env("DATABASE_URL", db.url())
        .env("RUNLEDGER_STREAM", &ts.stream)
        .env("RUNLEDGER_SUBJECT_PREFIX", &ts.prefix)
        .env("RUNLEDGER_PARTITIONS", ts.partitions.to_string())
        .env_remove("RUNLEDGER_SCHEMA")
        .env_remove("RUNLEDGER_RECONCILER_SCHEMA")
        .env_remove("RUNLEDGER_RECONCILER_NAME")
        .output()
        .unwrap()
}

fn stdout_of(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `runledger status --json [args]`, parsed.
fn status(db: &TestDb, ts: &TestStream, args: &[&str]) -> Value {
    let mut all = vec!["status", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(stdout_of(&runledger(db, ts, &all)).trim()).unwrap()
}

/// A varied history of five companies (with partitions, several partitions decide) and how
/// many follow-ups the reconciler decides for it (the in-memory simulator runs the same rules),
/// before any of them is read back.
fn history() -> (Vec<Event>, i64) {
    let events = producers::workload::interleaved(&producers::workload::Mix::varied(8), 7..12);
    let mut sim = reconciler::sim::Simulator::new(Policy::default());
    let decided = events.iter().map(|e| sim.feed(e).len() as i64).sum();
    (events, decided)
}

/// `status --json`'s rows of `reader`'s partitions.
fn rows<'a>(status: &'a Value, reader: &str) -> Vec<&'a Value> {
    status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["reader"] == reader)
        .collect()
}

/// The sum of `field` over `rows`.
fn sum(rows: &[&Value], field: &str) -> i64 {
    rows.iter().map(|r| r[field].as_i64().unwrap()).sum()
}

#[tokio::test]
async fn status_shows_the_reconcilers_position_lag_and_unpublished_follow_ups() {
    let kit = Kit::new().await;
    let partitioned = kit.partitions() > 1;

    // No reconciler schema yet: said plainly, not an error.
    let text = stdout_of(&runledger(&kit.db, &kit.ts, &["status"]));
    let not_started = if partitioned {
        "reconciler: not started (no partition's schema `runledger_reconciler_p<n>` exists yet)"
    } else {
        "reconciler: not started (schema `runledger_reconciler` does not exist yet)"
    };
    assert!(text.contains(not_started), "{text}");
    let s = status(&kit.db, &kit.ts, &[]);
    assert_eq!(
        s["reconciler"],
        json!({"schema": "runledger_reconciler", "name": "runledger-reconciler", "started": false})
    );

    // Decided, not published: the follow-ups wait in the outbox(es).
    let (events, decided) = history();
    assert!(decided > 0, "the history calls for follow-ups");
    kit.publish(&events).await;
    let inputs = kit.last_seq().await as i64;
    let mut reconciler = kit.reconciler(Policy::default()).await;
    let deadline = Deadline::after(Duration::from_secs(30));
    while reconciler.position().await.unwrap() < inputs {
        assert!(!deadline.passed(), "the reconciler did not reach {inputs}");
        reconciler.step(Duration::from_millis(200)).await.unwrap();
    }
    let s = status(&kit.db, &kit.ts, &[]);
    let r = &s["reconciler"];
    assert_eq!(r["started"], true);
    assert_eq!(r["stream"], json!(kit.ts.stream));
    assert_eq!(r["position"], inputs);
    assert_eq!(r["lag"], 0);
    assert_eq!(r["events_seen"], inputs);
    assert_eq!(r["follow_ups"], decided);
    assert_eq!(r["outbox_unpublished"], decided);
    // Nothing projected: the projector is behind by every event, in every partition.
    assert_eq!(
        (&s["projector_position"], &s["lag"]),
        (&json!(0), &json!(inputs))
    );
    if partitioned {
        let reconcilers = rows(&s, "reconciler");
        assert_eq!(reconcilers.len(), kit.partitions() as usize, "{s}");
        assert_eq!(sum(&reconcilers, "lag"), 0, "{s}");
        assert_eq!(sum(&reconcilers, "follow_ups"), decided, "{s}");
        assert_eq!(sum(&reconcilers, "outbox_unpublished"), decided, "{s}");
        assert!(
            reconcilers.iter().filter(|r| r["follow_ups"] != 0).count() > 1,
            "several partitions decide: {s}"
        );
        let projectors = rows(&s, "projector");
        assert_eq!(projectors.len(), kit.partitions() as usize, "{s}");
        assert_eq!(sum(&projectors, "lag"), inputs, "{s}");
        assert!(projectors.iter().all(|p| p["position"] == 0), "{s}");
    } else {
        assert_eq!(s["partitions"], json!([]));
    }

    // Published, not read back yet: the outbox is empty and the reconciler behind by as many.
    assert_eq!(reconciler.drain_outboxes().await.unwrap() as i64, decided);
    let text = stdout_of(&runledger(&kit.db, &kit.ts, &["status"]));
    let mut lines = vec![
        format!("reconciler position {inputs}"),
        format!("reconciler lag      {decided}"),
        format!("follow-ups decided  {decided}"),
        "outbox unpublished  0".to_owned(),
    ];
    if partitioned {
        // A line per partition of each reader, nobody owning it (no instance runs).
        let s = status(&kit.db, &kit.ts, &[]);
        for p in 0..kit.partitions() {
            for reader in ["projector", "reconciler"] {
                let row = rows(&s, reader)[p as usize];
                lines.push(format!(
                    "{reader:<10} p{p:<3}  owner {:<32} position {:<10} lag ",
                    "none",
                    row["position"].as_i64().unwrap()
                ));
            }
        }
        // A partition's lag is the count of its own events after its position as nats-server
        // reports it; nats-server 2.9's count for a filtered consumer starting mid-stream
        // sometimes runs a few over (docs/operations.md), so only its floor is exact here.
        assert!(sum(&rows(&s, "reconciler"), "lag") >= decided, "{s}");
        assert_eq!(
            text.lines()
                .filter(|l| l.ends_with("unpublished 0"))
                .count(),
            kit.partitions() as usize,
            "{text}"
        );
    }
    for line in lines {
        assert!(text.contains(&line), "{line}: {text}");
    }
    assert!(!text.contains("note:"), "{text}");

    // Another name or schema is another reconciler, which has not started.
    let other = status(&kit.db, &kit.ts, &["--reconciler-name", "other"]);
    assert_eq!(other["reconciler"]["started"], false);
    let text = stdout_of(&runledger(
        &kit.db,
        &kit.ts,
        &["status", "--reconciler-name", "other"],
    ));
    let not_started = if partitioned {
        "reconciler: not started (no position of `other-p<n>` in any schema `runledger_reconciler_p<n>`)"
    } else {
        "reconciler: not started (no position of `other` in schema `runledger_reconciler`)"
    };
    assert!(text.contains(not_started), "{text}");
    let text = stdout_of(&runledger(
        &kit.db,
        &kit.ts,
        &["status", "--reconciler-schema", "elsewhere"],
    ));
    let not_started = if partitioned {
        "reconciler: not started (no partition's schema `elsewhere_p<n>` exists yet)"
    } else {
        "reconciler: not started (schema `elsewhere` does not exist yet)"
    };
    assert!(text.contains(not_started), "{text}");

    // Bad settings are named (the reconciler of a partitioned stream runs in `worker`).
    let reader = if partitioned { "worker" } else { "reconcile" };
    for (args, says) in [
        (
            ["status", "--reconciler-schema", "Bad-Name"],
            "schema name `Bad-Name` must be a lowercase SQL identifier",
        ),
        (
            ["status", "--reconciler-schema", "public"],
            "the reconciler's schema `public` is the read-model schema",
        ),
        (
            [reader, "--reconciler-schema", "public"],
            "the reconciler's schema `public` is the read-model schema",
        ),
    ] {
        let out = runledger(&kit.db, &kit.ts, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn migrate_brings_the_reconciler_schema_up_to_date_too() {
    let (db, ts) = (
        TestDb::new().await.unwrap(),
        TestStream::new().await.unwrap(),
    );
    let subjects = ts.create().await;
    // Every partition's reconciler schema (the one schema without partitions).
    let schemas = partition_schemas("runledger_reconciler", ts.partitions);
    let read_models: Vec<i32> = projector::store::migrate::MIGRATIONS
        .iter()
        .map(|m| m.0)
        .collect();
    let state: Vec<i32> = reconciler::migrate::RECONCILER_MIGRATIONS
        .iter()
        .map(|m| m.0)
        .collect();

    let text = stdout_of(&runledger(&db, &ts, &["migrate"]));
    assert!(
        text.contains(&format!(
            "schema `public`: applied migrations {read_models:?}"
        )),
        "{text}"
    );
    for schema in &schemas {
        assert!(
            text.contains(&format!(
                "reconciler schema `{schema}`: applied read-model migrations \
                 {read_models:?}, reconciler migrations {state:?}"
            )),
            "{text}"
        );
    }
    let client = db.client().await.unwrap();
    let mut tables = vec!["public.runs".to_owned()];
    for schema in &schemas {
        for table in ["reconciler_positions", "outbox", "runs"] {
            tables.push(format!("{schema}.{table}"));
        }
    }
    for table in &tables {
        let found: Option<String> = client
            .query_one("SELECT to_regclass($1)::text", &[table])
            .await
            .unwrap()
            .get(0);
        assert!(found.is_some(), "{table} exists");
    }
    let public_state: Option<String> = client
        .query_one("SELECT to_regclass('public.outbox')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        public_state, None,
        "the reconciler's tables stay in its schema"
    );

    // Again: nothing to do, for both.
    let text = stdout_of(&runledger(&db, &ts, &["migrate"]));
    assert!(text.contains("schema `public` is up to date"), "{text}");
    for schema in &schemas {
        assert!(
            text.contains(&format!("reconciler schema `{schema}` is up to date")),
            "{text}"
        );
    }
    // Migrated, not started: status says so.
    let s = status(&db, &ts, &[]);
    assert_eq!(s["reconciler"]["started"], false);
    let text = stdout_of(&runledger(&db, &ts, &["status"]));
    assert!(
        text.contains("reconciler: not started (no position"),
        "{text}"
    );

    // The reconciler's own migration on start finds nothing to do and starts on it.
    for schema in &schemas {
        let applied = reconciler::migrate::migrate(&mut db.client().await.unwrap(), schema)
            .await
            .unwrap();
        assert!(applied.is_empty(), "{schema}: {applied:?}");
    }
    let mut settings = ReconcilerSettings::new(&ts.stream, subjects);
    settings.tick_interval = None;
    Reconcilers::start(
        db.pool_of(2 * ts.partitions as usize + 4),
        ts.jetstream(),
        settings,
    )
    .await;

    // Another reconciler schema is migrated where it is told to be.
    let text = stdout_of(&runledger(
        &db,
        &ts,
        &["migrate", "--reconciler-schema", "reconciler_two"],
    ));
    for schema in partition_schemas("reconciler_two", ts.partitions) {
        assert!(
            text.contains(&format!("reconciler schema `{schema}`: applied")),
            "{text}"
        );
    }
    let out = runledger(&db, &ts, &["migrate", "--reconciler-schema", "public"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is the read-model schema"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn status_and_replay_refuse_another_partition_count_than_the_streams() {
    let kit = Kit::new().await;
    let (recorded, asked) = (kit.partitions(), if kit.partitions() > 1 { 1 } else { 8 });
    for command in [vec!["status"], vec!["replay", "--dry-run"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_runledger"))
            .args(&command)
            .env("NATS_URL", &kit.ts.url)
            .env("DATABASE_URL", kit.db.url())
            .env("RUNLEDGER_STREAM", &kit.ts.stream)
            .env("RUNLEDGER_SUBJECT_PREFIX", &kit.ts.prefix)
            .env("RUNLEDGER_PARTITIONS", asked.to_string())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "stream `{}` was set up with {recorded} partition(s), not {asked}: set \
                 RUNLEDGER_PARTITIONS={recorded}",
                kit.ts.stream
            )),
            "{command:?}: {stderr}"
        );
    }
}

#[test]
fn commands_that_do_not_project_refuse_batch_flags() {
    for command in ["status", "serve", "replay"] {
        let output = Command::new(env!("CARGO_BIN_EXE_runledger"))
            .args([command, "--batch-size", "5"])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{command} took --batch-size");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("unexpected argument '--batch-size'"),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn the_single_readers_refuse_a_partitioned_stream_naming_the_worker() {
    // Refused before they connect to anything (the reconciler's dry run covers every partition
    // instead).
    for command in ["project", "reconcile"] {
        let output = Command::new(env!("CARGO_BIN_EXE_runledger"))
            .arg(command)
            .env("RUNLEDGER_PARTITIONS", "8")
            .env("NATS_URL", "nats://127.0.0.1:1")
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "`runledger {command}` reads an unpartitioned stream; with RUNLEDGER_PARTITIONS=8 \
                 run `runledger worker` instances (or `runledger up`), which share the partitions"
            )),
            "{stderr}"
        );
    }
}
