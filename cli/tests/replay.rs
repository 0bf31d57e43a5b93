//! Replay and backfill through the `runledger replay` binary, against a live projection of the
//! same stream (one projector per partition with `RUNLEDGER_TEST_PARTITIONS` > 1): parity and
//! swap, resuming after kill -9, byte-identical rebuilds, dry runs and historical correctness.
//! A partitioned stream is rebuilt whole, to each partition's live position, so building as of
//! a sequence (`--to-seq`, `--from-seq`) is tested on an unpartitioned stream, and its refusal
//! on a partitioned one.

use events::*;
use producers::workload::{generate, interleaved, Mix};
use projector::store::checksum::checksums;
use serde_json::json;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use testsupport::{Deadline, Kit, Projectors, TestDb, TestStream};

struct Setup {
    kit: Kit,
    live: Projectors,
}

impl Setup {
    /// On a stream partitioned as `RUNLEDGER_TEST_PARTITIONS` says.
    async fn new() -> Self {
        Self::on(Kit::new().await).await
    }

    /// On an unpartitioned stream, whatever `RUNLEDGER_TEST_PARTITIONS` says (for building as
    /// of a sequence, which only a stream of one partition does).
    async fn unpartitioned() -> Self {
        Self::on(Kit::unpartitioned().await).await
    }

    async fn on(kit: Kit) -> Self {
        let live = kit.projector().await;
        Self { kit, live }
    }

    async fn publish(&self, events: &[Event]) {
        self.kit.publish(events).await;
    }

    async fn drain(&mut self) {
        self.kit.drain(&mut self.live).await;
    }

    fn replay(&self, args: &[&str]) -> Command {
        let ts = &self.kit.ts;
        let mut command = Command::new(env!("CARGO_BIN_EXE_runledger"));
        command
            .arg("replay")
            .args(args)
            .env("NATS_URL", &ts.url)
            .env("DATABASE_URL", self.kit.db.url())
            .env("RUNLEDGER_STREAM", &ts.stream)
            .env("RUNLEDGER_SUBJECT_PREFIX", &ts.prefix)
            .env("RUNLEDGER_PARTITIONS", self.kit.partitions().to_string())
            .stderr(Stdio::piped())
            .stdout(Stdio::piped());
        command
    }

