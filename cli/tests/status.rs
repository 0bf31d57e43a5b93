//! `runledger migrate` and `runledger status` through the binary, on a private database and
//! stream: migrate brings the read models and the reconciler's schema up to date (again: nothing
//! to do), and status tells where the reconciler is — not started, decided but not published,
//! published but not read back — honouring `--reconciler-schema` / `--reconciler-name`.

use events::{Event, Subjects};
use producers::{ensure_stream, Publisher, PublisherSettings, StreamSettings};
use reconciler::{Reconciler, ReconcilerSettings};
use serde_json::{json, Value};
use std::process::{Command, Output};
use std::time::Duration;
use testsupport::{Deadline, TestDb, TestStream};

fn runledger(db: &TestDb, ts: &TestStream, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runledger"))
        .args(args)
        .env("NATS_URL", &ts.url)
        .env("DATABASE_URL", db.url())
        .env("RUNLEDGER_STREAM", &ts.stream)
        .env("RUNLEDGER_SUBJECT_PREFIX", &ts.prefix)
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

async fn stream() -> TestStream {
    let ts = TestStream::unpartitioned().await.unwrap();
    ensure_stream(
        &ts.jetstream(),
        &StreamSettings {
            name: ts.stream.clone(),
            subjects: Subjects::new(&ts.prefix).unwrap(),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
        },
    )
    .await
    .unwrap();
    ts
}

/// A varied history and how many follow-ups the reconciler decides for it (the in-memory
/// simulator runs the same rules), before any of them is read back.
fn history() -> (Vec<Event>, i64) {
    let events = producers::workload::generate(&producers::workload::Mix::varied(40), 7);
    let mut sim = reconciler::sim::Simulator::new(reconciler::engine::Policy::default());
    let decided = events.iter().map(|e| sim.feed(e).len() as i64).sum();
    (events, decided)
}

async fn last_seq(ts: &TestStream) -> i64 {
    projector::feed::stream_last_seq(&ts.jetstream(), &ts.stream)
        .await
        .unwrap() as i64
}

#[tokio::test]
async fn status_shows_the_reconcilers_position_lag_and_unpublished_follow_ups() {
    let (db, ts) = (TestDb::new().await.unwrap(), stream().await);
    projector::store::migrate::migrate(&mut db.client().await.unwrap(), "public")
        .await
        .unwrap();

    // No reconciler schema yet: said plainly, not an error.
    let text = stdout_of(&runledger(&db, &ts, &["status"]));
    assert!(
        text.contains("reconciler: not started (schema `runledger_reconciler` does not exist yet)"),
        "{text}"
    );
    let s = status(&db, &ts, &[]);
    assert_eq!(
        s["reconciler"],
        json!({"schema": "runledger_reconciler", "name": "runledger-reconciler", "started": false})
    );

    // Decided, not published: the follow-ups wait in the outbox.
    let subjects = Subjects::new(&ts.prefix).unwrap();
    let publisher = Publisher::new(
        ts.jetstream(),
        subjects.clone(),
        PublisherSettings::default(),
    );
    let (events, decided) = history();
    assert!(decided > 0, "the history calls for follow-ups");
    for r in publisher.publish_all(&events).await {
        r.unwrap();
    }
    let inputs = last_seq(&ts).await;
    let mut settings = ReconcilerSettings::new(&ts.stream, subjects);
    settings.tick_interval = None;
    let mut reconciler = Reconciler::start(db.pool(), ts.jetstream(), settings)
        .await
        .unwrap();
    let deadline = Deadline::after(Duration::from_secs(30));
    while reconciler.position().await.unwrap() < inputs {
        assert!(!deadline.passed(), "the reconciler did not reach {inputs}");
        reconciler.step(Duration::from_millis(200)).await.unwrap();
    }
    let r = &status(&db, &ts, &[])["reconciler"];
    assert_eq!(r["started"], true);
    assert_eq!(r["stream"], json!(ts.stream));
    assert_eq!(r["position"], inputs);
    assert_eq!(r["lag"], 0);
    assert_eq!(r["events_seen"], inputs);
    assert_eq!(r["follow_ups"], decided);
    assert_eq!(r["outbox_unpublished"], decided);

    // Published, not read back yet: the outbox is empty and the reconciler behind by as many.
    assert_eq!(reconciler.outbox().drain().await.unwrap() as i64, decided);
    let text = stdout_of(&runledger(&db, &ts, &["status"]));
    for line in [
        format!("reconciler position {inputs}"),
        format!("reconciler lag      {decided}"),
        format!("follow-ups decided  {decided}"),
        "outbox unpublished  0".to_owned(),
    ] {
        assert!(text.contains(&line), "{line}: {text}");
    }
    assert!(!text.contains("note:"), "{text}");

    // Another name or schema is another reconciler, which has not started.
    let other = status(&db, &ts, &["--reconciler-name", "other"]);
    assert_eq!(other["reconciler"]["started"], false);
    let text = stdout_of(&runledger(
        &db,
        &ts,
        &["status", "--reconciler-name", "other"],
    ));
    assert!(
        text.contains(
            "reconciler: not started (no position of `other` in schema `runledger_reconciler`)"
        ),
        "{text}"
    );
    let text = stdout_of(&runledger(
        &db,
        &ts,
        &["status", "--reconciler-schema", "elsewhere"],
    ));
    assert!(
        text.contains("reconciler: not started (schema `elsewhere` does not exist yet)"),
        "{text}"
    );

    // Bad settings are named.
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
            ["reconcile", "--reconciler-schema", "public"],
            "the reconciler's schema `public` is the read-model schema",
        ),
    ] {
        let out = runledger(&db, &ts, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn migrate_brings_the_reconciler_schema_up_to_date_too() {
    let (db, ts) = (TestDb::new().await.unwrap(), stream().await);
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
    assert!(
        text.contains(&format!(
            "reconciler schema `runledger_reconciler`: applied read-model migrations \
             {read_models:?}, reconciler migrations {state:?}"
        )),
        "{text}"
    );
    let client = db.client().await.unwrap();
    for table in [
        "runledger_reconciler.reconciler_positions",
        "runledger_reconciler.outbox",
        "runledger_reconciler.runs",
        "public.runs",
    ] {
        let found: Option<String> = client
            .query_one("SELECT to_regclass($1)::text", &[&table])
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
    assert!(
        text.contains("reconciler schema `runledger_reconciler` is up to date"),
        "{text}"
    );
    // Migrated, not started: status says so.
    let s = status(&db, &ts, &[]);
    assert_eq!(s["reconciler"]["started"], false);
    let text = stdout_of(&runledger(&db, &ts, &["status"]));
    assert!(
        text.contains("reconciler: not started (no position"),
        "{text}"
    );

    // The reconciler's own migration on start finds nothing to do and starts on it.
    let applied =
        reconciler::migrate::migrate(&mut db.client().await.unwrap(), "runledger_reconciler")
            .await
            .unwrap();
    assert!(applied.is_empty(), "{applied:?}");
    let mut settings = ReconcilerSettings::new(&ts.stream, Subjects::new(&ts.prefix).unwrap());
    settings.tick_interval = None;
    Reconciler::start(db.pool(), ts.jetstream(), settings)
        .await
        .unwrap();

    // Another reconciler schema is migrated where it is told to be.
    let text = stdout_of(&runledger(
        &db,
        &ts,
        &["migrate", "--reconciler-schema", "reconciler_two"],
    ));
    assert!(
        text.contains("reconciler schema `reconciler_two`: applied"),
        "{text}"
    );
    let out = runledger(&db, &ts, &["migrate", "--reconciler-schema", "public"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is the read-model schema"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
