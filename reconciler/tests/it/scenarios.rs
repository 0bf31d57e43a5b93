//! The reference's scenario catalogue (§11) as data: given events (in phases; everything settles
//! between phases) → the follow-ups the reconciler emits, one summary line each, plus detailed
//! checks. The same table runs through the in-memory simulator (`decisions.rs`) and end to end
//! through NATS and PostgreSQL (`e2e.rs`), which also compares the two exactly.

use crate::world::{queued_run, World, PLAN_SENTENCE};
use ::reconciler::engine::Policy;
use ::reconciler::storm::StormPolicy;
use chrono::TimeDelta;
use events::*;
use serde_json::{json, Value};

/// Input of one phase: built from the world and the follow-ups emitted so far.
pub type Given = Box<dyn Fn(&mut World, &[Event]) -> Vec<Event> + Send + Sync>;
/// Detailed checks on the follow-ups of every phase.
pub type Check = Box<dyn Fn(&World, &[Vec<Event>]) + Send + Sync>;

pub struct Phase {
    pub given: Given,
    pub expect: Vec<&'static str>,
}

pub struct Scenario {
    pub name: &'static str,
    pub policy: Policy,
    pub phases: Vec<Phase>,
    pub check: Check,
    /// Whether it publishes ticks (a tick sweeps every issue, so such scenarios run alone).
    pub ticks: bool,
}

/// One line per follow-up: type and the fields a scenario is about.
pub fn line(event: &Event) -> String {
    match &event.data {
        EventData::RunLivenessClassified(d) => format!("liveness {}: {}", d.state, d.reason),
        EventData::DocumentRevised(d) => format!("summary r{}", d.revision_number),
        EventData::WakeupRequested(d) => format!("wakeup {}", d.reason),
        EventData::RunQueued(d) => format!(
            "queued attempt={} retries={}",
            d.continuation_attempt, d.process_loss_retry_count
        ),
        EventData::IssueCommentAdded(d) => {
            let first = d.body.lines().next().unwrap_or_default();
            format!("comment: {}", first.split(',').next().unwrap_or_default())
        }
        EventData::IssueUpdated(d) => {
            format!("issue -> {}", d.status.map_or("?", |s| s.as_str()))
        }
        EventData::RunCancelRequested(_) => "cancel requested".into(),
        EventData::IssueFollowUpRefused(d) => format!("refused {}: {}", d.follow_up, d.reason),
        EventData::IssueFollowUpDeferred(d) => format!("deferred {}: {}", d.follow_up, d.reason),
        EventData::IssueFollowUpDeferralClosed(d) => match d.outcome {
            issue::DeferralOutcome::Fired => "deferral fired".into(),
            issue::DeferralOutcome::Moot => format!("deferral moot: {}", d.reason),
        },
        other => other.event_type().to_string(),
    }
}

pub fn lines(events: &[Event]) -> Vec<String> {
    events.iter().map(line).collect()
}

fn phase(
    expect: Vec<&'static str>,
    given: impl Fn(&mut World, &[Event]) -> Vec<Event> + Send + Sync + 'static,
) -> Phase {
    Phase {
        given: Box::new(given),
        expect,
    }
}

fn no_check() -> Check {
    Box::new(|_, _| {})
}

fn scenario(name: &'static str, phases: Vec<Phase>, check: Check) -> Scenario {
    Scenario {
        name,
        policy: Policy::default(),
        phases,
        check,
        ticks: false,
    }
}

fn find<'a, T>(events: &'a [Event], pick: impl Fn(&'a EventData) -> Option<&'a T>) -> &'a T {
    events
        .iter()
        .find_map(|e| pick(&e.data))
        .expect("the follow-up is there")
}

fn liveness(events: &[Event]) -> &run::RunLivenessClassified {
    find(events, |d| match d {
        EventData::RunLivenessClassified(l) => Some(l),
        _ => None,
    })
}

fn wakeup(events: &[Event]) -> &wakeup::WakeupRequested {
    find(events, |d| match d {
        EventData::WakeupRequested(w) => Some(w),
        _ => None,
    })
}

fn queued(events: &[Event]) -> &run::RunQueued {
    find(events, |d| match d {
        EventData::RunQueued(q) => Some(q),
        _ => None,
    })
}

fn summary_body(events: &[Event]) -> &str {
    &find(events, |d| match d {
        EventData::DocumentRevised(r) => Some(r),
        _ => None,
    })
    .body
}

fn comment_body(events: &[Event]) -> &str {
    &comment_starting(events, "").body
}

/// The follow-up comment whose body starts with `start`.
fn comment_starting<'a>(events: &'a [Event], start: &str) -> &'a issue::IssueCommentAdded {
    find(events, |d| match d {
        EventData::IssueCommentAdded(c) if c.body.starts_with(start) => Some(c),
        _ => None,
    })
}

/// The `rule` attribute of every follow-up, in order.
fn rules(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.extensions["rule"].as_str().unwrap_or_default())
        .collect()
}

fn refused(events: &[Event]) -> &issue::IssueFollowUpRefused {
    find(events, |d| match d {
        EventData::IssueFollowUpRefused(r) => Some(r),
        _ => None,
    })
}

/// The run of the scenario's main run (fixed per world so checks can name it).
pub fn main_run(w: &World) -> RunId {
    RunId(uuid::Uuid::new_v5(&w.issue.0, b"main-run"))
}

fn base(w: &mut World) -> Vec<Event> {
    vec![w.agent("codex_local"), w.issue(IssueStatus::InProgress)]
}

/// Agent, issue, the main run started: the catalogue's defaults.
fn running(w: &mut World) -> Vec<Event> {
    let mut events = base(w);
    events.extend(w.start(main_run(w)));
    events
}

const PLAN_ONLY: &str =
    "liveness plan_only: Run described future work without concrete action evidence";
const EMPTY: &str =
    "liveness empty_response: Run succeeded without useful output or concrete action evidence";
const LOST: &str = "liveness failed: Run ended with failed (process_lost)";
const ADVANCED_BY_TOOL: &str =
    "liveness advanced: Run produced concrete action evidence: 1 tool/action event(s)";
const RETRIED: [&str; 3] = [
    LOST,
    "wakeup process_lost_retry",
    "queued attempt=0 retries=1",
];
/// The result comment of a run that said [`PLAN_SENTENCE`] and never commented.
const PLAN_COMMENT: &str = "comment: I will inspect the repo next and then implement the fix.";
const CONTINUATION: [&str; 2] = [
    "wakeup run_liveness_continuation",
    "queued attempt=1 retries=0",
];

