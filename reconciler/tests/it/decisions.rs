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
