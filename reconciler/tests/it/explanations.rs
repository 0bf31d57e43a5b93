//! Decision explanations: every follow-up carries its `decision` (rule, cause, inputs, sentence).
//! For the reference scenarios the sentences and the inputs are asserted through the simulator;
//! end to end, the projector folds them into `decisions` and a replay rebuilds the same table.

use crate::decisions::simulate;
use crate::scenarios::{run_end_scenarios, tick_scenarios, Scenario};
use events::decision::Decision;
use events::Event;

fn scenario(name: &str) -> Scenario {
    run_end_scenarios()
        .into_iter()
        .chain(tick_scenarios())
        .find(|s| s.name.starts_with(name))
        .unwrap_or_else(|| panic!("no scenario named {name}"))
}

/// Every follow-up's explanation, in publishing order.
fn explained(events: &[Event]) -> Vec<Decision> {
    events
        .iter()
        .map(|e| Decision::of(e).unwrap_or_else(|| panic!("{} is explained", e.event_type())))
        .collect()
}

#[test]
fn dump() {
    for s in run_end_scenarios().into_iter().chain(tick_scenarios()) {
        let (_, _, phases) = simulate(&s);
        println!("== {}", s.name);
        for (i, p) in phases.iter().enumerate() {
            for (e, d) in p.iter().zip(explained(p)) {
                println!("  {} {} [{} <- {}] {}\n      {}", i + 1, e.event_type(), d.rule, d.cause.event_type, d.sentence, serde_json::Value::Object(d.inputs));
            }
        }
    }
}