/// The main run is lost (a pid was recorded): it is retried once.
fn main_run_lost() -> Phase {
    phase(RETRIED.to_vec(), |w, _| {
        let mut e = running(w);
        e.push(w.lost(main_run(w)));
        e
    })
}

/// The run works (a tool call) and succeeds without a word: no comment, empty result.
fn works_silently(w: &mut World, run: RunId) -> Vec<Event> {
    vec![w.activity(run, ActivityKind::ToolCall), w.says(run, "")]
}

fn with(mut head: Vec<&'static str>, tail: &[&'static str]) -> Vec<&'static str> {
    head.extend_from_slice(tail);
    head
}

/// Scenarios whose decisions are triggered by run ends only (they can share one stream).
pub fn run_end_scenarios() -> Vec<Scenario> {
    let mut all = vec![
        scenario(
            "planning sentence: plan_only, next action, continuation attempt 1 with every field",
            vec![phase(with(vec![PLAN_ONLY, "summary r1", PLAN_COMMENT], &CONTINUATION), |w, _| {
                let mut e = running(w);
                e.push(w.says(main_run(w), PLAN_SENTENCE));
                e
            })],
            Box::new(|w, phases| {
                let f = &phases[0];
                let run = main_run(w);
                assert_eq!(liveness(f).next_action.as_deref(), Some(PLAN_SENTENCE));
                assert!(liveness(f).last_useful_action_at.is_none());
                let wake = wakeup(f);
                let key = format!("run_liveness_continuation:{}:{run}:plan_only:1", w.issue);
                assert_eq!(wake.idempotency_key.as_deref(), Some(key.as_str()));
                assert_eq!(wake.source, InvocationSource::Automation);
                assert_eq!(wake.trigger_detail, TriggerDetail::System);
                assert_eq!(wake.requested_by_actor_type, ActorType::System);
                assert_eq!(wake.requested_by_actor_id.as_deref(), Some("heartbeat"));
                assert_eq!(
                    Value::Object(wake.payload.clone()),
                    json!({
                        "issue_id": w.issue,
                        "source_run_id": run,
                        "liveness_state": "plan_only",
                        "liveness_reason": "Run described future work without concrete action evidence",
                        "continuation_attempt": 1,
                        "max_continuation_attempts": 2,
                        "instruction": PLAN_SENTENCE,
                    })
                );
                let q = queued(f);
                assert_eq!(q.wakeup_id, Some(wake.wakeup_id));
                assert_eq!(q.continuation_attempt, 1);
                for key in [
                    "wake_reason",
                    "liveness_continuation_attempt",
                    "liveness_continuation_max_attempts",
                    "liveness_continuation_source_run_id",
                    "liveness_continuation_state",
                    "liveness_continuation_reason",
                    "liveness_continuation_instruction",
                ] {
                    assert!(q.context.contains_key(key), "context has {key}");
                }
                assert_eq!(q.context["wake_reason"], "run_liveness_continuation");
            }),
        ),
        scenario(
            "no output and no evidence: empty_response, continuation attempt 1",
            vec![phase(with(vec![EMPTY, "summary r1"], &CONTINUATION), |w, _| {
                let mut e = running(w);
                e.push(w.says(main_run(w), ""));
                e
            })],
            no_check(),
        ),
        scenario(
            "comment, revision, work product and tool event: advanced, last useful action",
            vec![phase(
                vec![
                    "liveness advanced: Run produced concrete action evidence: 1 issue comment(s), 1 document revision(s), 1 work product(s), 3 activity event(s), 1 tool/action event(s)",
                    "summary r1",
                ],
                |w, _| {
                    let run = main_run(w);
                    let mut e = running(w);
                    e.push(w.comment(run));
                    e.push(w.revision("notes", run));
                    e.push(w.work_product(run));
                    e.push(w.activity(run, ActivityKind::ToolCall));
                    e.push(w.says(run, "Implemented the query; tests pass."));
                    e
                },
            )],
            Box::new(|w, phases| {
                let newest = w.now() - TimeDelta::seconds(1); // the tool event, before the finish
                assert_eq!(liveness(&phases[0]).last_useful_action_at, Some(newest));
            }),
        ),
        scenario(
            "workspace operation and a plan: plan_only without last useful action",
            vec![phase(with(vec![PLAN_ONLY, "summary r1", "comment: I will inspect the repo next."], &CONTINUATION), |w, _| {
                let run = main_run(w);
                let mut e = running(w);
                e.push(w.activity(run, ActivityKind::Workspace));
                e.push(w.says(run, "I will inspect the repo next."));
                e
            })],
            Box::new(|_, phases| {
                assert!(liveness(&phases[0]).last_useful_action_at.is_none());
            }),
        ),
        scenario(
            "planning task with a Plan: header: advanced (exempt)",
            vec![phase(
                vec![
                    "liveness advanced: Planning/document task produced useful output and is exempt from plan-only classification",
                    "summary r1",
                    "comment: Plan:",
                ],
                |w, _| {
                    let run = main_run(w);
                    let mut e = vec![
                        w.agent("codex_local"),
                        w.issue_with(IssueStatus::InProgress, "Draft implementation plan", None, None),
                    ];
                    e.extend(w.start(run));
                    e.push(w.says(run, "Plan:\n- inspect files"));
                    e
                },
            )],
            no_check(),
        ),
        scenario(
            "plan revision and Next steps: advanced",
            vec![phase(
                vec![
                    "liveness advanced: Run produced concrete action evidence: 1 document revision(s), 1 activity event(s)",
                    "summary r1",
                    "comment: Next steps:",
                ],
                |w, _| {
                    let run = main_run(w);
                    let mut e = running(w);
                    e.push(w.revision("plan", run));
                    e.push(w.says(run, "Next steps:\n- inspect files"));
                    e
                },
            )],
            no_check(),
        ),
        scenario(
            "a plan revision by another run and Next steps: plan_only",
            vec![phase(with(vec![PLAN_ONLY, "summary r1", "comment: Next steps:"], &CONTINUATION), |w, _| {
                let run = main_run(w);
                let mut e = running(w);
                e.push(w.revision("plan", RunId::new_random()));
                e.push(w.says(run, "Next steps:\n- inspect files"));
                e
            })],
            Box::new(|_, phases| {
                let verdict = liveness(&phases[0]);
                assert!(verdict.last_useful_action_at.is_none());
                assert_eq!(verdict.next_action.as_deref(), Some("Next steps:"));
            }),
        ),
        scenario(
            "the run's own continuation-summary revision is no evidence: still plan_only",
            vec![phase(with(vec![PLAN_ONLY, "summary r2", PLAN_COMMENT], &CONTINUATION), |w, _| {
                let run = main_run(w);
                let mut e = running(w);
                e.push(w.revision("continuation-summary", run));
                e.push(w.says(run, PLAN_SENTENCE));
                e
            })],
            no_check(),
        ),
        scenario(
            "issue done: completed, no continuation",
            vec![phase(vec!["liveness completed: Issue is done", "summary r1", PLAN_COMMENT], |w, _| {
                let mut e = running(w);
                e.push(w.update(|u| u.status = Some(IssueStatus::Done)));
                e.push(w.says(main_run(w), PLAN_SENTENCE));
                e
            })],
            no_check(),
        ),
        scenario(
            "declared blocker: blocked, no continuation",
            vec![phase(
                vec![
                    "liveness blocked: Run output declared a concrete blocker",
                    "summary r1",
                    "comment: I cannot proceed because I need access credentials.",
                ],
                |w, _| {
                    let mut e = running(w);
                    e.push(w.says(
                        main_run(w),
                        "I cannot proceed because I need access credentials.",
                    ));
                    e
                },
            )],
            no_check(),
        ),
        scenario(
            "empty_response at attempt 1: continuation attempt 2",
            vec![phase(
                vec![EMPTY, "summary r1", "wakeup run_liveness_continuation", "queued attempt=2 retries=0"],
                |w, _| {
                    let run = main_run(w);
                    let mut e = base(w);
                    e.push(w.queued(run, 0, 1));
                    e.push(w.started(run));
                    e.push(w.says(run, ""));
                    e
                },
            )],
            Box::new(|_, phases| {
                assert_eq!(wakeup(&phases[0]).payload["continuation_attempt"], 2);
            }),
        ),
        scenario(
            "attempt 2: exhausted, no wakeup, the result comment and one exhaustion comment",
            vec![phase(
                vec![
                    "liveness plan_only: Run described future work without concrete action evidence; continuation attempts exhausted",
                    "summary r1",
                    PLAN_COMMENT,
                    "comment: Bounded liveness continuation exhausted",
                ],
                |w, _| {
                    let run = main_run(w);
                    let mut e = base(w);
                    e.push(w.queued(run, 0, 2));
                    e.push(w.started(run));
                    e.push(w.says(run, PLAN_SENTENCE));
                    e
                },
            )],
            Box::new(|_, phases| {
                let exhausted = comment_starting(&phases[0], "Bounded liveness");
                assert!(exhausted.body.contains("Attempts used: 2/2"));
            }),
        ),
        scenario(
            "guard: the issue was reassigned to another agent",
            vec![phase(vec![PLAN_ONLY, "summary r1", PLAN_COMMENT], |w, _| {
                let mut e = running(w);
                e.push(w.update(|u| u.assignee_agent_id = Some(Some(AgentId::new_random()))));
                e.push(w.says(main_run(w), PLAN_SENTENCE));
                e
            })],
            no_check(),
        ),
        scenario(
            "guard: an execution state (review stage) is active",
            vec![phase(vec![PLAN_ONLY, "summary r1", PLAN_COMMENT], |w, _| {
                let mut e = running(w);
                e.push(w.update(|u| u.execution_state = Some(Some(json!({"stage": "review"})))));
                e.push(w.says(main_run(w), PLAN_SENTENCE));
                e
            })],
            no_check(),
        ),
        scenario(
            "guard: the agent is paused",
            vec![phase(vec![PLAN_ONLY, "summary r1", PLAN_COMMENT], |w, _| {
                let mut e = running(w);
                e.push(w.agent_status(AgentStatus::Paused, false));
                e.push(w.says(main_run(w), PLAN_SENTENCE));
                e
            })],
            no_check(),
        ),
        scenario(
            "guard: budget hard stop",
            vec![phase(vec![PLAN_ONLY, "summary r1", PLAN_COMMENT], |w, _| {
                let mut e = running(w);
                e.push(w.agent_status(AgentStatus::Idle, true));
                e.push(w.says(main_run(w), PLAN_SENTENCE));
                e
            })],
            no_check(),
        ),
        scenario(
            "guard: a wakeup with the continuation's key exists",
            vec![phase(vec![PLAN_ONLY, "summary r1", PLAN_COMMENT], |w, _| {
                let run = main_run(w);
                let mut e = running(w);
                let key = format!("run_liveness_continuation:{}:{run}:plan_only:1", w.issue);
                e.push(w.wakeup_with_key(&key));
                e.push(w.says(run, PLAN_SENTENCE));
                e
            })],
            no_check(),
        ),
        scenario(
            "summary: objective, acceptance criteria, run line, touched path, caps",
            vec![phase(
                vec![
                    "liveness needs_followup: Run produced useful output but no concrete action evidence",
                    "summary r1",
                    "comment: Edited server/src/services/heartbeat.ts and ran the tests.",
                ],
                |w, _| {
                    let run = main_run(w);
                    let mut e = vec![
                        w.agent("codex_local"),
                        w.issue_with(
                            IssueStatus::InProgress,
                            "Implement feature",
                            Some("## Objective\nShip the run ledger.\n\n## Acceptance Criteria\n- Ledger shows 8 runs"),
                            None,
                        ),
                    ];
                    e.extend(w.start(run));
                    e.push(w.finish(
                        run,
                        RunOutcome::Succeeded,
                        json!({"summary": "Edited server/src/services/heartbeat.ts and ran the tests."}),
                        None,
                    ));
                    e
                },
            )],
            Box::new(|w, phases| {
                let body = summary_body(&phases[0]);
                assert!(body.contains("## Objective\n\nShip the run ledger."), "{body}");
                assert!(body.contains("## Acceptance Criteria\n\n- Ledger shows 8 runs"), "{body}");
                let line = format!("Run `{}` finished with status `succeeded`", main_run(w));
                assert!(body.contains(&line), "{body}");
                assert!(body.contains("`server/src/services/heartbeat.ts`"), "{body}");
                for section in [
                    "Recent Concrete Actions",
                    "Files / Routes Touched",
                    "Commands Run",
                    "Blockers / Decisions",
                    "Next Action",
                ] {
                    assert!(body.contains(&format!("## {section}")), "{section}");
                }
                assert!(body.chars().count() <= 8_000);
            }),
        ),
        scenario(
            "adapter failure: failed, summary names the error and the next action",
            vec![phase(
                vec!["liveness failed: Run ended with failed (adapter_failed)", "summary r1"],
                |w, _| {
                    let mut e = running(w);
                    e.push(w.finish(
                        main_run(w),
                        RunOutcome::Failed,
                        json!({}),
                        Some(("adapter_failed", "adapter failed")),
                    ));
                    e
                },
            )],
            Box::new(|_, phases| {
                let body = summary_body(&phases[0]);
                assert!(body.contains("Latest run error (adapter_failed): adapter failed"));
                assert!(body.contains("Inspect the failed run, fix the cause"));
            }),
        ),
        scenario(
            "process loss with a dead pid: failed, one retry, count 1",
            vec![phase(
                RETRIED.to_vec(),
                |w, _| {
                    let run = main_run(w);
                    let mut e = running(w);
                    e.push(w.update(|u| u.checkout_run_id = Some(Some(run))));
                    e.push(w.lost(run));
                    e
                },
            )],
            Box::new(|w, phases| {
                let run = main_run(w);
                let wake = wakeup(&phases[0]);
                assert_eq!(
                    Value::Object(wake.payload.clone()),
                    json!({"issue_id": w.issue, "retry_of_run_id": run})
                );
                assert_eq!(wake.source, InvocationSource::Automation);
                let q = queued(&phases[0]);
                assert_eq!(q.retry_of_run_id, Some(run));
                assert_eq!(q.process_loss_retry_count, 1);
                assert_eq!(q.context["wake_reason"], "process_lost_retry");
                assert_eq!(q.context["retry_reason"], "process_lost");
                assert_eq!(q.context["retry_of_run_id"], json!(run));
                assert_eq!(q.context["issue_id"], json!(w.issue), "same session context");
            }),
        ),
        scenario(
            "process loss of a retry (count 1): no second retry",
            vec![phase(vec![LOST], |w, _| {
                let run = main_run(w);
                let mut e = base(w);
                e.push(w.queued(run, 1, 0));
                e.push(w.started(run));
                e.push(w.update(|u| u.checkout_run_id = Some(Some(run))));
                e.push(w.lost(run));
                e
            })],
            no_check(),
        ),
        scenario(
            "process loss on a done issue: the retry is refused, visibly",
            vec![phase(
                vec![
                    LOST,
                    "refused process_lost_retry: issue is done: no retries for finished issues",
                ],
                |w, _| {
                    let mut e = running(w);
                    e.push(w.update(|u| u.status = Some(IssueStatus::Done)));
                    e.push(w.lost(main_run(w)));
                    e
                },
            )],
            Box::new(|w, phases| {
                assert_eq!(refused(&phases[0]).run_id, Some(main_run(w)));
            }),
        ),
        scenario(
            "cancelled run: classified failed, no summary",
            vec![phase(vec!["liveness failed: Run ended with cancelled (cancelled)"], |w, _| {
                let mut e = running(w);
                e.push(w.finish(main_run(w), RunOutcome::Cancelled, json!({}), None));
                e
            })],
            no_check(),
        ),
        scenario(
            "a second finish of an ended run decides nothing",
            vec![phase(
                vec![
                    "liveness needs_followup: Run produced useful output but no concrete action evidence",
                    "summary r1",
                    "comment: Done.",
                ],
                |w, _| {
                    let run = main_run(w);
                    let mut e = running(w);
                    e.push(w.says(run, "Done."));
                    e.push(w.says(run, PLAN_SENTENCE));
                    e.push(w.lost(run));
                    e
                },
            )],
            no_check(),
        ),
        scenario(
            "the issue as of the run's end: done afterwards changes nothing",
            vec![phase(with(vec![PLAN_ONLY, "summary r1", PLAN_COMMENT], &CONTINUATION), |w, _| {
                let mut e = running(w);
                e.push(w.says(main_run(w), PLAN_SENTENCE));
                e.push(w.update(|u| u.status = Some(IssueStatus::Done)));
                e
            })],
            no_check(),
        ),
    ];
    all.extend(run_comment_scenarios());
    all
}

