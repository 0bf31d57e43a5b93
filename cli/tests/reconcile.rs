//! The reconciler under crashes: `runledger reconcile` (with `RUNLEDGER_TEST_PARTITIONS` > 1 a
//! `runledger worker` instance, running every partition's reconciler) is killed with SIGKILL
//! again and again while it decides a long, varied history (plans, empty answers, evidence,
//! silent work, process losses, failures, cancels, detached runs, stranded and escalated issues,
//! storm deferrals and refusals, ticks); afterwards the follow-ups it published must be exactly
//! — ids, types, data, each once — those of an uninterrupted reconciler deciding the same history
//! on another stream. Then `reconcile --dry-run` on the crashed stream finds nothing to add or
//! remove (in any partition). `runledger reconcile` itself refuses a partitioned stream, naming
//! the worker.

use chrono::{TimeDelta, TimeZone, Utc};
use events::document::DocumentRevised;
use events::issue::{IssueCommentAdded, IssueCreated};
use events::run::*;
use events::*;
use producers::workload::Rng;
use reconciler::engine::Policy;
use reconciler::Outcome;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::Duration;
use testsupport::{Deadline, Kit, Reconcilers};

const TICK: Duration = Duration::from_secs(30);
/// Shorter than the default, so some detached runs of the history stay silent long enough.
const SILENCE: TimeDelta = TimeDelta::minutes(2);
const PLAN: &str = "I will inspect the repo next and then implement the fix.";

/// A deterministic history of `issues` issues with `runs` runs each, of six companies (so that
/// with partitions several partitions decide), their events interleaved, and a reconciler tick
/// every 30 s of event time.
fn history(seed: u64, issues: usize, runs: usize) -> Vec<Event> {
    let mut rng = Rng::new(seed);
    let first = rng.uuid();
    // The others derived from the first, so the random draws (and the history) stay those of
    // one company.
    let companies: Vec<CompanyId> = (0..6u8)
        .map(|c| match c {
            0 => CompanyId(first),
            c => CompanyId(uuid::Uuid::new_v5(&first, &[c])),
        })
        .collect();
    let start = Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap();
    let mut scripts: Vec<Vec<EventData>> = Vec::new();
    for i in 0..issues {
        let agent = AgentId(rng.uuid());
        let issue = IssueId(rng.uuid());
        // profiles: 0 recovered-once todo issues that fail again (escalated), 1 ordinary work,
        // 2 issues already done (retries refused), 3 issues whose runs keep getting lost (storm)
        let profile = i % 4;
        let status = match profile {
            0 => IssueStatus::Todo,
            2 => IssueStatus::Done,
            _ => IssueStatus::InProgress,
        };
        let mut s = vec![
            EventData::AgentRegistered(agent::AgentRegistered {
                agent_id: agent,
                name: format!("agent-{i}"),
                role: "engineer".into(),
                adapter_type: "codex_local".into(),
                adapter_config: Map::new(),
                status: AgentStatus::Idle,
                extra: Map::new(),
            }),
            EventData::IssueCreated(IssueCreated {
                issue_id: issue,
                identifier: format!("CR-{i}"),
                title: "Implement feature".into(),
                description: Some("## Objective\nWork.\n\n## Acceptance Criteria\n- done".into()),
                status,
                priority: Priority::Medium,
                assignee_agent_id: Some(agent),
                assignee_user_id: None,
                parent_id: None,
                extra: Map::new(),
            }),
        ];
        for _ in 0..runs {
            script_run(&mut rng, &mut s, agent, issue, profile);
        }
        scripts.push(s);
    }
    // Interleave the scripts; event times advance 7 s per event; ticks in between.
    let mut cursors = vec![0usize; scripts.len()];
    let mut events = Vec::new();
    let mut clock = start;
    let mut next_tick = reconciler::tick::slot_of(start, TICK) + 1;
    loop {
        let open: Vec<usize> = (0..scripts.len())
            .filter(|&i| cursors[i] < scripts[i].len())
            .collect();
        if open.is_empty() {
            break;
        }
        let pick = open[rng.below(open.len() as u64) as usize];
        let data = scripts[pick][cursors[pick]].clone();
        let company = companies[pick % companies.len()];
        cursors[pick] += 1;
        clock += TimeDelta::seconds(7);
        while reconciler::tick::slot_of(clock, TICK) >= next_tick {
            events.push(reconciler::tick::tick(TICK, next_tick));
            next_tick += 1;
        }
        let data = match data {
            EventData::RunActivity(mut a) => {
                a.at = clock;
                EventData::RunActivity(a)
            }
            other => other,
        };
        events.push(Event::with_id(
            EventId(rng.uuid()),
            company,
            "crash-test",
            clock,
            data,
        ));
    }
    events
}

