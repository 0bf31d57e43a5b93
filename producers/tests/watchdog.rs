//! The host watchdog against real processes, a real nats-server and a real PostgreSQL: runs are
//! recorded with `run.started` (pids of processes the test spawns), projected by a projector
//! stepped by the test, and judged by `Watchdog::sweep` called directly.
//!
//! Covered: a supervised run (and one whose supervisor is finishing it) is left alone; a
//! supervisor killed while its agent lives is detached once (also across watchdog restarts,
//! before and after projection, and after activity cleared the warning), then lost when the
//! agent dies (projected failed/process_lost with "; retrying once"); orphaned descendants of a
//! gone parent are reaped within 2 s; a pid reused by an unrelated process is lost, not alive,
//! and the unrelated process is left alone; a cancel without supervisor terminates the group
//! (SIGKILL after 2 s when SIGTERM is ignored); a run already finished on the stream is not
//! reported lost while the projection lags.

use chrono::Utc;
use events::run::{RunActivity, RunCancelRequested, RunFinished, RunStarted};
use events::{ActivityKind, AgentId, CompanyId, Event, EventData, EventId, RunId, RunOutcome};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use producers::process::group::GroupTermination;
use producers::process::probe::probe;
use producers::process::stat;
use producers::watchdog::{SweepReport, Verdict, Watchdog, WatchdogSettings};
use producers::PublishOutcome;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testsupport::{eventually, Kit, Projectors};

struct Harness {
    kit: Kit,
    projector: Projectors,
    host: String,
    company: CompanyId,
    agent: AgentId,
}

impl Harness {
    async fn new() -> Self {
        let kit = Kit::new().await;
        let projector = kit.projector().await;
        Self {
            kit,
            projector,
            host: format!("test-host-{}", uuid::Uuid::new_v4().simple()),
            company: CompanyId::new_random(),
            agent: AgentId::new_random(),
        }
    }

    /// A fresh watchdog (as after a restart: nothing in memory).
    fn watchdog(&self) -> Watchdog {
        Watchdog::new(
            self.kit.pool.clone(),
            self.kit.js(),
            WatchdogSettings::new(&self.host, &self.kit.ts.stream, self.kit.subjects.clone()),
        )
    }

    async fn publish(&self, data: EventData) {
        let event = Event::new(self.company, "test", Utc::now(), data);
        self.kit.publisher.publish(&event).await.unwrap();
    }

    async fn started(
        &self,
        run: RunId,
        pid: Option<i32>,
        pgid: Option<i32>,
        process_started_at: Option<u64>,
        supervisor_pid: Option<i32>,
    ) {
        self.publish(EventData::RunStarted(RunStarted {
            run_id: run,
            agent_id: self.agent,
            issue_id: None,
            host: self.host.clone(),
            pid,
            pgid,
            process_started_at,
            supervisor_pid,
            extra: Default::default(),
        }))
        .await;
    }

    /// Steps the projector until it has applied everything in the stream.
    async fn drain(&mut self) {
        self.kit.drain(&mut self.projector).await;
    }

    async fn run_row(&self, run: RunId) -> Value {
        self.kit
            .pool
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

    async fn timeline_count(&self, run: RunId, kind: &str) -> i64 {
        self.kit
            .pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT count(*) FROM run_events WHERE run_id = $1 AND type = $2",
                &[&run.0, &kind],
            )
            .await
            .unwrap()
            .get(0)
    }
}

/// A process the test started, killed with its group (if it leads one) on drop.
struct Spawned {
    child: Child,
    leads_group: bool,
}