/// Scenarios of what a succeeded run leaves on its issue (reference §2): its result summary as
/// its comment, or a missing-comment follow-up if due (docs/reconciler.md).
fn run_comment_scenarios() -> Vec<Scenario> {
    vec![
        scenario(
            "a succeeded run that never commented: its result summary is its comment",
            vec![phase(
                vec![
                    "liveness needs_followup: Run produced useful output but no concrete action evidence",
                    "summary r1",
                    "comment: Shipped the ledger.",
                ],
                |w, _| {
                    let mut e = running(w);
                    e.push(w.finish(
                        main_run(w),
                        RunOutcome::Succeeded,
                        json!({"summary": "  ", "result": "  Shipped the ledger.\nAll green.  ", "message": "not this"}),
                        None,
                    ));
                    e
                },
            )],
            Box::new(|w, phases| {
                let f = &phases[0];
                assert_eq!(rules(f), ["liveness", "continuation_summary", "result_comment"]);
                let posted = comment_starting(f, "");
                assert_eq!(posted.issue_id, w.issue);
                assert_eq!(posted.author_agent_id, Some(w.agent), "attributed to the run's agent");
                assert_eq!(posted.author_user_id, None);
                assert_eq!(posted.run_id, Some(main_run(w)));
                assert_eq!(posted.body, "Shipped the ledger.\nAll green.", "`result`, trimmed");
                assert_eq!(f[2].time, f[0].time, "at the finish's time");
            }),
        ),
        scenario(
            "a succeeded run that commented itself: no result comment",
            vec![phase(
                vec![
                    "liveness advanced: Run produced concrete action evidence: 1 issue comment(s), 1 activity event(s)",
                    "summary r1",
                ],
                |w, _| {
                    let run = main_run(w);
                    let mut e = running(w);
                    e.push(w.comment(run));
                    e.push(w.says(run, "Implemented the query."));
                    e
                },
            )],
            no_check(),
        ),
        scenario(
            "an advanced run that left no word: one missing-comment follow-up, not two",
            vec![
                phase(
                    vec![
                        "liveness advanced: Run produced concrete action evidence: 1 work product(s), 1 activity event(s), 1 tool/action event(s)",
                        "summary r1",
                        "wakeup issue_comment_missing",
                        "queued attempt=0 retries=0",
                    ],
                    |w, _| {
                        let run = main_run(w);
                        let mut e = running(w);
                        e.push(w.activity(run, ActivityKind::ToolCall));
                        e.push(w.work_product(run));
                        e.push(w.says(run, ""));
                        e
                    },
                ),
                // the follow-up run succeeds silently too: it was the chain's one follow-up
                phase(
                    vec![
                        ADVANCED_BY_TOOL,
                        "summary r2",
                    ],
                    |w, so_far| {
                        w.advance(TimeDelta::minutes(5));
                        let run = queued_run(so_far);
                        let mut e = vec![w.started(run)];
                            e.extend(works_silently(w, run));
                            e
                    },
                ),
            ],
            Box::new(|w, phases| {
                let f = &phases[0];
                let run = main_run(w);
                assert_eq!(
                    rules(f),
                    ["liveness", "continuation_summary", "missing_comment", "missing_comment"]
                );
                let wake = wakeup(f);
                let key = format!("issue_comment_missing:{}:{run}", w.issue);
                assert_eq!(wake.idempotency_key.as_deref(), Some(key.as_str()));
                assert_eq!(wake.agent_id, w.agent);
                assert_eq!(wake.issue_id, Some(w.issue));
                assert_eq!(wake.source, InvocationSource::Automation);
                assert_eq!(wake.trigger_detail, TriggerDetail::System);
                assert_eq!(wake.requested_by_actor_type, ActorType::System);
                assert_eq!(wake.requested_by_actor_id.as_deref(), Some("heartbeat"));
                assert_eq!(
                    Value::Object(wake.payload.clone()),
                    json!({
                        "issue_id": w.issue,
                        "source_run_id": run,
                        "instruction": ::reconciler::comment::INSTRUCTION,
                    })
                );
                let instruction = wake.payload["instruction"].as_str().unwrap();
                for part in ["comment", "what you did", "what changed", "what is next"] {
                    assert!(instruction.contains(part), "{instruction}");
                }
                let q = queued(f);
                assert_eq!(q.wakeup_id, Some(wake.wakeup_id));
                assert_eq!((q.agent_id, q.issue_id), (w.agent, Some(w.issue)));
                assert_eq!(q.continuation_attempt, 0);
                assert_eq!(q.retry_of_run_id, None);
                assert_eq!(
                    Value::Object(q.context.clone()),
                    json!({
                        "issue_id": w.issue,
                        "wake_reason": "issue_comment_missing",
                        "source": "issue.comment_missing",
                        "missing_comment_source_run_id": run,
                    })
                );
            }),
        ),
        scenario(
            "a failed run with a summary: neither a result comment nor a follow-up",
            vec![phase(
                vec!["liveness failed: Run ended with failed (adapter_failed)", "summary r1"],
                |w, _| {
                    let mut e = running(w);
                    e.push(w.finish(
                        main_run(w),
                        RunOutcome::Failed,
                        json!({"summary": "Tried the migration; it broke."}),
                        Some(("adapter_failed", "boom")),
                    ));
                    e
                },
            )],
            no_check(),
        ),
        scenario(
            "a timed-out silent run: no missing-comment follow-up",
            vec![phase(
                vec!["liveness failed: Run ended with timed_out (timeout)", "summary r1"],
                |w, _| {
                    let run = main_run(w);
                    let mut e = running(w);
                    e.push(w.activity(run, ActivityKind::ToolCall));
                    let timeout = Some(("timeout", "timed out"));
                    e.push(w.finish(run, RunOutcome::TimedOut, json!({}), timeout));
                    e
                },
            )],
            no_check(),
        ),
        scenario(
            "a silent advanced run of a done issue: no missing-comment follow-up",
            vec![phase(vec!["liveness completed: Issue is done", "summary r1"], |w, _| {
                let run = main_run(w);
                let mut e = running(w);
                e.push(w.update(|u| u.status = Some(IssueStatus::Done)));
                e.extend(works_silently(w, run));
                e
            })],
            no_check(),
        ),
        scenario(
            "a silent advanced run whose agent is paused: no missing-comment follow-up",
            vec![phase(vec![ADVANCED_BY_TOOL, "summary r1"], |w, _| {
                let run = main_run(w);
                let mut e = running(w);
                e.push(w.agent_status(AgentStatus::Paused, false));
                e.extend(works_silently(w, run));
                e
            })],
            no_check(),
        ),
        scenario(
            "empty_response at attempt 2: the exhaustion comment is its word, no follow-up",
            vec![phase(
                vec![
                    "liveness empty_response: Run succeeded without useful output or concrete action evidence; continuation attempts exhausted",
                    "summary r1",
                    "comment: Bounded liveness continuation exhausted",
                ],
                |w, _| {
                    let run = main_run(w);
                    let mut e = base(w);
                    e.push(w.queued(run, 0, 2));
                    e.push(w.started(run));
                    e.push(w.says(run, ""));
                    e
                },
            )],
            no_check(),
        ),
        scenario(
            "a missing-comment follow-up seconds after a retry goes out at once (bounded flows are never slowed)",
            vec![
                main_run_lost(),
                phase(
                    vec![
                        ADVANCED_BY_TOOL,
                        "summary r1",
                        "wakeup issue_comment_missing",
                        "queued attempt=0 retries=0",
                    ],
                    |w, so_far| {
                        let run = queued_run(so_far);
                        let mut e = vec![w.started(run)];
                        e.extend(works_silently(w, run));
                        e
                    },
                ),
            ],
            Box::new(|w, phases| {
                assert_eq!(wakeup(&phases[1]).payload["source_run_id"], json!(queued(&phases[0]).run_id));
                assert_eq!(wakeup(&phases[1]).agent_id, w.agent);
                assert_eq!(rules(&phases[1])[2], "missing_comment");
            }),
        ),
        scenario(
            "a second apart: plan, continuation 1, empty, continuation 2, plan, exhausted",
            vec![
                phase(with(vec![PLAN_ONLY, "summary r1", PLAN_COMMENT], &CONTINUATION), |w, _| {
                    let mut e = running(w);
                    e.push(w.says(main_run(w), PLAN_SENTENCE));
                    e
                }),
                phase(
                    vec![
                        EMPTY,
                        "summary r2",
                        "wakeup run_liveness_continuation",
                        "queued attempt=2 retries=0",
                    ],
                    |w, so_far| {
                        let run = queued_run(so_far);
                        vec![w.started(run), w.says(run, "")]
                    },
                ),
                phase(
                    vec![
                        "liveness plan_only: Run described future work without concrete action evidence; continuation attempts exhausted",
                        "summary r3",
                        PLAN_COMMENT,
                        "comment: Bounded liveness continuation exhausted",
                    ],
                    |w, so_far| {
                        let run = queued_run(so_far);
                        vec![w.started(run), w.says(run, PLAN_SENTENCE)]
                    },
                ),
            ],
            Box::new(|_, phases| {
                let second = wakeup(&phases[1]);
                assert_eq!(second.payload["continuation_attempt"], 2);
                assert_eq!(second.payload["source_run_id"], json!(queued(&phases[0]).run_id));
                let exhausted = comment_starting(&phases[2], "Bounded liveness continuation exhausted");
                assert!(exhausted.body.contains("Attempts used: 2/2"), "{}", exhausted.body);
            }),
        ),
    ]
}