fn context(issue: IssueId, marker: Option<&str>) -> Map<String, Value> {
    let mut context = json!({"issue_id": issue, "wake_reason": "issue_assigned"})
        .as_object()
        .cloned()
        .unwrap_or_default();
    if let Some(marker) = marker {
        context.insert("retry_reason".into(), marker.into());
    }
    context
}

fn finished(run: RunId, outcome: RunOutcome, summary: &str, error: Option<&str>) -> EventData {
    EventData::RunFinished(RunFinished {
        run_id: run,
        outcome,
        exit_code: Some(i32::from(outcome != RunOutcome::Succeeded)),
        signal: None,
        error: error.map(str::to_owned),
        error_code: error.map(|_| "adapter_failed".to_owned()),
        result: if summary.is_empty() {
            Map::new()
        } else {
            json!({ "summary": summary })
                .as_object()
                .cloned()
                .unwrap_or_default()
        },
        stdout_excerpt: None,
        stderr_excerpt: None,
        usage: None,
        extra: Map::new(),
    })
}

fn script_run(
    rng: &mut Rng,
    s: &mut Vec<EventData>,
    agent: AgentId,
    issue: IssueId,
    profile: usize,
) {
    let run = RunId(rng.uuid());
    let marker = match (profile, rng.below(6)) {
        (0, _) => Some("assignment_recovery"),
        (1, 0) => Some("issue_continuation_needed"),
        _ => None,
    };
    let retries = u32::from(profile == 0 || (profile == 1 && rng.below(3) == 0));
    s.push(EventData::RunQueued(RunQueued {
        run_id: run,
        agent_id: agent,
        wakeup_id: None,
        issue_id: Some(issue),
        invocation_source: InvocationSource::Assignment,
        trigger_detail: TriggerDetail::System,
        context: context(issue, marker),
        retry_of_run_id: None,
        process_loss_retry_count: retries,
        continuation_attempt: rng.below(3) as u32,
        extra: Map::new(),
    }));
    s.push(EventData::RunStarted(RunStarted {
        run_id: run,
        agent_id: agent,
        issue_id: Some(issue),
        host: "crash-host".into(),
        pid: Some(4000 + rng.below(1000) as i32),
        pgid: None,
        process_started_at: Some(1),
        supervisor_pid: Some(1),
        extra: Map::new(),
    }));
    let activity = |kind| {
        EventData::RunActivity(RunActivity {
            run_id: run,
            kind,
            message: None,
            at: Utc::now(), // replaced by the event time when interleaved
            extra: Map::new(),
        })
    };
    let ending = match profile {
        0 => [3, 5, 6][rng.below(3) as usize],
        3 => [3, 4, 3, 0][rng.below(4) as usize],
        _ => rng.below(10),
    };
    match ending {
        0 => s.push(finished(run, RunOutcome::Succeeded, PLAN, None)),
        1 => s.push(finished(run, RunOutcome::Succeeded, "", None)),
        2 => {
            s.push(EventData::IssueCommentAdded(IssueCommentAdded {
                comment_id: CommentId(rng.uuid()),
                issue_id: issue,
                body: "progress".into(),
                author_agent_id: Some(agent),
                author_user_id: None,
                run_id: Some(run),
                extra: Map::new(),
            }));
            s.push(activity(ActivityKind::ToolCall));
            s.push(finished(run, RunOutcome::Succeeded, "Done.", None));
        }
        3 | 4 => s.push(EventData::RunProcessLost(RunProcessLost {
            run_id: run,
            pid: None,
            pgid: None,
            descendant_group_terminated: false,
            message: "Process lost -- child pid is no longer running".into(),
            extra: Map::new(),
        })),
        5 => s.push(finished(
            run,
            RunOutcome::Failed,
            "",
            Some("run failed before issue advanced"),
        )),
        6 => s.push(finished(run, RunOutcome::Cancelled, "", None)),
        // worked but said nothing: a missing-comment follow-up (or its refusal)
        9 => {
            s.push(activity(ActivityKind::ToolCall));
            s.push(finished(run, RunOutcome::Succeeded, "", None));
        }
        7 => {
            s.push(EventData::RunProcessDetached(RunProcessDetached {
                run_id: run,
                pid: 4242,
                host: "crash-host".into(),
                extra: Map::new(),
            }));
            // silent for a while, then it ends anyway (after the silence timeout, sometimes)
            for _ in 0..rng.below(4) {
                s.push(activity(ActivityKind::Output));
            }
            s.push(finished(
                run,
                RunOutcome::Succeeded,
                "Next steps:\n- inspect",
                None,
            ));
        }
        _ => {
            s.push(EventData::DocumentRevised(DocumentRevised {
                document_id: DocumentId(uuid::Uuid::new_v5(&issue.0, b"plan")),
                issue_id: Some(issue),
                key: Some("plan".into()),
                revision_id: RevisionId(rng.uuid()),
                revision_number: 1 + rng.below(20) as u32,
                title: "Plan".into(),
                format: "markdown".into(),
                body: "# Plan".into(),
                change_summary: None,
                run_id: Some(run),
                agent_id: Some(agent),
                extra: Map::new(),
            }));
            s.push(finished(
                run,
                RunOutcome::Succeeded,
                "I cannot proceed: blocked.",
                None,
            ));
        }
    }
}

