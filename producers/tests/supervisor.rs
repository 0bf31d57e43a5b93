//! The run supervisor against real processes and a real nats-server: a child that exits 0,
//! exits 3, is killed by a signal, times out (SIGTERM, and SIGKILL after the grace when it
//! ignores SIGTERM), is cancelled (also by a cancel published before it started) or interrupted;
//! leftovers of its group are reaped; a command that does not exist; and the final event
//! surviving a NATS outage (or, past the deadline, reported as undelivered).
//!
//! Each test has its own stream and subject prefix (or a private server) and its own processes,
//! so the tests run in parallel. Nothing sleeps to wait for an event: waits poll with deadlines.

use events::run::RunCancelRequested;
use events::{AgentId, CompanyId, Event, EventData, EventType, RunId, RunOutcome, Subjects};
use producers::process::group::{group_members, GroupTermination};
use producers::process::probe::probe;
use producers::supervisor::{RunReport, Supervisor, SupervisorSettings, UNDELIVERED_EXIT_CODE};
use producers::{Publisher, PublisherSettings};
use std::ffi::OsString;
use std::time::{Duration, Instant};
use testsupport::{eventually, TestStream};
use tokio::sync::watch;

struct Setup {
    ts: TestStream,
    subjects: Subjects,
    company: CompanyId,
    agent: AgentId,
}

impl Setup {
    async fn on(ts: TestStream) -> Self {
        let subjects = ts.create().await;
        Self {
            ts,
            subjects,
            company: CompanyId::new_random(),
            agent: AgentId::new_random(),
        }
    }

    async fn new() -> Self {
        Self::on(TestStream::new().await.expect("NATS is needed")).await
    }

    /// Short intervals for tests: heartbeat 200 ms, grace 1 s; output not echoed.
    fn settings(&self, command: &[&str]) -> SupervisorSettings {
        let mut s = SupervisorSettings::new(
            self.company,
            self.agent,
            format!("test-host-{}", uuid::Uuid::new_v4().simple()),
            command.iter().map(OsString::from).collect(),
        );
        s.heartbeat_interval = Duration::from_millis(200);
        s.grace = Duration::from_secs(1);
        s.final_event_deadline = Duration::from_secs(20);
        s.echo_output = false;
        s
    }

    fn supervisor(&self, settings: SupervisorSettings) -> Supervisor {
        Supervisor::new(
            self.ts.jetstream(),
            &self.ts.stream,
            self.subjects.clone(),
            settings,
        )
    }

    async fn run(&self, settings: SupervisorSettings) -> RunReport {
        let (_tx, rx) = watch::channel(false);
        self.supervisor(settings).run(rx).await.unwrap()
    }

    async fn events(&self, run: RunId) -> Vec<Event> {
        self.ts
            .subject_events(&self.subjects.run(self.company, run))
            .await
    }

    /// Waits for `run.started` of `run` and returns the agent's pid.
    async fn started_pid(&self, run: RunId) -> i32 {
        eventually(Duration::from_secs(10), "run.started", || async move {
            self.events(run)
                .await
                .into_iter()
                .find_map(|e| match e.data {
                    EventData::RunStarted(s) => s.pid,
                    _ => None,
                })
        })
        .await
    }

    async fn publish(&self, data: EventData) {
        let publisher = Publisher::new(
            self.ts.jetstream(),
            self.subjects.clone(),
            PublisherSettings::default(),
        );
        let event = Event::new(self.company, "test", chrono::Utc::now(), data);
        publisher.publish(&event).await.unwrap();
    }
}