/// A first run that failed the way the catalogue's recovery fixtures say ("last run
/// `process_lost`, error 'run failed before issue advanced'"), already a retry so it is not
/// retried again.
fn stranded(w: &mut World, status: IssueStatus, user: Option<&str>) -> Vec<Event> {
    let run = main_run(w);
    let mut e = vec![
        w.agent("codex_local"),
        w.issue_with(status, "Implement feature", None, user),
    ];
    e.push(w.queued(run, 1, 0));
    e.push(w.started(run));
    e.push(w.finish(
        run,
        RunOutcome::Failed,
        json!({}),
        Some(("process_lost", "run failed before issue advanced")),
    ));
    e
}

fn tick_after(by: TimeDelta) -> impl Fn(&mut World, &[Event]) -> Vec<Event> + Send + Sync {
    move |w, _| {
        w.advance(by);
        vec![w.tick()]
    }
}

/// The recovery run (queued by the last tick) starts and fails like the first one.
fn recovery_fails(w: &mut World, so_far: &[Event]) -> Vec<Event> {
    w.advance(TimeDelta::minutes(1));
    let run = queued_run(so_far);
    vec![
        w.started(run),
        w.finish(
            run,
            RunOutcome::Failed,
            json!({}),
            Some(("process_lost", "run failed before issue advanced")),
        ),
    ]
}