impl Spawned {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn start_time(&self) -> u64 {
        stat::start_time(self.pid()).expect("stat of a child not yet reaped")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.leads_group {
            let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills `pid` (by pid) on drop: for processes the test did not spawn directly.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

/// Runs `sh -c script` in its own process group; stdout piped.
fn spawn_group(script: &str) -> Spawned {
    let child = Command::new("sh")
        .args(["-c", script])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Spawned {
        child,
        leads_group: true,
    }
}

/// A plain `sleep 60`, a child of the test, in the test's process group.
fn spawn_sleep() -> Spawned {
    let child = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Spawned {
        child,
        leads_group: false,
    }
}

/// The first stdout line of `p`, as a pid.
fn first_line_pid(p: &mut Spawned) -> i32 {
    let mut line = String::new();
    BufReader::new(p.child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().parse().expect("a pid on the first line")
}

fn verdict(report: &SweepReport, run: RunId) -> Verdict {
    report
        .run(run)
        .expect("the run was checked")
        .verdict
        .clone()
}

fn published(report: &SweepReport, run: RunId) -> PublishOutcome {
    report
        .run(run)
        .unwrap()
        .published
        .clone()
        .expect("an event was published")
        .expect("acknowledged")
}

async fn wait_dead(pid: i32, within: Duration) {
    eventually(within, "the process to die", || async move {
        (!probe(pid, None).is_alive()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_supervised_run_and_a_run_being_finished_are_left_alone() {
    let mut h = Harness::new().await;
    let mut agent = spawn_sleep(); // a child of this test, which plays the supervisor
    let run = RunId::new_random();
    let me = std::process::id() as i32;
    h.started(
        run,
        Some(agent.pid()),
        Some(agent.pid()),
        Some(agent.start_time()),
        Some(me),
    )
    .await;
    h.drain().await;
    let mut w = h.watchdog();
    let report = w.sweep().await.unwrap();
    assert_eq!(report.runs.len(), 1);
    let check = report.run(run).unwrap();
    assert_eq!(check.verdict, Verdict::Supervised);
    assert!(check.supervisor_alive);
    assert_eq!(check.agent, "alive");

    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let report = w.sweep().await.unwrap();
    assert_eq!(verdict(&report, run), Verdict::Finishing);
    assert_eq!(report.findings().count(), 0);
}

#[tokio::test]
async fn a_killed_supervisor_is_detached_once_then_lost_when_the_agent_dies() {
    let mut h = Harness::new().await;
    // The "supervisor" is a shell whose child `sleep` is the agent.
    let mut supervisor = spawn_group("sleep 60 & echo $!; wait");
    let agent_pid = first_line_pid(&mut supervisor);
    let _agent = KillOnDrop(agent_pid);
    let agent_start = stat::start_time(agent_pid).unwrap();
    let run = RunId::new_random();
    h.started(
        run,
        Some(agent_pid),
        Some(supervisor.pid()),
        Some(agent_start),
        Some(supervisor.pid()),
    )
    .await;
    h.drain().await;
    let mut w1 = h.watchdog();
    assert_eq!(
        verdict(&w1.sweep().await.unwrap(), run),
        Verdict::Supervised
    );

    kill(Pid::from_raw(supervisor.pid()), Signal::SIGKILL).unwrap();
    supervisor.child.wait().unwrap();
    let report = w1.sweep().await.unwrap();
    assert_eq!(verdict(&report, run), Verdict::Detached { pid: agent_pid });
    assert!(!published(&report, run).duplicate);
    let detached_id = report.run(run).unwrap().event_id.unwrap();
    assert_eq!(
        detached_id,
        EventId::derived(EventId(run.0), "watchdog.process_detached")
    );
    assert_eq!(
        verdict(&w1.sweep().await.unwrap(), run),
        Verdict::StillDetached
    );

    // A restarted watchdog decides the same before the projection caught up: same id, stored once.
    let report = h.watchdog().sweep().await.unwrap();
    assert_eq!(report.run(run).unwrap().event_id, Some(detached_id));
    assert!(published(&report, run).duplicate);

    h.drain().await;
    let row = h.run_row(run).await;
    assert_eq!(row["status"], "running");
    assert_eq!(row["error_code"], "process_detached");
    assert!(row["error"]
        .as_str()
        .unwrap()
        .contains(&agent_pid.to_string()));
    assert_eq!(h.timeline_count(run, "run.process_detached").await, 1);

    // After projection a restarted watchdog knows from the read model; activity clearing the
    // warning does not make it warn again.
    let mut w2 = h.watchdog();
    assert_eq!(
        verdict(&w2.sweep().await.unwrap(), run),
        Verdict::StillDetached
    );
    h.publish(EventData::RunActivity(RunActivity {
        run_id: run,
        kind: ActivityKind::Heartbeat,
        message: None,
        at: Utc::now(),
        extra: Default::default(),
    }))
    .await;
    h.drain().await;
    assert_eq!(h.run_row(run).await["error_code"], Value::Null);
    let report = h.watchdog().sweep().await.unwrap();
    assert_eq!(verdict(&report, run), Verdict::StillDetached);
    assert_eq!(report.findings().count(), 0);

    kill(Pid::from_raw(agent_pid), Signal::SIGKILL).unwrap();
    wait_dead(agent_pid, Duration::from_secs(5)).await;
    let report = w2.sweep().await.unwrap();
    let message = format!("Process lost -- child pid {agent_pid} is no longer running");
    match verdict(&report, run) {
        Verdict::Lost {
            message: m,
            descendant_group_terminated: false,
            ..
        } => assert_eq!(m, message),
        other => panic!("expected lost, got {other:?}"),
    }
    assert!(!published(&report, run).duplicate);
    assert_eq!(
        verdict(&w2.sweep().await.unwrap(), run),
        Verdict::AwaitingProjection
    );
    assert_eq!(
        verdict(&h.watchdog().sweep().await.unwrap(), run),
        Verdict::AlreadyEnded,
        "a restarted watchdog sees the loss on the stream"
    );

    h.drain().await;
    let row = h.run_row(run).await;
    assert_eq!(row["status"], "failed");
    assert_eq!(row["error_code"], "process_lost");
    assert_eq!(row["error"], format!("{message}; retrying once").as_str());
    assert_eq!(row["stop_reason"], "process_lost");
    assert!(w2.sweep().await.unwrap().runs.is_empty());
}

#[tokio::test]
async fn orphaned_descendants_of_a_gone_parent_are_reaped_within_2s() {
    let mut h = Harness::new().await;
    // The leader starts a descendant in its group and exits at once.
    let mut leader = spawn_group("sleep 60 & echo $!");
    let descendant = first_line_pid(&mut leader);
    let _descendant = KillOnDrop(descendant);
    let leader_pid = leader.pid();
    let leader_start = leader.start_time();
    leader.child.wait().unwrap();
    assert!(probe(descendant, None).is_alive());
    let run = RunId::new_random();
    h.started(
        run,
        Some(leader_pid),
        Some(leader_pid),
        Some(leader_start),
        None,
    )
    .await;
    h.drain().await;

    let began = Instant::now();
    let report = h.watchdog().sweep().await.unwrap();
    let message = format!(
        "Process lost -- parent pid {leader_pid} exited, but descendant process group {leader_pid} was still alive and was terminated"
    );
    match verdict(&report, run) {
        Verdict::Lost {
            message: m,
            descendant_group_terminated: true,
            group: GroupTermination::Terminated { members, killed },
        } => {
            assert_eq!(m, message);
            assert_eq!(members, vec![descendant]);
            assert!(
                !killed,
                "SIGTERM was enough: reaped before the SIGKILL at 2 s"
            );
        }
        other => panic!("expected lost with the group terminated, got {other:?}"),
    }
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    wait_dead(descendant, Duration::from_secs(2)).await;

    h.drain().await;
    let row = h.run_row(run).await;
    assert_eq!(row["status"], "failed");
    assert_eq!(row["error_code"], "process_lost");
    let error = row["error"].as_str().unwrap();
    assert!(error.contains("descendant process group"), "{error}");
    assert!(error.ends_with("; retrying once"), "{error}");
}

#[tokio::test]
async fn a_pid_reused_by_an_unrelated_process_is_lost_not_alive() {
    let mut h = Harness::new().await;
    // An unrelated process (leading its own group) now holds the recorded pid.
    let unrelated = spawn_group("exec sleep 60");
    let pid = unrelated.pid();
    let real_start = unrelated.start_time();
    let run = RunId::new_random();
    h.started(run, Some(pid), Some(pid), Some(real_start + 1234), None)
        .await;
    h.drain().await;
    let report = h.watchdog().sweep().await.unwrap();
    let check = report.run(run).unwrap();
    assert_eq!(check.agent, "pid_reused");
    match &check.verdict {
        Verdict::Lost {
            message,
            descendant_group_terminated: false,
            group: GroupTermination::Empty,
        } => assert_eq!(
            message,
            &format!("Process lost -- child pid {pid} is no longer running")
        ),
        other => panic!("expected lost, got {other:?}"),
    }
    assert!(
        probe(pid, Some(real_start)).is_alive(),
        "the unrelated process and its group are left alone"
    );
    h.drain().await;
    assert_eq!(h.run_row(run).await["error_code"], "process_lost");
}

#[tokio::test]
async fn a_cancel_without_supervisor_terminates_the_group_and_finishes_the_run() {
    let mut h = Harness::new().await;
    // Ignores SIGTERM: the group needs the SIGKILL at 2 s.
    let agent = spawn_group("trap '' TERM; sleep 60; true");
    let pid = agent.pid();
    let start = agent.start_time();
    let run = RunId::new_random();
    h.started(run, Some(pid), Some(pid), Some(start), None)
        .await;
    h.publish(EventData::RunCancelRequested(RunCancelRequested {
        run_id: run,
        reason: "Cancelled by control plane".into(),
        extra: Default::default(),
    }))
    .await;
    h.drain().await;
    let began = Instant::now();
    let report = h.watchdog().sweep().await.unwrap();
    match verdict(&report, run) {
        Verdict::Cancelled {
            reason,
            group: GroupTermination::Terminated { killed: true, .. },
        } => assert_eq!(reason, "Cancelled by control plane"),
        other => panic!("expected cancelled with SIGKILL, got {other:?}"),
    }
    let took = began.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert!(!probe(pid, Some(start)).is_alive());
    h.drain().await;
    let row = h.run_row(run).await;
    assert_eq!(row["status"], "cancelled");
    assert_eq!(row["error"], "Cancelled by control plane");
    assert_eq!(row["stop_reason"], "cancelled");
}

#[tokio::test]
async fn a_run_already_finished_on_the_stream_is_not_reported_lost() {
    let mut h = Harness::new().await;
    let run = RunId::new_random();
    // A pid that cannot exist, a supervisor that is gone.
    h.started(run, Some(999_999_999), Some(999_999_999), Some(1), None)
        .await;
    h.drain().await;
    // The supervisor published run.finished and exited; the projector has not caught up.
    h.publish(EventData::RunFinished(RunFinished {
        run_id: run,
        outcome: RunOutcome::Succeeded,
        exit_code: Some(0),
        signal: None,
        error: None,
        error_code: None,
        result: Default::default(),
        stdout_excerpt: None,
        stderr_excerpt: None,
        usage: None,
        extra: Default::default(),
    }))
    .await;
    let report = h.watchdog().sweep().await.unwrap();
    assert_eq!(verdict(&report, run), Verdict::AlreadyEnded);
    assert_eq!(report.findings().count(), 0);
    h.drain().await;
    assert_eq!(h.run_row(run).await["status"], "succeeded");
    assert_eq!(h.timeline_count(run, "run.process_lost").await, 0);
}

#[tokio::test]
async fn a_dead_pid_is_lost_and_runs_of_other_hosts_are_not_watched() {
    let mut h = Harness::new().await;
    let run = RunId::new_random();
    h.started(run, Some(999_999_999), None, None, Some(999_999_998))
        .await;
    let elsewhere = RunId::new_random();
    h.publish(EventData::RunStarted(RunStarted {
        run_id: elsewhere,
        agent_id: h.agent,
        issue_id: None,
        host: "another-host".into(),
        pid: Some(999_999_999),
        pgid: None,
        process_started_at: None,
        supervisor_pid: None,
        extra: Default::default(),
    }))
    .await;
    h.drain().await;
    let report = h.watchdog().sweep().await.unwrap();
    assert_eq!(report.runs.len(), 1, "only this host's runs");
    assert!(matches!(
        verdict(&report, run),
        Verdict::Lost { message, .. } if message == "Process lost -- child pid 999999999 is no longer running"
    ));
    assert!(report.elapsed < Duration::from_secs(5));
}
