//! The catalogue through the in-memory simulator: the projector's fold and the engine, no I/O.
//! Given events → exactly these follow-ups, phase by phase; and the same history always yields
//! byte-identical follow-ups.

use crate::scenarios::{lines, run_end_scenarios, tick_scenarios, Scenario};
use crate::world::World;
use events::Event;
use reconciler::sim::Simulator;

/// Runs a scenario in memory; returns its world, its inputs and its follow-ups per phase.
pub fn simulate(scenario: &Scenario) -> (World, Vec<Event>, Vec<Vec<Event>>) {
    let mut world = World::new();
    let mut sim = Simulator::new(scenario.policy.clone());
    let mut inputs = Vec::new();
    let mut so_far = Vec::new();
    let mut phases = Vec::new();
    for (index, phase) in scenario.phases.iter().enumerate() {
        let given = (phase.given)(&mut world, &so_far);
        inputs.extend(given.iter().cloned());
        let out = sim.run(given);
        assert_eq!(
            lines(&out),
            phase.expect,
            "{}: phase {}",
            scenario.name,
            index + 1
        );
        so_far.extend(out.iter().cloned());
        phases.push(out);
    }
    (scenario.check)(&world, &phases);
    (world, inputs, phases)
}

#[test]
fn run_end_scenarios_decide_as_the_reference_says() {
    for scenario in run_end_scenarios() {
        simulate(&scenario);
    }
}

#[test]
fn tick_scenarios_decide_as_the_reference_says() {
    for scenario in tick_scenarios() {
        simulate(&scenario);
    }
}

#[test]
fn the_same_history_yields_byte_identical_follow_ups() {
    for scenario in run_end_scenarios().into_iter().chain(tick_scenarios()) {
        let (_, inputs, phases) = simulate(&scenario);
        let first: Vec<Vec<u8>> = phases.concat().iter().map(Event::to_vec).collect();
        // Replay the recorded history (inputs and the follow-ups, as the stream holds them).
        let mut again = Simulator::new(scenario.policy.clone());
        let replayed: Vec<Vec<u8>> = again.run(inputs).iter().map(Event::to_vec).collect();
        assert_eq!(first, replayed, "{}", scenario.name);
    }
}

#[test]
fn the_result_comment_is_never_the_runs_evidence_live_or_on_replay() {
    use crate::scenarios::main_run;
    use events::EventData;
    use std::collections::VecDeque;
    let scenario = run_end_scenarios()
        .into_iter()
        .find(|s| s.name.starts_with("a succeeded run that never commented"))
        .expect("the scenario");
    let mut world = World::new();
    let inputs = (scenario.phases[0].given)(&mut world, &[]);
    let run = main_run(&world).0;

    // Live: every follow-up folded right after its cause; record the stream as it would be.
    let mut live = Simulator::new(scenario.policy.clone());
    let (mut stream, mut decided) = (Vec::new(), Vec::new());
    for event in inputs {
        let mut queue = VecDeque::from([event]);
        while let Some(next) = queue.pop_front() {
            let follow_ups = live.feed(&next);
            stream.push(next);
            queue.extend(follow_ups.iter().cloned());
            decided.extend(follow_ups);
        }
    }
    let comment_id = decided
        .iter()
        .find_map(|e| match &e.data {
            EventData::IssueCommentAdded(c) if c.run_id.map(|r| r.0) == Some(run) => {
                Some(c.comment_id.0)
            }
            _ => None,
        })
        .expect("the result comment names the run");
    let finish = stream
        .iter()
        .position(|e| e.event_type() == events::EventType::RunFinished)
        .unwrap();
    let posted = stream.iter().position(
        |e| matches!(&e.data, EventData::IssueCommentAdded(c) if c.comment_id.0 == comment_id),
    );
    assert!(
        posted > Some(finish),
        "after the run ended, in stream order"
    );

    // Replay: the recorded stream (follow-ups included) decided again from scratch.
    let mut replay = Simulator::new(scenario.policy.clone());
    let again: Vec<Event> = stream.iter().flat_map(|e| replay.feed(e)).collect();
    let bytes = |events: &[Event]| events.iter().map(Event::to_vec).collect::<Vec<_>>();
    assert_eq!(bytes(&again), bytes(&decided), "replay decides the same");

    for sim in [&live, &replay] {
        assert!(sim.model.known_children.contains(&comment_id), "folded");
        let row = &sim.model.runs[&run];
        assert_eq!(
            row.evidence.comments, 0,
            "the result comment is not evidence"
        );
        assert_eq!(row.evidence.activity, 0);
        assert_eq!(row.liveness_state.as_deref(), Some("needs_followup"));
    }
}

#[test]
fn ticks_are_the_same_event_for_every_publisher_of_a_slot() {
    use ::reconciler::tick::{slot_of, tick};
    use chrono::{TimeZone, Utc};
    use std::time::Duration;
    let interval = Duration::from_secs(30);
    let now = Utc.with_ymd_and_hms(2026, 4, 1, 9, 0, 44).unwrap();
    let slot = slot_of(now, interval);
    let a = tick(interval, slot);
    let b = tick(
        interval,
        slot_of(now - chrono::TimeDelta::seconds(10), interval),
    );
    assert_eq!(a.to_vec(), b.to_vec(), "same slot, byte-identical tick");
    assert_ne!(a.id, tick(interval, slot + 1).id);
    assert_ne!(
        a.id,
        tick(Duration::from_secs(10), slot).id,
        "the interval is part of the id"
    );
    assert_eq!(
        a.time,
        Utc.with_ymd_and_hms(2026, 4, 1, 9, 0, 30).unwrap(),
        "slot start"
    );
    let subjects = events::Subjects::new("runledger").unwrap();
    let events::EventData::ReconcilerTicked(data) = &a.data else {
        panic!("a tick");
    };
    assert_eq!(data.at, a.time);
    assert_eq!(
        subjects.of(&a),
        format!(
            "runledger.00000000-0000-0000-0000-000000000000.reconciler.{}",
            data.tick_id
        )
    );
}