fn finished_events(events: &[Event]) -> Vec<&events::run::RunFinished> {
    events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::RunFinished(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn count(events: &[Event], t: EventType) -> usize {
    events.iter().filter(|e| e.event_type() == t).count()
}

#[tokio::test]
async fn a_child_that_exits_0_succeeds_with_result_excerpts_and_heartbeats() {
    let setup = Setup::new().await;
    let script = r#"echo "run $RUNLEDGER_RUN_ID file $RUNLEDGER_RESULT_FILE"; echo warning >&2
sleep 0.7
printf '{"summary":"did it","company":"%s","usage":{"input_tokens":5}}' "$RUNLEDGER_COMPANY_ID" > "$RUNLEDGER_RESULT_FILE""#;
    let settings = setup.settings(&["sh", "-c", script]);
    let run = settings.run;
    let report = setup.run(settings).await;

    assert_eq!(report.exit_code(), 0);
    let f = &report.finished;
    assert_eq!(f.outcome, RunOutcome::Succeeded);
    assert_eq!((f.exit_code, f.signal.as_deref()), (Some(0), None));
    assert_eq!(f.error, None);
    assert_eq!(f.result["summary"], "did it");
    assert_eq!(f.result["company"], setup.company.to_string().as_str());
    assert_eq!(f.usage.as_ref().unwrap()["input_tokens"], 5);
    let stdout = f.stdout_excerpt.as_deref().unwrap();
    assert!(stdout.contains(&format!("run {run} ")), "{stdout}");
    assert_eq!(f.stderr_excerpt.as_deref(), Some("warning\n"));
    let result_file = stdout.trim_end().rsplit(" file ").next().unwrap();
    assert!(result_file.contains("runledger-"), "{result_file}");
    assert!(
        !std::path::Path::new(result_file).exists(),
        "the result directory is removed after the run"
    );
    assert!(report.final_event.as_ref().unwrap().attempts >= 1);

    let events = setup.events(run).await;
    let EventData::RunStarted(started) = &events.first().expect("events").data else {
        panic!("run.started comes first: {events:?}");
    };
    let pid = started.pid.unwrap();
    assert_eq!(Some(pid), report.pid);
    assert_eq!(started.pgid, Some(pid), "the agent leads its own group");
    assert!(started.process_started_at.unwrap() > 0);
    assert_eq!(started.supervisor_pid, Some(std::process::id() as i32));
    assert!(started.host.starts_with("test-host-"));
    assert!(events[0]
        .source
        .starts_with("runledger-supervisor/test-host-"));
    assert!(
        count(&events, EventType::RunActivity) >= 1,
        "heartbeats every 200 ms during 0.7 s"
    );
    assert!(events.iter().all(|e| match &e.data {
        EventData::RunActivity(a) => a.kind == events::ActivityKind::Heartbeat,
        _ => true,
    }));
    assert_eq!(finished_events(&events).len(), 1);
    assert_eq!(
        events.last().unwrap().event_type(),
        EventType::RunFinished,
        "run.finished comes last"
    );
}

#[tokio::test]
async fn a_child_that_exits_3_fails_with_its_code_and_result_line() {
    let setup = Setup::new().await;
    let script = r#"echo 'RUNLEDGER_RESULT {"summary":"partial"}'; echo boom >&2; exit 3"#;
    let settings = setup.settings(&["sh", "-c", script]);
    let run = settings.run;
    let report = setup.run(settings).await;
    assert_eq!(report.exit_code(), 3);
    let f = &report.finished;
    assert_eq!(f.outcome, RunOutcome::Failed);
    assert_eq!(f.exit_code, Some(3));
    assert_eq!(f.error.as_deref(), Some("Process exited with code 3"));
    assert_eq!(f.result["summary"], "partial");
    assert_eq!(f.stderr_excerpt.as_deref(), Some("boom\n"));
    let events = setup.events(run).await;
    let stored = finished_events(&events);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0], f);
}

#[tokio::test]
async fn a_child_killed_by_a_signal_fails_with_the_signal() {
    let setup = Setup::new().await;
    let report = setup
        .run(setup.settings(&["sh", "-c", "kill -KILL $$"]))
        .await;
    assert_eq!(report.exit_code(), 128 + 9);
    let f = &report.finished;
    assert_eq!(f.outcome, RunOutcome::Failed);
    assert_eq!((f.exit_code, f.signal.as_deref()), (None, Some("SIGKILL")));
    assert_eq!(
        f.error.as_deref(),
        Some("Process was killed by signal SIGKILL")
    );
}

