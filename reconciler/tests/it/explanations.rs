//! Decision explanations: every follow-up carries its `decision` (rule, cause, inputs, sentence).
//! For the reference scenarios the sentences and the inputs are asserted through the simulator;
//! end to end, the projector folds them into `decisions`, `runledger`'s query reads them back with
//! the cause's stream sequence, and a replay rebuilds the same table.

use crate::decisions::simulate;
use crate::e2e::run;
use crate::harness::Harness;
use crate::scenarios::{run_end_scenarios, tick_scenarios, Scenario};
use events::decision::Decision;
use events::{Event, EventType};
use serde_json::{json, Value};

fn scenario(name: &str) -> Scenario {
    run_end_scenarios()
        .into_iter()
        .chain(tick_scenarios())
        .find(|s| s.name.starts_with(name))
        .unwrap_or_else(|| panic!("no scenario named {name}"))
}

/// Every follow-up's explanation.
fn explained(events: &[Event]) -> Vec<(EventType, Decision)> {
    events
        .iter()
        .map(|e| {
            let d = Decision::of(e).unwrap_or_else(|| panic!("{} is explained", e.event_type()));
            assert_eq!(
                Some(&Value::String(d.rule.clone())),
                e.extensions.get("rule"),
                "the decision names the rule attribute's rule"
            );
            (e.event_type(), d)
        })
        .collect()
}

/// One expected explanation: in phase `phase` (1-based), the first follow-up of `event_type` and
/// `rule` is caused by `cause`, reads `sentence` and its inputs include `inputs`.
struct Expect {
    phase: usize,
    event_type: EventType,
    rule: &'static str,
    cause: EventType,
    sentence: &'static str,
    inputs: Value,
}

fn check(name: &str, expected: &[Expect]) {
    let (_, _, phases) = simulate(&scenario(name));
    for e in expected {
        let found = explained(&phases[e.phase - 1])
            .into_iter()
            .find(|(t, d)| *t == e.event_type && d.rule == e.rule)
            .unwrap_or_else(|| {
                panic!(
                    "{name}: phase {}: no {} of {}",
                    e.phase, e.event_type, e.rule
                )
            })
            .1;
        assert_eq!(found.sentence, e.sentence, "{name}: {}", e.event_type);
        assert_eq!(found.cause.event_type, e.cause.as_str(), "{name}: cause");
        for (key, value) in e.inputs.as_object().unwrap() {
            assert_eq!(
                found.inputs.get(key),
                Some(value),
                "{name}: {} input `{key}` in {:?}",
                e.event_type,
                found.inputs
            );
        }
    }
}

#[test]
fn every_follow_up_of_the_catalogue_is_explained() {
    for s in run_end_scenarios().into_iter().chain(tick_scenarios()) {
        let (_, _, phases) = simulate(&s);
        for (_, d) in explained(&phases.concat()) {
            assert!(!d.sentence.is_empty(), "{}", s.name);
            assert!(d.inputs.contains_key("issue_status"), "{}", s.name);
        }
    }
}

#[test]
fn process_loss_retry_is_explained() {
    check(
        "process loss with a dead pid",
        &[Expect {
            phase: 1,
            event_type: EventType::RunQueued,
            rule: "process_lost_retry",
            cause: EventType::RunProcessLost,
            sentence: "requeued once: last run failed with process_lost; no recovery used yet",
            inputs: json!({"issue_status": "in_progress", "run_status": "failed",
                "run_error_code": "process_lost", "liveness": "failed",
                "process_loss_retries": 0, "storm_granted_in_window": 0, "storm_deferred": 0}),
        }],
    );
}

#[test]
fn stranded_requeue_and_escalation_are_explained() {
    check(
        "stranded todo: one dispatch",
        &[
            Expect {
                phase: 2,
                event_type: EventType::RunQueued,
                rule: "stranded_dispatch",
                cause: EventType::ReconcilerTicked,
                sentence: "run queued: issue todo with no live run; last run failed with \
                           process_lost; no recovery tried yet",
                inputs: json!({"issue_status": "todo", "run_status": "failed",
                    "run_retry_reason": null, "storm_granted_in_window": 0}),
            },
            Expect {
                phase: 5,
                event_type: EventType::IssueUpdated,
                rule: "stranded_escalation",
                cause: EventType::ReconcilerTicked,
                sentence: "issue set to blocked: issue todo with no live run; last run failed \
                           with process_lost; it was already a recovery (assignment_recovery)",
                inputs: json!({"issue_status": "todo", "run_status": "failed",
                    "run_error_code": "process_lost", "run_retry_reason": "assignment_recovery",
                    "storm_granted_in_window": 1}),
            },
        ],
    );
}