/// The reconciler's follow-ups in `kit`'s stream (ticks excluded) as (id → JSON), and how many
/// copies of each there are.
async fn follow_ups(kit: &Kit) -> (BTreeMap<EventId, Value>, usize) {
    let events = kit.follow_ups().await;
    let copies = events.len();
    let found = events.into_iter().map(|e| (e.id, e.to_value())).collect();
    (found, copies)
}

async fn last(kit: &Kit) -> i64 {
    kit.last_seq().await as i64
}

/// The reconciler of `stream` as a process: `runledger reconcile`, or with partitions a
/// `runledger worker` instance (its projector folds the read models beside).
fn spawn_reconciler(stream: &Kit) -> Child {
    stream
        .reader_process(
            env!("CARGO_BIN_EXE_runledger"),
            "reconcile",
            "reconcile-test",
        )
        .env("RUNLEDGER_RECONCILER_BATCH_SIZE", "7")
        .env("RUNLEDGER_TICK_INTERVAL", "0s")
        .env("RUNLEDGER_DETACHED_SILENCE_TIMEOUT", "2m")
        .env("RUNLEDGER_RETRY_CEILING", "3")
        .spawn()
        .expect("runledger binary runs")
}

/// (position, unpublished follow-ups) of the reconciler process's state in `kit`'s database:
/// the stream sequence every partition has decided, and what its outboxes still hold.
async fn progress(kit: &Kit) -> (i64, i64) {
    let Ok(client) = kit.db.client().await else {
        return (0, 1);
    };
    let settings = kit.reconciler_settings(Policy::default());
    Reconcilers::stored_progress(&client, &kit.js(), &settings).await
}