#[tokio::test]
async fn a_child_that_outlives_its_timeout_gets_sigterm() {
    let setup = Setup::new().await;
    let mut settings = setup.settings(&["sleep", "30"]);
    settings.timeout = Some(Duration::from_millis(300));
    let began = Instant::now();
    let report = setup.run(settings).await;
    assert!(began.elapsed() < Duration::from_secs(10));
    let f = &report.finished;
    assert_eq!(f.outcome, RunOutcome::TimedOut);
    assert_eq!(f.signal.as_deref(), Some("SIGTERM"));
    assert_eq!(f.error.as_deref(), Some("Timed out after 0.3 s"));
    assert_eq!(report.exit_code(), 128 + 15);
}

#[tokio::test]
async fn a_timed_out_child_ignoring_sigterm_is_killed_after_the_grace() {
    let setup = Setup::new().await;
    let mut settings = setup.settings(&["sh", "-c", "trap '' TERM; sleep 30; true"]);
    settings.timeout = Some(Duration::from_millis(200));
    let began = Instant::now();
    let report = setup.run(settings).await;
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(1200),
        "timeout + 1 s grace, took {took:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(report.finished.outcome, RunOutcome::TimedOut);
    assert_eq!(report.finished.signal.as_deref(), Some("SIGKILL"));
    let pid = report.pid.unwrap();
    assert!(
        group_members(pid, None).ours.is_empty(),
        "the whole group is gone"
    );
}

#[tokio::test]
async fn a_cancel_request_stops_the_child_with_its_reason() {
    let setup = Setup::new().await;
    let settings = setup.settings(&["sleep", "30"]);
    let run = settings.run;
    let supervisor = setup.supervisor(settings);
    let (_tx, rx) = watch::channel(false);
    let task = tokio::spawn(supervisor.run(rx));
    let pid = setup.started_pid(run).await;
    assert!(probe(pid, None).is_alive());
    setup
        .publish(EventData::RunCancelRequested(RunCancelRequested {
            run_id: run,
            reason: "Cancelled by control plane".into(),
            extra: Default::default(),
        }))
        .await;
    let report = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the supervisor ends after the cancel")
        .unwrap()
        .unwrap();
    let f = &report.finished;
    assert_eq!(f.outcome, RunOutcome::Cancelled);
    assert_eq!(f.error.as_deref(), Some("Cancelled by control plane"));
    assert_eq!(f.signal.as_deref(), Some("SIGTERM"));
    assert!(!probe(pid, None).is_alive());
    let events = setup.events(run).await;
    assert_eq!(finished_events(&events).len(), 1);
}

#[tokio::test]
async fn a_cancel_published_before_the_supervisor_started_is_seen() {
    let setup = Setup::new().await;
    let settings = setup.settings(&["sleep", "30"]);
    setup
        .publish(EventData::RunCancelRequested(RunCancelRequested {
            run_id: settings.run,
            reason: "Cancelled due to budget pause".into(),
            extra: Default::default(),
        }))
        .await;
    let report = tokio::time::timeout(Duration::from_secs(10), setup.run(settings))
        .await
        .expect("cancelled promptly");
    assert_eq!(report.finished.outcome, RunOutcome::Cancelled);
    assert_eq!(
        report.finished.error.as_deref(),
        Some("Cancelled due to budget pause")
    );
}

#[tokio::test]
async fn an_interrupted_supervisor_stops_the_child_as_a_cancel() {
    let setup = Setup::new().await;
    let settings = setup.settings(&["sleep", "30"]);
    let run = settings.run;
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(setup.supervisor(settings).run(rx));
    setup.started_pid(run).await;
    tx.send(true).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.finished.outcome, RunOutcome::Cancelled);
    assert!(report
        .finished
        .error
        .as_deref()
        .unwrap()
        .contains("supervisor was stopped"));
}

