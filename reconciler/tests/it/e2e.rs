//! The catalogue end to end: events published to a real JetStream stream, decided by the real
//! reconciler (private fold, ledger and outbox in PostgreSQL), follow-ups published from the
//! outbox and folded by the real projector. For every scenario the follow-ups in the stream must
//! be the expected ones and exactly (ids, types, data) what the in-memory simulator decides for
//! the same history; then the read models are checked where the catalogue says what they show.

use crate::harness::Harness;
use crate::scenarios::{lines, main_run, run_end_scenarios, tick_scenarios, Scenario};
use crate::world::World;
use events::{Event, RunId};
use reconciler::sim::Simulator;
use serde_json::{json, Value};

/// What running scenarios end to end produced, per scenario.
pub struct Ran {
    pub worlds: Vec<World>,
    pub phases: Vec<Vec<Vec<Event>>>,
}

impl Ran {
    fn index(&self, scenarios: &[Scenario], name: &str) -> usize {
        scenarios
            .iter()
            .position(|s| s.name.starts_with(name))
            .unwrap_or_else(|| panic!("no scenario named {name}"))
    }
}

/// Runs `scenarios` together on `h` (they must not use ticks unless alone), phase by phase.
pub async fn run(h: &mut Harness, scenarios: &[Scenario]) -> Ran {
    let n = scenarios.len();
    assert!(
        n == 1 || scenarios.iter().all(|s| !s.ticks),
        "a tick sweeps every issue: tick scenarios run alone"
    );
    let mut worlds: Vec<World> = (0..n).map(|_| World::new()).collect();
    let mut so_far: Vec<Vec<Event>> = vec![Vec::new(); n];
    let mut inputs: Vec<Vec<Vec<Event>>> = vec![Vec::new(); n];
    let mut phases: Vec<Vec<Vec<Event>>> = vec![Vec::new(); n];
    let rounds = scenarios.iter().map(|s| s.phases.len()).max().unwrap_or(0);
    for round in 0..rounds {
        for (i, scenario) in scenarios.iter().enumerate() {
            let Some(phase) = scenario.phases.get(round) else {
                continue;
            };
            let given = (phase.given)(&mut worlds[i], &so_far[i]);
            h.publish(&given).await;
            inputs[i].push(given);
        }
        h.settle().await;
        let all = h.follow_ups().await;
        for (i, scenario) in scenarios.iter().enumerate() {
            let Some(phase) = scenario.phases.get(round) else {
                continue;
            };
            let mine: Vec<Event> = all
                .iter()
                .filter(|e| e.company_id == worlds[i].company)
                .cloned()
                .collect();
            let new = mine[so_far[i].len()..].to_vec();
            assert_eq!(
                lines(&new),
                phase.expect,
                "{}: phase {} end to end",
                scenario.name,
                round + 1
            );
            phases[i].push(new);
            so_far[i] = mine;
        }
    }
    let client = h.pool.get().await.unwrap();
    for schema in ["public".to_owned()]
        .into_iter()
        .chain(h.reconciler_schemas())
    {
        let dead: i64 = client
            .query_one(&format!("SELECT count(*) FROM {schema}.dead_letters"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(dead, 0, "no event was dead-lettered in {schema}");
    }
    for (i, scenario) in scenarios.iter().enumerate() {
        (scenario.check)(&worlds[i], &phases[i]);
        let mut sim = Simulator::new(scenario.policy.clone());
        // The simulator reads what the scenario's partition read (its own clock's ticks).
        let simulated: Vec<Event> = inputs[i]
            .iter()
            .flat_map(|given| sim.run(h.as_read_by(worlds[i].company, given)))
            .collect();
        assert_eq!(
            phases[i].concat(),
            simulated,
            "{}: the stream holds exactly what the simulator decides",
            scenario.name
        );
    }
    Ran { worlds, phases }
}

async fn run_alone(name: &str) -> (Harness, World, Vec<Vec<Event>>) {
    let scenario = tick_scenarios()
        .into_iter()
        .chain(run_end_scenarios())
        .find(|s| s.name.starts_with(name))
        .unwrap_or_else(|| panic!("no scenario named {name}"));
    let mut h = Harness::new(scenario.policy.clone()).await;
    let mut ran = run(&mut h, std::slice::from_ref(&scenario)).await;
    (h, ran.worlds.remove(0), ran.phases.remove(0))
}

fn run_of(events: &[Event]) -> RunId {
    crate::world::queued_run(events)
}

#[tokio::test]
async fn run_end_catalogue_end_to_end() {
    let scenarios = run_end_scenarios();
    let mut h = Harness::new(reconciler::engine::Policy::default()).await;
    let ran = run(&mut h, &scenarios).await;

    // process loss: failed/process_lost, one queued retry, execution → retry, checkout → old
    let i = ran.index(&scenarios, "process loss with a dead pid");
    let (w, old) = (&ran.worlds[i], main_run(&ran.worlds[i]));
    let retry = run_of(&ran.phases[i][0]);
    let r = h.row("runs", "run_id", old.0).await;
    assert_eq!(
        (r["status"].clone(), r["error_code"].clone()),
        (json!("failed"), json!("process_lost"))
    );
    assert_eq!(r["stop_reason"], "process_lost");
    assert_eq!(r["timeout_configured"], false);
    assert_eq!(r["timeout_fired"], false);
    assert_eq!(r["liveness_state"], "failed");
    assert!(r["liveness_reason"]
        .as_str()
        .unwrap()
        .contains("process_lost"));
    let q = h.row("runs", "run_id", retry.0).await;
    assert_eq!(q["status"], "queued");
    assert_eq!(q["retry_of_run_id"], json!(old));
    assert_eq!(q["process_loss_retry_count"], 1);
    let issue = h.row("issues", "issue_id", w.issue.0).await;
    assert_eq!(
        issue["execution_run_id"],
        json!(retry),
        "execution moves to the retry"
    );
    assert_eq!(
        issue["checkout_run_id"],
        json!(old),
        "checkout is untouched"
    );

    // a retry lost again: no retry, lock released, checkout kept
    let i = ran.index(&scenarios, "process loss of a retry");
    let issue = h.row("issues", "issue_id", ran.worlds[i].issue.0).await;
    assert_eq!(issue["execution_run_id"], Value::Null);
    assert_eq!(issue["checkout_run_id"], json!(main_run(&ran.worlds[i])));

    // refused retry of a done issue: visible on the issue and the run, lock released
    let i = ran.index(&scenarios, "process loss on a done issue");
    let w = &ran.worlds[i];
    let issue = h.row("issues", "issue_id", w.issue.0).await;
    assert_eq!(issue["execution_run_id"], Value::Null);
    let activity = h
        .json_rows(
            "SELECT details FROM activity_log WHERE entity_id = $1 AND action = 'issue.follow_up_refused'",
            w.issue.0,
        )
        .await;
    assert_eq!(activity.len(), 1);
    assert_eq!(activity[0]["follow_up"], "process_lost_retry");
    let timeline = h
        .json_rows(
            "SELECT to_jsonb(e) FROM run_events e WHERE run_id = $1 AND type = 'follow_up.refused'",
            main_run(w).0,
        )
        .await;
    assert_eq!(timeline.len(), 1);

    // continuation: the wakeup and its run are in the read models
    let i = ran.index(&scenarios, "planning sentence");
    let w = &ran.worlds[i];
    let key = format!(
        "run_liveness_continuation:{}:{}:plan_only:1",
        w.issue,
        main_run(w)
    );
    let wakeups = h
        .json_rows(
            "SELECT to_jsonb(w) FROM wakeup_requests w WHERE issue_id = $1 AND idempotency_key IS NOT NULL",
            w.issue.0,
        )
        .await;
    assert_eq!(wakeups.len(), 1);
    assert_eq!(wakeups[0]["idempotency_key"], json!(key));
    let continued = run_of(&ran.phases[i][0]);
    assert_eq!(
        h.row("runs", "run_id", continued.0).await["continuation_attempt"],
        1
    );
    assert_eq!(
        h.row("runs", "run_id", main_run(w).0).await["liveness_state"],
        "plan_only"
    );

    // exhaustion: the result comment, then one exhaustion comment, both as the run; the reason
    // says so, the ledger shows "Exhausted"
    let i = ran.index(&scenarios, "attempt 2");
    let w = &ran.worlds[i];
    let comments = h.comments(w.issue.0).await;
    assert_eq!(comments.len(), 2);
    assert_eq!(comments[0]["body"], crate::world::PLAN_SENTENCE);
    assert!(comments[1]["body"]
        .as_str()
        .unwrap()
        .starts_with("Bounded liveness continuation exhausted"));
    for comment in &comments {
        assert_eq!(comment["run_id"], json!(main_run(w)));
        assert_eq!(comment["author_agent_id"], json!(w.agent));
    }
    let ledger = h
        .json_rows(
            "SELECT to_jsonb(l) FROM issue_run_ledger l WHERE issue_id = $1",
            w.issue.0,
        )
        .await;
    assert_eq!(ledger[0]["exhausted"], true);

    // the summary is a system document, revised by the run
    let i = ran.index(&scenarios, "summary:");
    let w = &ran.worlds[i];
    let docs = h
        .json_rows(
            "SELECT to_jsonb(d) FROM documents d WHERE issue_id = $1",
            w.issue.0,
        )
        .await;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["key"], "continuation-summary");
    assert_eq!(docs[0]["is_system"], true);
    let revisions = h
        .json_rows(
            "SELECT to_jsonb(r) FROM document_revisions r WHERE issue_id = $1",
            w.issue.0,
        )
        .await;
    assert_eq!(revisions[0]["created_by_run_id"], json!(main_run(w)));
    let run = h.row("runs", "run_id", main_run(w).0).await;
    assert_eq!(
        run["evidence_revisions"], 0,
        "the summary is never evidence"
    );

    // the result comment: on the issue as the run's agent, naming the run, never its evidence
    let i = ran.index(&scenarios, "a succeeded run that never commented");
    let w = &ran.worlds[i];
    let comments = h.comments(w.issue.0).await;
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0]["body"], "Shipped the ledger.\nAll green.");
    assert_eq!(comments[0]["author_agent_id"], json!(w.agent));
    assert_eq!(comments[0]["author_user_id"], Value::Null);
    assert_eq!(comments[0]["run_id"], json!(main_run(w)));
    let run = h.row("runs", "run_id", main_run(w).0).await;
    assert_eq!(
        run["evidence_comments"], 0,
        "the result comment is never evidence"
    );
    assert_eq!(run["evidence_activity"], 0);
    assert_eq!(run["liveness_state"], "needs_followup");

    // the missing-comment follow-up: its wakeup and run are in the read models
    let i = ran.index(&scenarios, "an advanced run that left no word");
    let w = &ran.worlds[i];
    let key = format!("issue_comment_missing:{}:{}", w.issue, main_run(w));
    let wakeups = h
        .json_rows(
            "SELECT to_jsonb(w) FROM wakeup_requests w WHERE issue_id = $1 AND idempotency_key IS NOT NULL",
            w.issue.0,
        )
        .await;
    assert_eq!(wakeups.len(), 1, "one follow-up, not two");
    assert_eq!(wakeups[0]["idempotency_key"], json!(key));
    assert_eq!(wakeups[0]["reason"], "issue_comment_missing");
    assert_eq!(wakeups[0]["status"], "completed", "its run succeeded");
    let follow_up = h.row("runs", "run_id", run_of(&ran.phases[i][0]).0).await;
    assert_eq!(follow_up["context"]["wake_reason"], "issue_comment_missing");
    assert_eq!(follow_up["status"], "succeeded");

    // historical classification: done after the finish does not change the verdict
    let i = ran.index(&scenarios, "the issue as of the run's end");
    let run = h.row("runs", "run_id", main_run(&ran.worlds[i]).0).await;
    assert_eq!(run["liveness_state"], "plan_only");
}