const FIRST_FAILED: [&str; 2] = [LOST, "summary r1"];
const RECOVERY_FAILED: [&str; 2] = [LOST, "summary r2"];

fn ticking(name: &'static str, phases: Vec<Phase>, check: Check) -> Scenario {
    Scenario {
        ticks: true,
        ..scenario(name, phases, check)
    }
}

/// Scenarios driven by ticks (each runs on its own stream).
pub fn tick_scenarios() -> Vec<Scenario> {
    let minute = TimeDelta::minutes(1);
    vec![
        ticking(
            "stranded todo: one dispatch, then escalation with 'retried dispatch'",
            vec![
                phase(FIRST_FAILED.to_vec(), |w, _| stranded(w, IssueStatus::Todo, None)),
                phase(
                    vec!["wakeup issue_assignment_recovery", "queued attempt=0 retries=0"],
                    tick_after(minute),
                ),
                phase(vec![], tick_after(minute)),
                phase(RECOVERY_FAILED.to_vec(), recovery_fails),
                phase(
                    vec![
                        "issue -> blocked",
                        "comment: runledger automatically retried dispatch for this assigned `todo` issue after a lost wake/run",
                    ],
                    tick_after(minute),
                ),
                phase(vec![], tick_after(minute)),
            ],
            Box::new(|w, phases| {
                let q = queued(&phases[1]);
                assert_eq!(q.context["retry_reason"], "assignment_recovery");
                assert_eq!(q.context["source"], "issue.assignment_recovery");
                assert_eq!(q.retry_of_run_id, Some(main_run(w)));
                assert_eq!(wakeup(&phases[1]).payload["retry_of_run_id"], json!(main_run(w)));
                let body = comment_body(&phases[4]);
                assert!(body.contains("retried dispatch"), "{body}");
                assert!(
                    body.contains(
                        "Latest retry failure: `process_lost` - run failed before issue advanced."
                    ),
                    "{body}"
                );
            }),
        ),
        ticking(
            "a run ending right after an escalation sees the issue blocked",
            vec![
                phase(FIRST_FAILED.to_vec(), |w, _| stranded(w, IssueStatus::Todo, None)),
                phase(
                    vec!["wakeup issue_assignment_recovery", "queued attempt=0 retries=0"],
                    tick_after(minute),
                ),
                phase(RECOVERY_FAILED.to_vec(), recovery_fails),
                phase(
                    vec![
                        "issue -> blocked",
                        "comment: runledger automatically retried dispatch for this assigned `todo` issue after a lost wake/run",
                        "liveness blocked: Issue status is blocked",
                        "summary r3",
                        PLAN_COMMENT,
                    ],
                    |w, _| {
                        w.advance(TimeDelta::minutes(1));
                        let run = RunId::new_random();
                        let mut e = vec![w.tick()];
                        e.extend(w.start(run));
                        e.push(w.says(run, PLAN_SENTENCE));
                        e
                    },
                ),
            ],
            no_check(),
        ),
        ticking(
            "stranded in_progress: one continuation, then escalation with 'retried continuation'",
            vec![
                phase(FIRST_FAILED.to_vec(), |w, _| {
                    stranded(w, IssueStatus::InProgress, None)
                }),
                phase(
                    vec!["wakeup issue_continuation_needed", "queued attempt=0 retries=0"],
                    tick_after(minute),
                ),
                phase(RECOVERY_FAILED.to_vec(), recovery_fails),
                phase(
                    vec![
                        "issue -> blocked",
                        "comment: runledger automatically retried continuation for this assigned `in_progress` issue after its live execution disappeared",
                    ],
                    tick_after(minute),
                ),
            ],
            Box::new(|_, phases| {
                let q = queued(&phases[1]);
                assert_eq!(q.context["retry_reason"], "issue_continuation_needed");
                assert_eq!(q.context["source"], "issue.continuation_recovery");
                let body = comment_body(&phases[3]);
                assert!(body.contains("retried continuation"), "{body}");
                assert!(body.contains(
                    "Latest retry failure: `process_lost` - run failed before issue advanced."
                ));
            }),
        ),
        ticking(
            "the recovery run only plans: a continuation sourced from the recovery run",
            vec![
                phase(FIRST_FAILED.to_vec(), |w, _| {
                    stranded(w, IssueStatus::InProgress, None)
                }),
                phase(
                    vec!["wakeup issue_continuation_needed", "queued attempt=0 retries=0"],
                    tick_after(minute),
                ),
                phase(
                    with(vec![PLAN_ONLY, "summary r2", PLAN_COMMENT], &CONTINUATION),
                    |w, so_far| {
                        w.advance(TimeDelta::minutes(5));
                        let run = queued_run(so_far);
                        vec![w.started(run), w.says(run, PLAN_SENTENCE)]
                    },
                ),
            ],
            Box::new(|_, phases| {
                let recovery = queued(&phases[1]).run_id;
                let wake = wakeup(&phases[2]);
                assert_eq!(wake.payload["source_run_id"], json!(recovery));
                assert_eq!(wake.payload["liveness_state"], "plan_only");
                assert_eq!(wake.payload["continuation_attempt"], 1);
            }),
        ),
        ticking(
            "the recovery run writes a plan revision: advanced, no continuation, not escalated",
            vec![
                phase(FIRST_FAILED.to_vec(), |w, _| {
                    stranded(w, IssueStatus::InProgress, None)
                }),
                phase(
                    vec!["wakeup issue_continuation_needed", "queued attempt=0 retries=0"],
                    tick_after(minute),
                ),
                phase(
                    vec![
                        "liveness advanced: Run produced concrete action evidence: 1 document revision(s), 1 activity event(s)",
                        "summary r2",
                        "comment: Next steps:",
                    ],
                    |w, so_far| {
                        w.advance(TimeDelta::minutes(5));
                        let run = queued_run(so_far);
                        vec![
                            w.started(run),
                            w.revision("plan", run),
                            w.says(run, "Next steps:\n- inspect files"),
                        ]
                    },
                ),
                // the recovery succeeded: the idle issue is not escalated (reference §10)
                phase(vec![], tick_after(minute)),
            ],
            no_check(),
        ),
        ticking(
            "a user-assigned todo is never touched",
            vec![
                phase(FIRST_FAILED.to_vec(), |w, _| {
                    stranded(w, IssueStatus::Todo, Some("user-1"))
                }),
                phase(vec![], tick_after(minute)),
            ],
            no_check(),
        ),
        ticking(
            "a detached run silent for 15 minutes gets one cancel request",
            vec![
                phase(vec![], |w, _| {
                    let run = main_run(w);
                    let mut e = running(w);
                    e.push(w.detached(run));
                    e
                }),
                phase(vec![], tick_after(TimeDelta::minutes(10))),
                phase(vec!["cancel requested"], tick_after(TimeDelta::minutes(6))),
                phase(vec![], tick_after(minute)),
            ],
            Box::new(|w, phases| {
                let EventData::RunCancelRequested(cancel) = &phases[2][0].data else {
                    panic!("a cancel request");
                };
                assert_eq!(cancel.run_id, main_run(w));
                assert!(cancel.reason.contains("silent for 15m"), "{}", cancel.reason);
            }),
        ),
        ticking(
            "a second apart: one stranded requeue, its plan-only run continued at once, no second requeue",
            vec![
                phase(FIRST_FAILED.to_vec(), |w, _| {
                    stranded(w, IssueStatus::InProgress, None)
                }),
                phase(
                    vec!["wakeup issue_continuation_needed", "queued attempt=0 retries=0"],
                    tick_after(TimeDelta::seconds(1)),
                ),
                phase(
                    with(vec![PLAN_ONLY, "summary r2", PLAN_COMMENT], &CONTINUATION),
                    |w, so_far| {
                        let run = queued_run(so_far);
                        vec![w.started(run), w.says(run, PLAN_SENTENCE)]
                    },
                ),
                phase(vec![], tick_after(TimeDelta::seconds(1))),
                phase(
                    vec![
                        PLAN_ONLY,
                        "summary r3",
                        PLAN_COMMENT,
                        "wakeup run_liveness_continuation",
                        "queued attempt=2 retries=0",
                    ],
                    |w, so_far| {
                        let run = queued_run(so_far);
                        vec![w.started(run), w.says(run, PLAN_SENTENCE)]
                    },
                ),
                phase(vec![], tick_after(TimeDelta::seconds(1))),
            ],
            Box::new(|_, phases| {
                let recovery = queued(&phases[1]).run_id;
                let wake = wakeup(&phases[2]);
                assert_eq!(wake.payload["source_run_id"], json!(recovery));
                assert_eq!(wake.payload["liveness_state"], "plan_only");
                assert_eq!(wake.payload["continuation_attempt"], 1);
                assert_eq!(wake.payload["instruction"], json!(liveness(&phases[2]).next_action));
                assert_eq!(queued(&phases[2]).continuation_attempt, 1);
            }),
        ),
        ticking(
            "the sweep never competes with a deferred continuation: no requeue while it waits, then it fires",
            vec![
                phase(
                    {
                        let mut lines = Vec::new();
                        for i in 1..=3 {
                            lines.extend([PLAN_ONLY, ["summary r1", "summary r2", "summary r3"][i - 1], PLAN_COMMENT]);
                            if i < 3 {
                                lines.extend(CONTINUATION);
                            }
                        }
                        lines.push("deferred run_liveness_continuation: automatic wakeups of this issue back off: wakeup 1 beyond the bounded flows within 1h waits 30s after the previous one");
                        lines
                    },
                    |w, _| {
                        let mut e = base(w);
                        let runs: Vec<RunId> = (0..3).map(|_| RunId::new_random()).collect();
                        for run in &runs {
                            e.extend(w.start(*run));
                        }
                        for run in &runs {
                            e.push(w.says(*run, PLAN_SENTENCE));
                        }
                        e
                    },
                ),
                // The two continuation runs are cancelled before they start: no live run is left.
                phase(
                    vec![
                        "liveness failed: Run ended with cancelled (cancelled)",
                        "liveness failed: Run ended with cancelled (cancelled)",
                    ],
                    |w, so_far| {
                        let queued: Vec<RunId> = so_far
                            .iter()
                            .filter_map(|e| match &e.data {
                                EventData::RunQueued(q) => Some(q.run_id),
                                _ => None,
                            })
                            .collect();
                        queued
                            .into_iter()
                            .map(|run| w.finish(run, RunOutcome::Cancelled, json!({}), None))
                            .collect()
                    },
                ),
                phase(vec![], tick_after(TimeDelta::seconds(1))),
                phase(FIRED.to_vec(), tick_after(TimeDelta::minutes(1))),
                phase(vec![], tick_after(TimeDelta::minutes(1))),
            ],
            no_check(),
        ),
        ticking(
            "a storm: 20 plan-only runs end within a minute; two continuations, six deferred, the rest refused with one comment",
            storm_phases(),
            Box::new(check_storm),
        ),
        Scenario {
            policy: Policy {
                storm: StormPolicy {
                    ceiling: 0,
                    ..StormPolicy::default()
                },
                ..Policy::default()
            },
            ..ticking(
                "a sweep refusal is recorded once, not on every tick",
                vec![
                    phase(
                        vec![
                            LOST,
                            "refused process_lost_retry: automatic wakeups are disabled (ceiling 0)",
                            CEILING_COMMENT,
                        ],
                        |w, _| {
                            let mut e = running(w);
                            e.push(w.lost(main_run(w)));
                            e
                        },
                    ),
                    phase(
                        vec![
                            "refused issue_continuation_needed: automatic wakeups are disabled (ceiling 0)",
                        ],
                        tick_after(minute),
                    ),
                    phase(vec![], tick_after(minute)),
                    phase(vec![], tick_after(minute)),
                ],
                no_check(),
            )
        },
    ]
}

