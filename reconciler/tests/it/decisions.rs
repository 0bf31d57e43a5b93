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