#[tokio::test]
async fn stranded_todo_dispatch_then_escalation_end_to_end() {
    let (h, w, phases) = run_alone("stranded todo").await;
    let issue = h.row("issues", "issue_id", w.issue.0).await;
    assert_eq!(issue["status"], "blocked");
    assert_eq!(issue["assignee_agent_id"], json!(w.agent), "assignee kept");
    let comments = h.comments(w.issue.0).await;
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0]["author_agent_id"], Value::Null);
    assert_eq!(comments[0]["author_user_id"], Value::Null);
    let activity = h
        .json_rows(
            "SELECT to_jsonb(a) FROM activity_log a
             WHERE entity_id = $1 AND action = 'issue.updated' AND details->>'status' = 'blocked'",
            w.issue.0,
        )
        .await;
    assert_eq!(activity.len(), 1);
    let details = &activity[0]["details"];
    assert_eq!(activity[0]["actor_type"], "system");
    assert_eq!(
        details["source"],
        "heartbeat.reconcile_stranded_assigned_issue"
    );
    assert_eq!(details["previous_status"], "todo");
    assert_eq!(details["identifier"], "PAP-12");
    assert_eq!(details["latest_run_id"], json!(run_of(&phases[1])));
    assert_eq!(details["latest_run_status"], "failed");
    assert_eq!(details["latest_run_error_code"], "process_lost");
}