const CEILING_COMMENT: &str =
    "comment: Automatic follow-ups of this issue are paused by storm control";
/// Plan-only runs that end in the storm.
pub const STORM_RUNS: usize = 20;

/// The storm's lines: per run end its verdict, summary and result comment, then the first two
/// continuations (the bounded flow), six deferrals backing off 30 s, 1 m, 2 m, 4 m, 8 m, 16 m,
/// and refusals at the ceiling, the first with the one comment saying so.
fn storm_lines() -> Vec<&'static str> {
    let mut lines: Vec<&'static str> = Vec::new();
    let gaps = ["30s", "1m", "2m", "4m", "8m", "16m"];
    for i in 1..=STORM_RUNS {
        lines.push(PLAN_ONLY);
        lines.push(Box::leak(format!("summary r{i}").into_boxed_str()));
        lines.push(PLAN_COMMENT);
        match i {
            1 | 2 => lines.extend(CONTINUATION),
            3..=8 => lines.push(Box::leak(
                format!(
                    "deferred run_liveness_continuation: automatic wakeups of this issue back off: wakeup {} beyond the bounded flows within 1h waits {} after the previous one",
                    i - 2,
                    gaps[i - 3]
                )
                .into_boxed_str(),
            )),
            _ => {
                lines.push("refused run_liveness_continuation: 6 automatic wakeups of this issue beyond the bounded flows in the last 1h (ceiling 6)");
                if i == 9 {
                    lines.push(CEILING_COMMENT);
                }
            }
        }
    }
    lines
}