#[test]
fn liveness_continuation_is_explained() {
    check(
        "empty_response at attempt 1",
        &[
            Expect {
                phase: 1,
                event_type: EventType::RunLivenessClassified,
                rule: "liveness",
                cause: EventType::RunFinished,
                sentence: "run classified empty_response (Run succeeded without useful output \
                           or concrete action evidence): last run succeeded",
                inputs: json!({"run_status": "succeeded", "liveness": "empty_response"}),
            },
            Expect {
                phase: 1,
                event_type: EventType::RunQueued,
                rule: "liveness_continuation",
                cause: EventType::RunFinished,
                sentence: "run queued: last run ended empty_response; continuation attempt 2 \
                           of the chain",
                inputs: json!({"issue_status": "in_progress", "liveness": "empty_response",
                    "continuation_attempt": 1, "storm_deferred": 0}),
            },
        ],
    );
}

#[test]
fn deferrals_fired_moot_and_the_refusal_at_the_ceiling_are_explained() {
    check(
        "a storm: 20 plan-only runs",
        &[
            Expect {
                phase: 1,
                event_type: EventType::IssueFollowUpDeferred,
                rule: "liveness_continuation",
                cause: EventType::RunFinished,
                sentence: "run_liveness_continuation deferred until 2026-04-01T09:01:14Z \
                           (automatic wakeups of this issue back off: wakeup 1 beyond the \
                           bounded flows within 1h waits 30s after the previous one): last run \
                           ended plan_only; continuation attempt 1 of the chain",
                inputs: json!({"liveness": "plan_only", "storm_granted_in_window": 2,
                    "storm_deferred": 0, "storm_ceiling": 6}),
            },
            Expect {
                phase: 1,
                event_type: EventType::IssueFollowUpRefused,
                rule: "liveness_continuation",
                cause: EventType::RunFinished,
                sentence: "run_liveness_continuation refused (6 automatic wakeups of this issue \
                           beyond the bounded flows in the last 1h (ceiling 6)): last run ended \
                           plan_only; continuation attempt 1 of the chain",
                inputs: json!({"storm_granted_in_window": 2, "storm_deferred": 6,
                    "storm_ceiling": 6}),
            },
            Expect {
                phase: 1,
                event_type: EventType::IssueCommentAdded,
                rule: "storm_ceiling",
                cause: EventType::RunFinished,
                sentence: "commented on the issue: 2 automatic wakeups granted and 6 deferred \
                           in the window, ceiling 6 beyond the bounded flows",
                inputs: json!({"storm_ceiling": 6}),
            },
            Expect {
                phase: 2,
                event_type: EventType::RunQueued,
                rule: "liveness_continuation",
                cause: EventType::ReconcilerTicked,
                sentence: "run queued when its deferral fell due: last run ended plan_only; \
                           continuation attempt 1 of the chain",
                inputs: json!({"liveness": "plan_only", "storm_deferred": 6}),
            },
            Expect {
                phase: 2,
                event_type: EventType::IssueFollowUpDeferralClosed,
                rule: "liveness_continuation",
                cause: EventType::ReconcilerTicked,
                sentence: "deferred run_liveness_continuation fired (due at \
                           2026-04-01T09:01:14Z): last run ended plan_only; continuation \
                           attempt 1 of the chain",
                inputs: json!({"issue_status": "in_progress"}),
            },
            Expect {
                phase: 4,
                event_type: EventType::IssueFollowUpDeferralClosed,
                rule: "liveness_continuation",
                cause: EventType::ReconcilerTicked,
                sentence: "deferred run_liveness_continuation dropped as moot (a person \
                           commented on the issue since): last run ended plan_only; \
                           continuation attempt 1 of the chain",
                inputs: json!({"storm_deferred": 2, "storm_granted_in_window": 6}),
            },
        ],
    );
}