#[tokio::test]
async fn run_ending_right_after_an_escalation_sees_it_end_to_end() {
    let (h, w, _) = run_alone("a run ending right after an escalation").await;
    assert_eq!(
        h.row("issues", "issue_id", w.issue.0).await["status"],
        "blocked"
    );
}

#[tokio::test]
async fn stranded_in_progress_continuation_then_escalation_end_to_end() {
    let (h, w, _) = run_alone("stranded in_progress").await;
    assert_eq!(
        h.row("issues", "issue_id", w.issue.0).await["status"],
        "blocked"
    );
}

#[tokio::test]
async fn recovery_run_that_only_plans_is_continued_end_to_end() {
    let (h, w, phases) = run_alone("the recovery run only plans").await;
    let recovery = run_of(&phases[1]);
    let run = h.row("runs", "run_id", recovery.0).await;
    assert_eq!(run["liveness_state"], "plan_only");
    assert_eq!(run["context"]["retry_reason"], "issue_continuation_needed");
    let continued = run_of(&phases[2]);
    let next = h.row("runs", "run_id", continued.0).await;
    assert_eq!(
        next["context"]["liveness_continuation_source_run_id"],
        json!(recovery)
    );
    assert_eq!(
        h.row("issues", "issue_id", w.issue.0).await["status"],
        "in_progress"
    );
}