const FIRED: [&str; 3] = [
    "wakeup run_liveness_continuation",
    "queued attempt=1 retries=0",
    "deferral fired",
];

fn storm_phases() -> Vec<Phase> {
    let mut fired = Vec::new();
    for _ in 0..4 {
        fired.extend(FIRED);
    }
    vec![
        // 20 runs of the issue start, then end one a second apart with only a plan.
        phase(storm_lines(), |w, _| {
            let mut e = base(w);
            let runs: Vec<RunId> = (0..STORM_RUNS).map(|_| RunId::new_random()).collect();
            for run in &runs {
                e.extend(w.start(*run));
            }
            for run in &runs {
                e.push(w.says(*run, PLAN_SENTENCE));
            }
            e
        }),
        // Ten minutes on, the first four deferrals are due (30 s, 1.5 min, 3.5 min and 7.5 min
        // after the last continuation): each goes out exactly as deferred.
        phase(fired, tick_after(TimeDelta::minutes(10))),
        // A person speaks on the issue: the two deferrals still open are moot when due.
        phase(vec![], |w, _| vec![w.person_comments()]),
        phase(
            vec![
                "deferral moot: a person commented on the issue since",
                "deferral moot: a person commented on the issue since",
            ],
            tick_after(TimeDelta::minutes(30)),
        ),
        phase(vec![], tick_after(TimeDelta::minutes(10))),
    ]
}