/// How many follow-ups a `reconcile --dry-run` found identical, over every partition.
fn identical(stdout: &str) -> usize {
    stdout
        .lines()
        .filter(|l| l.starts_with("dry run of causes"))
        .filter_map(|l| {
            l.strip_suffix(" identical")?
                .rsplit(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

/// `runledger reconcile --dry-run` on `kit`'s stream, with the crash tests' policy.
fn dry_run(kit: &Kit, from_seq: u64) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runledger"))
        .args([
            "reconcile",
            "--dry-run",
            "--from-seq",
            &from_seq.to_string(),
        ])
        .env("RUNLEDGER_DETACHED_SILENCE_TIMEOUT", "2m")
        .env("RUNLEDGER_RETRY_CEILING", "3")
        .env("RUNLEDGER_PARTITIONS", kit.partitions().to_string())
        .env("NATS_URL", &kit.ts.url)
        .env("DATABASE_URL", kit.db.url())
        .env("RUNLEDGER_STREAM", &kit.ts.stream)
        .env("RUNLEDGER_SUBJECT_PREFIX", &kit.ts.prefix)
        .output()
        .unwrap()
}

/// Runs an in-process reconciler on `stream` until it has decided everything and published it.
async fn clean_run(stream: &Kit) {
    let mut policy = Policy {
        silence_timeout: SILENCE,
        ..Policy::default()
    };
    policy.storm.ceiling = 3;
    let mut reconciler = stream.reconciler(policy).await;
    let deadline = Deadline::after(Duration::from_secs(120));
    loop {
        assert!(!deadline.passed(), "the clean reconciler did not settle");
        let stepped = reconciler.step(Duration::from_millis(100)).await.unwrap();
        let published = reconciler.drain_outboxes().await.unwrap();
        let caught_up = reconciler.position().await.unwrap() >= last(stream).await;
        if stepped == Outcome::Idle && published == 0 && caught_up {
            break;
        }
    }
}

#[tokio::test]
async fn repeated_kill_9_emits_exactly_the_follow_ups_of_an_uninterrupted_run() {
    let events = history(11, 24, 12);
    let (first, second) = events.split_at(events.len() / 2);

    let clean_stream = Kit::new().await;
    clean_stream.publish(&events).await;
    clean_run(&clean_stream).await;

    let crashed_stream = Kit::new().await;
    crashed_stream.publish(first).await;
    // About a dozen kills whatever the partition count (each new instance waits out the lease).
    let stride = 40 * i64::from(crashed_stream.partitions());
    let mut kills = 0;
    let mut last_seen = 0;
    let mut published_rest = false;
    loop {
        let mut child = spawn_reconciler(&crashed_stream);
        let target = last_seen + stride;
        let deadline = Deadline::after(Duration::from_secs(60));
        let settled = loop {
            let (position, unpublished) = progress(&crashed_stream).await;
            let last = last(&crashed_stream).await;
            if published_rest && position >= last && unpublished == 0 {
                break true;
            }
            if position >= target || deadline.passed() {
                break false;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the reconciler exited by itself"
            );
            tokio::time::sleep(Duration::from_millis(5)).await; // a poll interval
        };
        child.kill().unwrap(); // SIGKILL, wherever it is
        child.wait().unwrap();
        last_seen = progress(&crashed_stream).await.0;
        if settled {
            // settled once; make sure nothing was left half-done by the last kill
            let (position, unpublished) = progress(&crashed_stream).await;
            if position >= last(&crashed_stream).await && unpublished == 0 {
                break;
            }
            continue;
        }
        kills += 1;
        if kills == 3 && !published_rest {
            crashed_stream.publish(second).await;
            published_rest = true;
        }
        assert!(kills < 400, "no progress: position {last_seen}");
    }
    assert!(kills >= 5, "the reconciler was killed {kills} times");

    let (clean, clean_copies) = follow_ups(&clean_stream).await;
    let (crashed, crashed_copies) = follow_ups(&crashed_stream).await;
    assert_eq!(
        clean_copies,
        clean.len(),
        "the clean run published each once"
    );
    assert_eq!(
        crashed_copies,
        crashed.len(),
        "the crashed run published each follow-up once"
    );
    let only_clean: Vec<_> = clean.keys().filter(|k| !crashed.contains_key(k)).collect();
    let only_crashed: Vec<_> = crashed.keys().filter(|k| !clean.contains_key(k)).collect();
    assert!(
        only_clean.is_empty() && only_crashed.is_empty(),
        "follow-ups differ: {} only in the clean run, {} only in the crashed run",
        only_clean.len(),
        only_crashed.len()
    );
    assert_eq!(clean, crashed, "same ids, types and data");
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for value in clean.values() {
        *by_type
            .entry(value["type"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    for value in clean.values() {
        *by_rule
            .entry(value["rule"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    eprintln!("{kills} kills; follow-ups by type: {by_type:?}, by rule: {by_rule:?}");
    for rule in ["result_comment", "missing_comment", "liveness_continuation"] {
        assert!(
            by_rule.get(rule).is_some_and(|n| *n > 0),
            "no {rule}: {by_rule:?}"
        );
    }
    for t in [
        "run.liveness_classified",
        "document.revised",
        "wakeup.requested",
        "run.queued",
        "issue.comment_added",
        "issue.updated",
        "run.cancel_requested",
        "issue.follow_up_refused",
        "issue.follow_up_deferred",
        "issue.follow_up_deferral_closed",
    ] {
        assert!(
            by_type.get(t).is_some_and(|n| *n > 0),
            "no {t}: {by_type:?}"
        );
    }

    // The dry run of the crashed stream agrees with what is in it.
    let out = dry_run(&crashed_stream, 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dry run: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(identical(&stdout), clean.len(), "{stdout}");
}

#[tokio::test]
async fn dry_run_from_a_sequence_lists_what_is_missing() {
    let stream = Kit::new().await;
    let events = history(5, 4, 4);
    stream.publish(&events).await;
    let published = stream.last_seq().await;
    let middle = published / 2;
    let out = dry_run(&stream, middle);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Nothing was ever reconciled: every decision is missing, nothing was published.
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(", 0 in the stream, 0 identical"),
        "{stdout}"
    );
    let missing: Vec<&str> = stdout.lines().filter(|l| l.starts_with("+ ")).collect();
    assert!(!missing.is_empty(), "{stdout}");
    for line in &missing {
        let seq: u64 = line
            .rsplit("cause seq ")
            .next()
            .and_then(|rest| rest.split(')').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(seq >= middle, "{line}");
    }
    assert_eq!(
        stream.last_seq().await,
        published,
        "the dry run published nothing"
    );
}

/// Waits until the reconciler state in `kit`'s database has decided the whole stream and
/// published every follow-up.
async fn settled(kit: &Kit) {
    let deadline = Deadline::after(Duration::from_secs(60));
    loop {
        let (position, unpublished) = progress(kit).await;
        if position >= last(kit).await && unpublished == 0 {
            return;
        }
        assert!(!deadline.passed(), "the reconciler did not settle");
        tokio::time::sleep(Duration::from_millis(5)).await; // a poll interval
    }
}

fn kill_9(mut child: Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[tokio::test]
async fn a_deferral_due_after_a_kill_9_fires_exactly_once() {
    // Three plan-only runs of one issue end a second apart: two continuations go out at once,
    // the third (beyond the bounded flow) is deferred 30 s.
    let company = CompanyId::new_random();
    let (agent, issue) = (AgentId::new_random(), IssueId::new_random());
    let start = Utc.with_ymd_and_hms(2026, 5, 2, 8, 0, 0).unwrap();
    let mut clock = start;
    let mut data = vec![
        EventData::AgentRegistered(agent::AgentRegistered {
            agent_id: agent,
            name: "agent".into(),
            role: "engineer".into(),
            adapter_type: "codex_local".into(),
            adapter_config: Map::new(),
            status: AgentStatus::Idle,
            extra: Map::new(),
        }),
        EventData::IssueCreated(IssueCreated {
            issue_id: issue,
            identifier: "KILL-1".into(),
            title: "Implement feature".into(),
            description: None,
            status: IssueStatus::InProgress,
            priority: Priority::Medium,
            assignee_agent_id: Some(agent),
            assignee_user_id: None,
            parent_id: None,
            extra: Map::new(),
        }),
    ];
    let runs: Vec<RunId> = (0..3).map(|_| RunId::new_random()).collect();
    for run in &runs {
        data.push(EventData::RunQueued(RunQueued {
            run_id: *run,
            agent_id: agent,
            wakeup_id: None,
            issue_id: Some(issue),
            invocation_source: InvocationSource::Assignment,
            trigger_detail: TriggerDetail::System,
            context: context(issue, None),
            retry_of_run_id: None,
            process_loss_retry_count: 0,
            continuation_attempt: 0,
            extra: Map::new(),
        }));
        data.push(EventData::RunStarted(RunStarted {
            run_id: *run,
            agent_id: agent,
            issue_id: Some(issue),
            host: "crash-host".into(),
            pid: Some(4242),
            pgid: None,
            process_started_at: Some(1),
            supervisor_pid: Some(1),
            extra: Map::new(),
        }));
    }
    for run in &runs {
        data.push(finished(*run, RunOutcome::Succeeded, PLAN, None));
    }
    let events: Vec<Event> = data
        .into_iter()
        .map(|d| {
            clock += TimeDelta::seconds(1);
            Event::new(company, "crash-test", clock, d)
        })
        .collect();
    let kit = Kit::new().await;
    kit.publish(&events).await;
    let child = spawn_reconciler(&kit);
    settled(&kit).await;
    kill_9(child);
    let deferred: Vec<Event> = kit
        .follow_ups()
        .await
        .into_iter()
        .filter(|e| e.event_type() == EventType::IssueFollowUpDeferred)
        .collect();
    assert_eq!(deferred.len(), 1, "the third continuation is deferred");
    let EventData::IssueFollowUpDeferred(d) = &deferred[0].data else {
        unreachable!()
    };
    assert!(d.due_at > clock, "not due yet");

    // The tick that makes it due; the reconciler is killed as soon as it decided the tick
    // (before or after publishing), then runs again, and again for a later tick.
    let slot = reconciler::tick::slot_of(d.due_at, TICK) + 1;
    kit.publish(&[reconciler::tick::tick(TICK, slot)]).await;
    let tick_seq = last(&kit).await;
    let child = spawn_reconciler(&kit);
    let deadline = Deadline::after(Duration::from_secs(60));
    while progress(&kit).await.0 < tick_seq {
        assert!(!deadline.passed(), "the tick was not decided");
        tokio::time::sleep(Duration::from_millis(1)).await; // a poll interval
    }
    kill_9(child);
    let child = spawn_reconciler(&kit);
    settled(&kit).await;
    kill_9(child);
    kit.publish(&[reconciler::tick::tick(TICK, slot + 1)]).await;
    let child = spawn_reconciler(&kit);
    settled(&kit).await;
    kill_9(child);

    let (found, copies) = follow_ups(&kit).await;
    assert_eq!(copies, found.len(), "each follow-up is in the stream once");
    let fired = |id: EventId| found.get(&id).cloned();
    let wakeup = fired(d.wakeup_event_id).expect("the deferred wakeup went out");
    let run = fired(d.run_event_id).expect("the deferred run went out");
    assert_eq!(
        wakeup["data"],
        serde_json::to_value(&d.wakeup).unwrap(),
        "unchanged"
    );
    assert_eq!(
        run["data"],
        serde_json::to_value(&d.run).unwrap(),
        "unchanged"
    );
    let closed: Vec<&Value> = found
        .values()
        .filter(|e| e["type"] == "issue.follow_up_deferral_closed")
        .collect();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0]["data"]["outcome"], "fired");
    assert_eq!(closed[0]["data"]["deferral_id"], json!(deferred[0].id));

    // The dry run decides the same follow-ups.
    let out = dry_run(&kit, 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "dry run: {stdout}");
    assert_eq!(identical(&stdout), found.len(), "{stdout}");
}