#[tokio::test]
async fn recovery_run_with_a_plan_revision_is_advanced_and_left_alone_end_to_end() {
    let (h, w, phases) = run_alone("the recovery run writes a plan revision").await;
    let run = h.row("runs", "run_id", run_of(&phases[1]).0).await;
    assert_eq!(run["liveness_state"], "advanced");
    assert_eq!(
        h.row("issues", "issue_id", w.issue.0).await["status"],
        "in_progress"
    );
}

#[tokio::test]
async fn user_assigned_issue_is_untouched_end_to_end() {
    let (h, w, _) = run_alone("a user-assigned todo").await;
    assert_eq!(
        h.row("issues", "issue_id", w.issue.0).await["status"],
        "todo"
    );
    let runs = h
        .json_rows(
            "SELECT to_jsonb(r) FROM runs r WHERE issue_id = $1",
            w.issue.0,
        )
        .await;
    assert_eq!(runs.len(), 1, "no recovery run");
}

#[tokio::test]
async fn silent_detached_run_gets_a_cancel_request_end_to_end() {
    let (h, w, _) = run_alone("a detached run silent").await;
    let run = h.row("runs", "run_id", main_run(&w).0).await;
    assert!(run["cancel_requested_at"].is_string());
    assert!(run["cancel_reason"]
        .as_str()
        .unwrap()
        .contains("silent for 15m"));
    assert_eq!(
        run["status"], "running",
        "the supervisor or watchdog ends it"
    );
}

#[tokio::test]
async fn a_stranded_requeue_then_continuations_go_out_at_once_end_to_end() {
    run_alone("a second apart: one stranded requeue").await;
}

#[tokio::test]
async fn the_sweep_never_competes_with_a_deferred_continuation_end_to_end() {
    run_alone("the sweep never competes").await;
}

