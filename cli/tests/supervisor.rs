//! `runledger run` as a real process: the agent's output streams through unchanged and the
//! supervisor exits with the agent's code; `kill -9` of the supervisor while the agent lives is
//! reported detached by the watchdog, and killing the agent then is reported lost (projected
//! failed/process_lost, "; retrying once"); with NATS unreachable past the final-event deadline
//! the supervisor exits non-zero and says so.
//!
//! Real nats-server and PostgreSQL; a projector and a watchdog driven step by step. Every test
//! uses its own stream, database and host id, and kills what it started.

use events::{AgentId, CompanyId, Event, EventData, RunId, Subjects};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use producers::process::probe::probe;
use producers::watchdog::{Verdict, Watchdog, WatchdogSettings};
use projector::{Outcome, Projector, ProjectorSettings};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testsupport::{eventually, Deadline, TestDb, TestStream};

struct Run {
    company: CompanyId,
    agent: AgentId,
    run: RunId,
    host: String,
}

impl Run {
    fn new() -> Self {
        Self {
            company: CompanyId::new_random(),
            agent: AgentId::new_random(),
            run: RunId::new_random(),
            host: format!("test-host-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// `runledger run` for this run on `ts`'s stream, with test intervals.
    fn command(&self, url: &str, ts: &TestStream, agent: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runledger"));
        c.arg("run")
            .args(["--company", &self.company.to_string()])
            .args(["--agent", &self.agent.to_string()])
            .args(["--run", &self.run.to_string()])
            .arg("--")
            .args(agent)
            .env("NATS_URL", url)
            .env("RUNLEDGER_STREAM", &ts.stream)
            .env("RUNLEDGER_SUBJECT_PREFIX", &ts.prefix)
            .env("RUNLEDGER_PARTITIONS", ts.partitions.to_string())
            .env("RUNLEDGER_HOST_ID", &self.host)
            .env("RUNLEDGER_HEARTBEAT_INTERVAL", "200ms")
            .env("RUNLEDGER_GRACE", "1s")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }
}

/// Removes the result directory of a run whose supervisor was killed (it cannot clean up).
struct ResultDirCleanup(RunId);

impl Drop for ResultDirCleanup {
    fn drop(&mut self) {
        let prefix = format!("runledger-{}-", self.0);
        for entry in std::fs::read_dir(std::env::temp_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Kills the process (or its whole group) on drop.
struct Guard {
    pid: i32,
    group: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.group {
            let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        } else {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
    }
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn started_pid(ts: &TestStream, subjects: &Subjects, r: &Run) -> i32 {
    let subject = subjects.run(r.company, r.run);
    eventually(Duration::from_secs(20), "run.started", || {
        let subject = subject.clone();
        async move {
            ts.subject_events(&subject)
                .await
                .into_iter()
                .find_map(|e| match e.data {
                    EventData::RunStarted(s) => s.pid,
                    _ => None,
                })
        }
    })
    .await
}

#[tokio::test]
async fn runledger_run_streams_output_through_and_exits_with_the_childs_code() {
    let ts = TestStream::new().await.expect("NATS is needed");
    let subjects = ts.create().await;
    let r = Run::new();
    let output = r
        .command(
            &ts.url,
            &ts,
            &["sh", "-c", "printf 'out 1\\nout 2'; echo err >&2; exit 3"],
        )
        .output()
        .expect("runledger runs");
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "out 1\nout 2");
    assert!(String::from_utf8_lossy(&output.stderr).contains("err\n"));
    let events = ts.subject_events(&subjects.run(r.company, r.run)).await;
    let finished: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::RunFinished(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].exit_code, Some(3));
    assert_eq!(finished[0].stdout_excerpt.as_deref(), Some("out 1\nout 2"));
    assert!(matches!(&events[0].data, EventData::RunStarted(s) if s.host == r.host));
}

struct Ledger {
    _db: TestDb,
    pool: deadpool_postgres::Pool,
    projector: Projector,
}

impl Ledger {
    async fn new(ts: &TestStream, subjects: &Subjects) -> Self {
        let db = TestDb::new().await.expect("PostgreSQL is needed");
        let pool = db.pool();
        projector::store::migrate::migrate(&mut pool.get().await.unwrap(), "public")
            .await
            .unwrap();
        let projector = Projector::start(
            pool.clone(),
            ts.jetstream(),
            ProjectorSettings::new(&ts.stream, subjects.clone()),
        )
        .await
        .unwrap();
        Self {
            _db: db,
            pool,
            projector,
        }
    }

    async fn drain(&mut self, ts: &TestStream) {
        let last = projector::feed::stream_last_seq(&ts.jetstream(), &ts.stream)
            .await
            .unwrap() as i64;
        let deadline = Deadline::after(Duration::from_secs(20));
        while self.projector.position().await.unwrap() < last {
            assert!(!deadline.passed(), "projector did not reach {last}");
            let _ = self
                .projector
                .step(Duration::from_millis(200))
                .await
                .unwrap();
        }
        assert_eq!(
            self.projector
                .step(Duration::from_millis(20))
                .await
                .unwrap(),
            Outcome::Idle
        );
    }

    async fn run(&self, run: RunId) -> Value {
        self.pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT to_jsonb(r) FROM runs r WHERE run_id = $1",
                &[&run.0],
            )
            .await
            .unwrap()
            .get(0)
    }
}

#[tokio::test]
async fn kill_9_of_the_supervisor_detaches_and_then_killing_the_agent_loses_the_run() {
    let ts = TestStream::new().await.expect("NATS is needed");
    let subjects = ts.create().await;
    let mut ledger = Ledger::new(&ts, &subjects).await;
    let r = Run::new();
    let _cleanup = ResultDirCleanup(r.run);
    // The agent is known, so the reconciler may retry its lost run.
    let publisher = producers::Publisher::new(ts.jetstream(), subjects.clone(), Default::default());
    let registered = events::agent::AgentRegistered {
        agent_id: r.agent,
        name: "CodexCoder".into(),
        role: "engineer".into(),
        adapter_type: "codex_local".into(),
        adapter_config: Default::default(),
        status: events::AgentStatus::Idle,
        extra: Default::default(),
    };
    publisher
        .publish(&Event::new(
            r.company,
            "test",
            chrono::Utc::now(),
            EventData::AgentRegistered(registered),
        ))
        .await
        .unwrap();
    let supervisor = r
        .command(&ts.url, &ts, &["sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut supervisor = ChildGuard(supervisor);
    let agent = started_pid(&ts, &subjects, &r).await;
    let _agent = Guard {
        pid: agent,
        group: true,
    };
    ledger.drain(&ts).await;
    let row = ledger.run(r.run).await;
    assert_eq!(row["status"], "running");
    assert_eq!(row["pid"], agent);
    assert_eq!(row["supervisor_pid"], supervisor.0.id());

    let mut watchdog = Watchdog::new(
        ledger.pool.clone(),
        ts.jetstream(),
        WatchdogSettings::new(&r.host, &ts.stream, subjects.clone()),
    );
    let report = watchdog.sweep().await.unwrap();
    assert_eq!(report.run(r.run).unwrap().verdict, Verdict::Supervised);

    supervisor.0.kill().unwrap(); // SIGKILL
    supervisor.0.wait().unwrap();
    assert!(
        probe(agent, None).is_alive(),
        "the agent outlives its supervisor"
    );
    let report = watchdog.sweep().await.unwrap();
    assert_eq!(
        report.run(r.run).unwrap().verdict,
        Verdict::Detached { pid: agent }
    );
    ledger.drain(&ts).await;
    let row = ledger.run(r.run).await;
    assert_eq!(row["status"], "running");
    assert_eq!(row["error_code"], "process_detached");
    assert_eq!(
        row["error"],
        format!("Lost in-memory process handle, but child pid {agent} is still alive").as_str()
    );
    let report = watchdog.sweep().await.unwrap();
    assert_eq!(report.findings().count(), 0, "detached once");

    kill(Pid::from_raw(agent), Signal::SIGKILL).unwrap();
    eventually(Duration::from_secs(5), "the agent to die", || async move {
        (!probe(agent, None).is_alive()).then_some(())
    })
    .await;
    let report = watchdog.sweep().await.unwrap();
    let message = format!("Process lost -- child pid {agent} is no longer running");
    assert!(
        matches!(&report.run(r.run).unwrap().verdict, Verdict::Lost { message: m, .. } if *m == message),
        "{report:?}"
    );
    ledger.drain(&ts).await;
    let row = ledger.run(r.run).await;
    assert_eq!(row["status"], "failed");
    assert_eq!(row["error_code"], "process_lost");
    assert_eq!(row["error"], format!("{message}; retrying once").as_str());

    // The reconciler queues exactly one retry of the lost run.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reconciler = reconciler::Reconciler::start(
        ledger.pool.clone(),
        ts.jetstream(),
        reconciler::ReconcilerSettings::new(&ts.stream, subjects.clone()),
    )
    .await
    .unwrap();
    let task = tokio::spawn(reconciler.run(stop_rx));
    let client = ledger.pool.get().await.unwrap();
    let count_retries = || async {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM runs WHERE retry_of_run_id = $1",
                &[&r.run.0],
            )
            .await
            .unwrap()
            .get(0);
        n
    };
    let deadline = testsupport::Deadline::after(Duration::from_secs(20));
    let retries = loop {
        // project what the reconciler publishes (it runs concurrently)
        ledger
            .projector
            .step(Duration::from_millis(100))
            .await
            .unwrap();
        let n = count_retries().await;
        if n > 0 {
            break n;
        }
        assert!(!deadline.passed(), "no retry was queued");
    };
    assert_eq!(retries, 1, "exactly one retry");
    let _ = stop_tx.send(true);
    task.await.unwrap().unwrap();
    ledger.drain(&ts).await;
    assert_eq!(count_retries().await, 1, "never a second retry");
    assert!(watchdog.sweep().await.unwrap().runs.is_empty());
}

#[tokio::test]
async fn unreachable_nats_past_the_deadline_exits_75_and_says_so() {
    let mut server = testsupport::NatsServer::start().await.unwrap();
    let ts = TestStream::on(&server.url()).await.unwrap();
    let subjects = ts.create().await;
    let r = Run::new();
    let gate = std::env::temp_dir().join(format!("rl-gate-{}", uuid::Uuid::new_v4().simple()));
    let script = format!("while [ ! -e '{}' ]; do sleep 0.05; done", gate.display());
    let supervisor = r
        .command(&server.url(), &ts, &["sh", "-c", &script])
        .env("RUNLEDGER_FINAL_EVENT_DEADLINE", "1s")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut supervisor = ChildGuard(supervisor);
    let agent = started_pid(&ts, &subjects, &r).await;
    let _agent = Guard {
        pid: agent,
        group: true,
    };
    server.stop();
    std::fs::write(&gate, "").unwrap();
    let status = eventually(Duration::from_secs(20), "runledger run to exit", || {
        let status = supervisor.0.try_wait().unwrap();
        async move { status }
    })
    .await;
    let _ = std::fs::remove_file(&gate);
    assert_eq!(status.code(), Some(75));
    let mut stderr = String::new();
    std::io::Read::read_to_string(supervisor.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "run.finished for run {} (outcome succeeded, agent exit code 0) could not be published within 1s",
            r.run
        )),
        "{stderr}"
    );
}
