//! A stranded issue is recovered at most once before it is escalated, even when its recovery
//! run loses its process and gets the process-loss retry: the retry carries the recovery on
//! (`recovery_reason`), so the sweep escalates after it instead of recovering again — which,
//! with the marker on the newest run only, went on until storm control's ceiling.

use crate::world::World;
use chrono::TimeDelta;
use events::*;
use reconciler::engine::Policy;
use reconciler::sim::Simulator;

#[test]
fn a_lost_recovery_run_is_retried_once_and_then_the_issue_is_escalated() {
    let mut w = World::new();
    let mut sim = Simulator::new(Policy::default());
    let first = RunId::new_random();
    let mut follow_ups = sim.run(vec![
        w.agent("codex_local"),
        w.issue_with(IssueStatus::Todo, "Implement feature", None, None),
        w.queued(first, 0, 0),
        w.started(first),
        w.lost(first),
    ]);
    let mut all = follow_ups.clone();
    let mut rounds = 0;
    let blocked = |events: &[Event]| {
        events.iter().any(|e| {
            matches!(&e.data, EventData::IssueUpdated(u) if u.status == Some(IssueStatus::Blocked))
        })
    };
    while !blocked(&follow_ups) {
        rounds += 1;
        assert!(rounds <= 6, "never escalated: {all:#?}");
        // Every queued run starts and loses its process; a minute later the clock ticks.
        let mut next = Vec::new();
        for event in &follow_ups {
            if let EventData::RunQueued(q) = &event.data {
                next.push(w.started(q.run_id));
                next.push(w.lost(q.run_id));
            }
        }
        w.advance(TimeDelta::minutes(1));
        next.push(w.tick());
        follow_ups = sim.run(next);
        all.extend(follow_ups.iter().cloned());
    }
    let reasons: Vec<&str> = all
        .iter()
        .filter_map(|e| match &e.data {
            EventData::RunQueued(q) => q.context.get("retry_reason").and_then(|r| r.as_str()),
            _ => None,
        })
        .collect();
    // The first run's retry, the one recovery, the recovery run's retry; then the escalation.
    assert_eq!(
        reasons,
        ["process_lost", "assignment_recovery", "process_lost"],
        "{all:#?}"
    );
    let retry_of_recovery = all
        .iter()
        .rev()
        .find_map(|e| match &e.data {
            EventData::RunQueued(q) => Some(q),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        retry_of_recovery.context["recovery_reason"],
        "assignment_recovery"
    );
}