#[tokio::test]
async fn a_storm_is_deferred_and_refused_visibly_and_every_deferral_ends_end_to_end() {
    let (h, w, phases) = run_alone("a storm").await;
    let actions = |action: &'static str| {
        let h = &h;
        async move {
            h.json_rows(
                &format!(
                    "SELECT details FROM activity_log WHERE entity_id = $1 AND action = '{action}' ORDER BY seq"
                ),
                w.issue.0,
            )
            .await
        }
    };
    let deferred = actions("issue.follow_up_deferred").await;
    assert_eq!(
        deferred.len(),
        6,
        "every deferral is on the issue's activity"
    );
    assert!(deferred[0]["due_at"].is_string());
    assert!(deferred[0]["reason"].as_str().unwrap().contains("back off"));
    let closed = actions("issue.follow_up_deferral_closed").await;
    let outcomes: Vec<&str> = closed
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        ["fired", "fired", "fired", "fired", "moot", "moot"]
    );
    let refused = actions("issue.follow_up_refused").await;
    assert_eq!(refused.len(), 12);
    let comments = h.comments(w.issue.0).await;
    let paused: Vec<&Value> = comments
        .iter()
        .filter(|c| {
            c["body"]
                .as_str()
                .unwrap()
                .starts_with("Automatic follow-ups of this issue are paused")
        })
        .collect();
    assert_eq!(
        paused.len(),
        1,
        "one comment at the ceiling, not one per refusal"
    );
    assert_eq!(paused[0]["author_user_id"], Value::Null);
    // the source run's timeline says its continuation waits, then that it went out
    let source = match &phases[0].iter().find_map(|e| match &e.data {
        events::EventData::IssueFollowUpDeferred(d) => d.run_id,
        _ => None,
    }) {
        Some(run) => *run,
        None => panic!("a deferral names its source run"),
    };
    let timeline = h
        .json_rows(
            "SELECT to_jsonb(type) FROM run_events e WHERE run_id = $1 AND type LIKE 'follow_up.%' ORDER BY seq",
            source.0,
        )
        .await;
    assert_eq!(
        timeline,
        [
            json!("follow_up.deferred"),
            json!("follow_up.deferral_closed")
        ]
    );
    // the fired continuations are real wakeups and queued runs in the read models
    let fired = h
        .json_rows(
            "SELECT to_jsonb(w) FROM wakeup_requests w
             WHERE issue_id = $1 AND reason = 'run_liveness_continuation'",
            w.issue.0,
        )
        .await;
    assert_eq!(fired.len(), 2 + 4);
}

#[tokio::test]
async fn sweep_refusal_is_recorded_once_end_to_end() {
    run_alone("a sweep refusal is recorded once").await;
}

#[tokio::test]
async fn a_restart_after_publish_before_mark_does_not_publish_twice() {
    use crate::world::PLAN_SENTENCE;
    let mut h = Harness::new(reconciler::engine::Policy::default()).await;
    let mut w = World::new();
    let run = RunId::new_random();
    let mut given = vec![
        w.agent("codex_local"),
        w.issue(events::IssueStatus::InProgress),
    ];
    given.extend(w.start(run));
    given.push(w.says(run, PLAN_SENTENCE));
    h.publish(&given).await;
    let inputs = h.last_seq().await as i64;
    while h.reconciler.position().await.unwrap() < inputs {
        h.reconciler
            .step(std::time::Duration::from_millis(200))
            .await
            .unwrap();
    }
    // Publish, then lose the marks: a crash between publishing and marking.
    // liveness, summary, result comment, continuation wakeup and run
    assert_eq!(h.reconciler.drain_outboxes().await.unwrap(), 5);
    let client = h.pool.get().await.unwrap();
    let schema = h.reconciler_schema_of(w.company);
    client
        .execute(
            &format!("UPDATE {schema}.outbox SET published = false"),
            &[],
        )
        .await
        .unwrap();
    let with_follow_ups = h.last_seq().await as i64;
    assert_eq!(with_follow_ups, inputs + 5);

    // Restart: the rows are held until the consumer has read up to the current head, where it
    // finds the earlier copies and marks them; nothing is published again, whatever JetStream's
    // duplicate window.
    let mut restarted = h
        .kit
        .reconciler(reconciler::engine::Policy::default())
        .await;
    assert_eq!(restarted.drain_outboxes().await.unwrap(), 0, "held");
    while restarted.position().await.unwrap() < with_follow_ups {
        restarted
            .step(std::time::Duration::from_millis(200))
            .await
            .unwrap();
    }
    assert_eq!(
        restarted.drain_outboxes().await.unwrap(),
        0,
        "seen, not republished"
    );
    let marked: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {schema}.outbox WHERE published AND seen_seq IS NOT NULL"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(marked, 5);
    assert_eq!(
        h.last_seq().await as i64,
        with_follow_ups,
        "nothing published twice"
    );
}