#[test]
fn a_refusal_for_a_done_issue_is_explained() {
    check(
        "process loss on a done issue",
        &[Expect {
            phase: 1,
            event_type: EventType::IssueFollowUpRefused,
            rule: "process_lost_retry",
            cause: EventType::RunProcessLost,
            sentence: "process_lost_retry refused (issue is done: no retries for finished \
                       issues): last run failed with process_lost; no recovery used yet",
            inputs: json!({"issue_status": "done", "run_error_code": "process_lost"}),
        }],
    );
}

/// The `decisions` rows of the live schema, newest first, as the API and `runledger explain`
/// read them (the cause's stream sequence joined from `folded_events`).
async fn decision_rows(h: &Harness) -> Vec<Value> {
    let client = h.pool.get().await.unwrap();
    client
        .query(
            "SELECT jsonb_build_object('event_id', d.event_id, 'rule', d.rule,
                    'event_type', d.event_type, 'issue_id', d.issue_id, 'run_id', d.run_id,
                    'cause_type', d.cause_type, 'cause_seq', f.seq, 'inputs', d.inputs,
                    'sentence', d.sentence)
             FROM public.decisions d LEFT JOIN public.folded_events f ON f.event_id = d.cause_id
             ORDER BY d.seq DESC, d.event_id DESC",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn decisions_are_folded_end_to_end_and_identical_after_a_replay() {
    use projector::replay::{replay, ReplayMode, ReplayOutcome, ReplayPlan};
    let storm = scenario("a storm: 20 plan-only runs");
    let mut h = Harness::new(storm.policy.clone()).await;
    let ran = run(&mut h, std::slice::from_ref(&storm)).await;
    let follow_ups = ran.phases[0].concat();

    // One row per follow-up, with the explanation the stream carries, and its cause's sequence.
    let rows = decision_rows(&h).await;
    assert_eq!(
        rows.len(),
        follow_ups.len(),
        "every follow-up is a decision"
    );
    for event in &follow_ups {
        let d = Decision::of(event).unwrap();
        let row = rows
            .iter()
            .find(|r| r["event_id"] == json!(event.id.to_string()))
            .unwrap_or_else(|| panic!("{} is in decisions", event.id));
        assert_eq!(row["sentence"], json!(d.sentence));
        assert_eq!(row["rule"], json!(d.rule));
        assert_eq!(row["cause_type"], json!(d.cause.event_type));
        assert_eq!(row["inputs"], Value::Object(d.inputs.clone()));
        assert!(
            row["cause_seq"].as_i64().unwrap() > 0,
            "the cause was folded"
        );
        assert_eq!(row["issue_id"], d.inputs["issue_id"]);
    }
    for outcome in ["deferred", "refused (", "fired (", "dropped as moot ("] {
        assert!(
            rows.iter()
                .any(|r| r["sentence"].as_str().unwrap().contains(outcome)),
            "a decision says {outcome}"
        );
    }

    // A rebuild from the stream gives the same table.
    let scratch = h.db.pool_in("rebuilt");
    let plan = ReplayPlan {
        live_schema: "public".into(),
        into: "rebuilt".into(),
        consumer: h.projector_settings().consumer.clone(),
        stream: h.ts.stream.clone(),
        subjects: h.subjects.clone(),
        from_seq: None,
        to_seq: None,
        batch_size: 1000,
        mode: ReplayMode::DryRun,
    };
    let outcome = replay(&h.pool, &scratch, &h.js(), &plan, |_| {})
        .await
        .expect("the replay runs");
    let ReplayOutcome::DryRun { tables, .. } = outcome else {
        panic!("a dry run reports a dry run: {outcome:?}");
    };
    let decisions = tables
        .iter()
        .find(|t| t.table == "decisions")
        .expect("decisions is a compared read model");
    assert!(decisions.equal(), "identical after a replay: {decisions:?}");
    assert_eq!(decisions.rebuilt_rows, follow_ups.len() as i64);
}