    fn run_replay(&self, args: &[&str]) -> (Output, serde_json::Value) {
        let output = self.replay(args).arg("--json").output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let summary = stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| {
                panic!(
                    "no JSON summary: {stdout}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        (output, summary)
    }

    /// Kills (SIGKILL) a replay started with `args` once its build in `schema` has passed
    /// sequence 50 (of any partition): a build in progress.
    async fn kill_mid_build(&self, schema: &str, args: &[&str]) {
        let mut child = self.replay(args).spawn().unwrap();
        let client = self.kit.db.client().await.unwrap();
        let deadline = Deadline::after(Duration::from_secs(30));
        loop {
            let p: Option<i64> = client
                .query_opt(
                    &format!("SELECT max(last_seq) FROM {schema}.projector_positions"),
                    &[],
                )
                .await
                .ok()
                .flatten()
                .and_then(|r| r.get(0));
            if p.is_some_and(|p| p > 50) {
                break;
            }
            assert!(!deadline.passed(), "the replay made no progress");
            assert!(
                child.try_wait().unwrap().is_none(),
                "replay finished before it could be killed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await; // a poll interval
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let (built, record) = self.indexes(schema).await;
        assert!(record, "the deferred indexes are recorded");
        assert!(
            !built.iter().any(|(name, _)| name == "runs_issue_idx"),
            "a build in progress has no reader-only indexes: {built:?}"
        );
    }

    async fn sums(&self, schema: &str) -> std::collections::BTreeMap<String, (i64, String)> {
        let client = self.kit.db.client().await.unwrap();
        client
            .batch_execute(&format!("SET search_path TO {schema}"))
            .await
            .unwrap();
        checksums(&client).await.unwrap()
    }

    /// Every index of `schema` (name, definition with the schema name taken out) and whether the
    /// record of deferred indexes is there.
    async fn indexes(&self, schema: &str) -> (Vec<(String, String)>, bool) {
        let client = self.kit.db.client().await.unwrap();
        let rows = client
            .query(
                "SELECT indexname::text, replace(indexdef, $1 || '.', '') FROM pg_indexes
                 WHERE schemaname = $2 AND indexname NOT LIKE 'replay_deferred_indexes%'
                 ORDER BY 1",
                &[&schema, &schema],
            )
            .await
            .unwrap();
        let record: bool = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL",
                &[&format!("{schema}.replay_deferred_indexes")],
            )
            .await
            .unwrap()
            .get(0);
        (rows.iter().map(|r| (r.get(0), r.get(1))).collect(), record)
    }
}

#[tokio::test]
async fn replay_rebuilds_identical_tables_and_swaps_while_the_live_projector_goes_on() {
    let mut s = Setup::new().await;
    s.publish(&interleaved(&Mix::varied(10), 11..17)).await;
    s.drain().await;
    let before = s.sums("public").await;

    let (output, summary) = s.run_replay(&[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(summary["outcome"], "swapped");
    for table in summary["tables"].as_array().unwrap() {
        assert_eq!(table["equal"], true, "{table}");
    }
    assert_eq!(
        s.sums("public").await,
        before,
        "the swapped-in rebuild is identical"
    );
    let position = summary["position"].as_i64().unwrap();
    let previous = format!("public_before_replay_{position}");
    assert_eq!(
        s.sums(&previous).await,
        before,
        "the previous model is kept"
    );
    let (indexes, record) = s.indexes("public").await;
    assert!(!record);
    assert!(indexes
        .iter()
        .any(|(name, _)| name == "runs_ledger_order_idx"));
    assert_eq!(
        (indexes, record),
        s.indexes(&previous).await,
        "the rebuild has every index the migrations made"
    );

    // The live projector continues, now writing into the swapped-in schema.
    let more = generate(&Mix::varied(5), 111);
    s.publish(&more).await;
    s.drain().await;
    let client = s.kit.db.client().await.unwrap();
    let runs: i64 = client
        .query_one("SELECT count(*) FROM public.runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs as usize, before["runs"].0 as usize + 5);
    let old_runs: i64 = client
        .query_one(&format!("SELECT count(*) FROM {previous}.runs"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(old_runs, before["runs"].0);
}

#[tokio::test]
async fn an_interrupted_replay_resumes_and_rebuilds_are_byte_identical() {
    let mut s = Setup::new().await;
    s.publish(&interleaved(&Mix::varied(50), 21..27)).await;
    s.drain().await;
    let before = s.sums("public").await;

    // kill -9 a rebuild mid-way, then run it again: it resumes from its own positions, and
    // swaps once every partition has caught up.
    s.kill_mid_build(
        "rebuild_a",
        &["--into", "rebuild_a", "--replay-batch-size", "3"],
    )
    .await;
    let (output, summary) = s.run_replay(&["--into", "rebuild_a"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(summary["outcome"], "swapped");
    let previous = format!("public_before_replay_{}", summary["position"]);
    assert_eq!(s.sums("public").await, before, "the resumed rebuild");
    assert_eq!(
        s.indexes("public").await,
        s.indexes(&previous).await,
        "the resumed rebuild restored every index"
    );

    // Again, uninterrupted: the first rebuild is now the live model it is compared with.
    let (output, summary) = s.run_replay(&["--into", "rebuild_b"]);
    assert!(output.status.success());
    assert_eq!(summary["outcome"], "swapped");
    let previous = format!("public_before_replay_{}", summary["position"]);
    let (a, b) = (s.sums(&previous).await, s.sums("public").await);
    assert_eq!(
        a, b,
        "the same stream replayed twice gives byte-identical tables"
    );
    assert_eq!(a, before, "and the same as the live projection");
}

#[tokio::test]
async fn a_build_as_of_a_sequence_resumes_and_refuses_a_gap() {
    let mut s = Setup::unpartitioned().await;
    s.publish(&generate(&Mix::varied(300), 21)).await;
    s.drain().await;
    let last = s.live.position().await.unwrap();
    let to = last.to_string();

    // kill -9 a build mid-way, then run it again: it resumes from its own position.
    s.kill_mid_build(
        "rebuild_a",
        &[
            "--into",
            "rebuild_a",
            "--to-seq",
            &to,
            "--replay-batch-size",
            "3",
        ],
    )
    .await;
    let (output, summary) = s.run_replay(&["--into", "rebuild_a", "--to-seq", &to]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(summary["outcome"], "built");
    assert_eq!(summary["position"].as_i64().unwrap(), last);
    assert_eq!(
        s.indexes("rebuild_a").await,
        s.indexes("public").await,
        "the resumed build restored every index"
    );

    let (output, _) = s.run_replay(&["--into", "rebuild_b", "--to-seq", &to]);
    assert!(output.status.success());
    let (a, b, live) = (
        s.sums("rebuild_a").await,
        s.sums("rebuild_b").await,
        s.sums("public").await,
    );
    assert_eq!(
        a, b,
        "the same stream replayed twice gives byte-identical tables"
    );
    assert_eq!(a, live, "and the same as the live projection");

    // A gap is refused with a clear message.
    let output = s
        .replay(&["--into", "rebuild_c", "--from-seq", "5", "--to-seq", &to])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("would skip events 1..4"), "{stderr}");
}

#[tokio::test]
async fn a_partitioned_stream_refuses_to_build_as_of_a_sequence() {
    // Partitioned in both passes.
    let ts = TestStream::partitioned(8).await.unwrap();
    ts.create().await;
    let db = TestDb::new().await.unwrap();
    for args in [["--to-seq", "10"], ["--from-seq", "5"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_runledger"))
            .arg("replay")
            .args(args)
            .env("NATS_URL", &ts.url)
            .env("DATABASE_URL", db.url())
            .env("RUNLEDGER_STREAM", &ts.stream)
            .env("RUNLEDGER_SUBJECT_PREFIX", &ts.prefix)
            .env("RUNLEDGER_PARTITIONS", "8")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(
                "a partitioned stream is rebuilt whole, to each partition's live position: \
                 --from-seq and --to-seq do not apply"
            ),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn dry_run_reports_what_would_change_and_swaps_nothing() {
    let mut s = Setup::new().await;
    s.publish(&generate(&Mix::varied(20), 31)).await;
    s.drain().await;
    let client = s.kit.db.client().await.unwrap();
    client.batch_execute("UPDATE runs SET status = 'running' WHERE run_id = (SELECT run_id FROM runs ORDER BY run_id LIMIT 1)").await.unwrap();
    let before = s.sums("public").await;

    let (output, summary) = s.run_replay(&["--dry-run"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(summary["outcome"], "dry_run");
    let runs = summary["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "runs")
        .unwrap()
        .clone();
    assert_eq!(
        (
            runs["only_live"].as_i64(),
            runs["only_rebuilt"].as_i64(),
            runs["equal"].as_bool()
        ),
        (Some(1), Some(1), Some(false))
    );
    assert_eq!(s.sums("public").await, before, "nothing swapped");
    let scratch: bool = client
        .query_one("SELECT to_regnamespace('public_replay') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!scratch, "the dry run's build is dropped");

    // Without --force, a differing rebuild is not swapped.
    let (output, summary) = s.run_replay(&[]);
    assert!(!output.status.success());
    assert_eq!(summary["outcome"], "parity_failed");
    assert_eq!(s.sums("public").await, before);
    let (output, summary) = s.run_replay(&["--force"]);
    assert!(output.status.success());
    assert_eq!(summary["outcome"], "swapped");
    assert_ne!(
        s.sums("public").await,
        before,
        "the rebuild replaced the tampered row"
    );
}

#[tokio::test]
async fn backfill_uses_the_state_as_of_each_event_not_todays() {
    let mut s = Setup::new().await;
    let company = CompanyId::new_random();
    let agent = AgentId::new_random();
    let run = RunId::new_random();
    let t0 = chrono::Utc::now();
    let ev = |i: i64, data: EventData| {
        Event::new(company, "test", t0 + chrono::Duration::seconds(i), data)
    };
    let register = |timeout: u32| {
        EventData::AgentRegistered(agent::AgentRegistered {
            agent_id: agent,
            name: "A".into(),
            role: "engineer".into(),
            adapter_type: "codex_local".into(),
            adapter_config: json!({"timeout_sec": timeout})
                .as_object()
                .cloned()
                .unwrap(),
            status: AgentStatus::Idle,
            extra: Default::default(),
        })
    };
    s.publish(&[
        ev(0, register(45)),
        ev(
            1,
            EventData::RunStarted(run::RunStarted {
                run_id: run,
                agent_id: agent,
                issue_id: None,
                host: "h".into(),
                pid: Some(1),
                pgid: Some(1),
                process_started_at: None,
                supervisor_pid: None,
                extra: Default::default(),
            }),
        ),
        ev(
            2,
            EventData::RunFinished(run::RunFinished {
                run_id: run,
                outcome: RunOutcome::TimedOut,
                exit_code: None,
                signal: Some("SIGKILL".into()),
                error: None,
                error_code: None,
                result: Default::default(),
                stdout_excerpt: None,
                stderr_excerpt: None,
                usage: None,
                extra: Default::default(),
            }),
        ),
        ev(3, register(99)),
    ])
    .await;
    s.drain().await;
    // Built from history into a schema of its own as of the last event; a partitioned stream
    // is rebuilt whole (to each partition's live position) and swapped in.
    let to = s.live.position().await.unwrap().to_string();
    let (args, outcome, schema) = if s.kit.partitions() > 1 {
        (vec!["--into", "backfill"], "swapped", "public")
    } else {
        (
            vec!["--into", "backfill", "--to-seq", &to],
            "built",
            "backfill",
        )
    };
    let (output, summary) = s.run_replay(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(summary["outcome"], outcome);
    let client = s.kit.db.client().await.unwrap();
    let row = client
        .query_one(
            &format!(
                "SELECT effective_timeout_sec, timeout_fired FROM {schema}.runs WHERE run_id = $1"
            ),
            &[&run.0],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, bool>(1)),
        (45, true),
        "the config at the finish, not today's 99"
    );
}