#[tokio::test]
async fn descendants_left_in_the_group_are_terminated_when_the_child_exits() {
    let setup = Setup::new().await;
    // The background sleep keeps the stdout pipe open: the supervisor must not wait for it.
    let settings = setup.settings(&["sh", "-c", "sleep 30 & echo $!"]);
    let began = Instant::now();
    let report = setup.run(settings).await;
    assert!(began.elapsed() < Duration::from_secs(10));
    assert_eq!(report.finished.outcome, RunOutcome::Succeeded);
    let descendant: i32 = report
        .finished
        .stdout_excerpt
        .as_deref()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        matches!(&report.leftovers, GroupTermination::Terminated { members, killed: false } if members == &vec![descendant]),
        "{:?}",
        report.leftovers
    );
    assert!(!probe(descendant, None).is_alive());
}

#[tokio::test]
async fn a_command_that_does_not_exist_fails_without_starting() {
    let setup = Setup::new().await;
    let settings = setup.settings(&["/nonexistent/agent-binary"]);
    let run = settings.run;
    let report = setup.run(settings).await;
    assert_eq!(report.exit_code(), 127);
    assert_eq!(report.pid, None);
    assert_eq!(report.finished.outcome, RunOutcome::Failed);
    assert!(report
        .finished
        .error
        .as_deref()
        .unwrap()
        .contains("could not start `/nonexistent/agent-binary`"));
    let events = setup.events(run).await;
    assert_eq!(count(&events, EventType::RunStarted), 0);
    assert_eq!(finished_events(&events).len(), 1);
}

/// A child that runs until `gate` exists.
fn gated(gate: &std::path::Path) -> String {
    format!("while [ ! -e '{}' ]; do sleep 0.05; done", gate.display())
}

fn gate_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("rl-gate-{}", uuid::Uuid::new_v4().simple()))
}

#[tokio::test]
async fn the_final_event_survives_a_nats_outage() {
    let mut server = testsupport::NatsServer::start().await.unwrap();
    let setup = Setup::on(TestStream::on(&server.url()).await.unwrap()).await;
    let gate = gate_path();
    let mut settings = setup.settings(&["sh", "-c", &gated(&gate)]);
    settings.publish_attempt_timeout = Duration::from_millis(200);
    let run = settings.run;
    let (_tx, rx) = watch::channel(false);
    let task = tokio::spawn(setup.supervisor(settings).run(rx));
    let pid = setup.started_pid(run).await;

    server.stop();
    std::fs::write(&gate, "").unwrap();
    eventually(
        Duration::from_secs(10),
        "the child to exit",
        || async move { (!probe(pid, None).is_alive()).then_some(()) },
    )
    .await;
    // The outage itself (not a wait for an event): long enough for several 200 ms attempts of
    // run.finished to go unacknowledged, each buffered by the client with the same id.
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart().await.unwrap();

    let report = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("delivered once NATS is back")
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_file(&gate);
    let delivery = report.final_event.as_ref().expect("run.finished delivered");
    assert!(
        delivery.attempts >= 2,
        "retried during the outage: {delivery:?}"
    );
    assert_eq!(report.exit_code(), 0);
    let events = setup.events(run).await;
    assert_eq!(finished_events(&events).len(), 1, "stored exactly once");
    assert_eq!(count(&events, EventType::RunStarted), 1);
}

#[tokio::test]
async fn the_final_event_gives_up_after_its_deadline_and_says_so() {
    let mut server = testsupport::NatsServer::start().await.unwrap();
    let setup = Setup::on(TestStream::on(&server.url()).await.unwrap()).await;
    let gate = gate_path();
    let mut settings = setup.settings(&["sh", "-c", &gated(&gate)]);
    settings.final_event_deadline = Duration::from_secs(1);
    let run = settings.run;
    let (_tx, rx) = watch::channel(false);
    let task = tokio::spawn(setup.supervisor(settings).run(rx));
    setup.started_pid(run).await;

    server.stop();
    std::fs::write(&gate, "").unwrap();
    let report = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("gives up after the deadline")
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_file(&gate);
    assert_eq!(report.finished.outcome, RunOutcome::Succeeded);
    let undelivered = report.final_event.as_ref().unwrap_err();
    assert!(undelivered.attempts >= 1);
    assert!(undelivered.waited >= Duration::from_millis(900));
    assert_eq!(report.exit_code(), UNDELIVERED_EXIT_CODE);
}