/// Nothing is emitted twice, every deferral ends exactly once, and a fired follow-up is the
/// deferred one: same ids, same data.
fn check_storm(_: &World, phases: &[Vec<Event>]) {
    let all: Vec<&Event> = phases.iter().flatten().collect();
    let ids: std::collections::BTreeSet<EventId> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), all.len(), "nothing is emitted twice");
    let deferred: Vec<(&Event, &issue::IssueFollowUpDeferred)> = all
        .iter()
        .filter_map(|e| match &e.data {
            EventData::IssueFollowUpDeferred(d) => Some((*e, d)),
            _ => None,
        })
        .collect();
    assert_eq!(deferred.len(), 6);
    for (event, d) in &deferred {
        let closed: Vec<&issue::IssueFollowUpDeferralClosed> = all
            .iter()
            .filter_map(|e| match &e.data {
                EventData::IssueFollowUpDeferralClosed(c) if c.deferral_id == event.id => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(closed.len(), 1, "every deferral ends once");
        let wakeup = all.iter().find(|e| e.id == d.wakeup_event_id);
        let run = all.iter().find(|e| e.id == d.run_event_id);
        match closed[0].outcome {
            issue::DeferralOutcome::Fired => {
                let (wakeup, run) = (wakeup.expect("fired wakeup"), run.expect("fired run"));
                assert_eq!(wakeup.data, EventData::WakeupRequested((*d.wakeup).clone()));
                assert_eq!(run.data, EventData::RunQueued((*d.run).clone()));
                assert_eq!(run.extensions["rule"], "liveness_continuation");
                assert!(wakeup.time >= d.due_at, "never before it is due");
            }
            issue::DeferralOutcome::Moot => assert!(wakeup.is_none() && run.is_none()),
        }
    }
}