#[tokio::test]
async fn the_running_service_ticks_sweeps_and_publishes() {
    use crate::scenarios::lines;
    use std::time::Duration;
    // A stranded in_progress issue (its only run failed), and the service loop with a 1 s clock.
    let h = Harness::new(reconciler::engine::Policy::default()).await;
    let mut w = World::new();
    let run = RunId::new_random();
    let mut given = vec![
        w.agent("codex_local"),
        w.issue(events::IssueStatus::InProgress),
    ];
    given.push(w.queued(run, 1, 0));
    given.push(w.started(run));
    given.push(w.finish(
        run,
        events::RunOutcome::Failed,
        json!({}),
        Some(("adapter_failed", "boom")),
    ));
    h.publish(&given).await;
    let mut settings = reconciler::ReconcilerSettings::new(&h.ts.stream, h.subjects.clone());
    settings.tick_interval = Some(Duration::from_secs(1));
    settings.consumer = "service-under-test".into();
    settings.schema = "service_under_test".into();
    let service = testsupport::Reconcilers::start(h.pool.clone(), h.ts.jetstream(), settings).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(service.run(stopped));
    let company = w.company;
    let found = testsupport::eventually(
        Duration::from_secs(20),
        "a continuation recovery decided at a published tick",
        || {
            let h = &h;
            async move {
                let mine: Vec<Event> = h
                    .follow_ups()
                    .await
                    .into_iter()
                    .filter(|e| e.company_id == company)
                    .collect();
                mine.iter()
                    .any(|e| matches!(&e.data, events::EventData::WakeupRequested(_)))
                    .then_some(mine)
            }
        },
    )
    .await;
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
    assert_eq!(
        lines(&found),
        [
            "liveness failed: Run ended with failed (adapter_failed)",
            "summary r1",
            "wakeup issue_continuation_needed",
            "queued attempt=0 retries=0",
        ]
    );
    let ticks = h
        .history()
        .await
        .into_iter()
        .filter(|e| e.event_type() == events::EventType::ReconcilerTicked)
        .count();
    assert!(ticks >= 1, "the clock published ticks");
}

#[tokio::test]
async fn a_failed_batch_is_decided_again_not_read_past() {
    use events::{EventData, IssueStatus};
    use reconciler::engine::Policy;
    use reconciler::Outcome;
    use std::time::Duration;
    use testsupport::Deadline;

    let mut h = Harness::new(Policy::default()).await;
    let mut w = World::new();
    let run = main_run(&w);
    let mut events = vec![w.agent("codex_local"), w.issue(IssueStatus::InProgress)];
    events.extend(w.start(run));
    events.push(w.says(run, "Implemented the query; tests pass."));
    h.publish(&events).await;

    // The outbox refuses every row: the batch that decides the run's end fails and rolls back.
    let schema = h.reconciler_schema_of(w.company);
    let admin = h.pool.get().await.unwrap();
    admin
        .batch_execute(&format!(
            "ALTER TABLE {schema}.outbox ADD CONSTRAINT refuse_all CHECK (false) NOT VALID"
        ))
        .await
        .unwrap();
    let deadline = Deadline::after(Duration::from_secs(20));
    loop {
        assert!(
            !deadline.passed(),
            "the batch with the run's end never failed"
        );
        match h.reconciler.step(Duration::from_millis(200)).await {
            Err(_) => break,
            Ok(Outcome::Decided(report)) => assert_eq!(report.follow_ups, 0),
            Ok(Outcome::Idle) => {}
        }
    }
    // More events arrive after the failed batch; then the outbox works again.
    let mut later = World::new();
    h.publish(&[later.agent("codex_local"), later.issue(IssueStatus::Todo)])
        .await;
    admin
        .batch_execute(&format!(
            "ALTER TABLE {schema}.outbox DROP CONSTRAINT refuse_all"
        ))
        .await
        .unwrap();
    h.settle().await;

    // The failed batch was read again from the stored position and decided.
    let follow_ups = h.follow_ups().await;
    assert!(
        follow_ups.iter().any(|e| matches!(
            &e.data,
            EventData::RunLivenessClassified(l) if l.run_id == run
        )),
        "the run's end was skipped: {:?}",
        lines(&follow_ups)
    );
}
