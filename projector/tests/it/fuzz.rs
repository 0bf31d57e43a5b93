//! A fuzz target over the event decoder, the bounds and the fold, driven by proptest (it runs on
//! stable Rust, in the ordinary test suite). Inputs are the contract's example events with their
//! JSON mutated (any field replaced by hostile values: NUL characters, lone-surrogate escapes,
//! numbers at and beyond every integer width, times out of range, wrong types, long text) and
//! then, sometimes, their bytes (a flipped byte, a cut). Properties:
//! - decoding never panics, and a decoded event encodes to bytes that decode to the same event;
//! - checking bounds never panics, and a checked event re-checks the same from its own encoding;
//! - folding any sequence of checked events never panics, and every row it writes holds only
//!   what PostgreSQL stores as it is (no NUL in any text or JSON).
//!
//! The budget is `RUNLEDGER_FUZZ_SECS` seconds (default 15); see docs/reliability.md.

use events::{Event, EventType};
use projector::feed::normalize;
use projector::fold::{self, model::Model};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Hostile replacement values.
fn hostile() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("a\u{0}b")),
        Just(json!("\u{0}")),
        Just(json!("x".repeat(2000))),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::from(u32::MAX))),
        Just(json!(2_147_483_648u64)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(1e300)),
        Just(json!(0.5)),
        Just(json!("9999-12-31T23:59:59Z")),
        Just(json!("0001-01-01T00:00:00Z")),
        Just(json!("1999-12-31T23:59:59.999999999Z")),
        Just(json!("2099-12-31T23:59:59Z")),
        Just(json!("2026-03-19T09:00:00.123456789+14:00")),
        Just(Value::Null),
        Just(json!(true)),
        Just(json!([])),
        Just(json!({"k\u{0}": 1})),
        any::<String>().prop_map(Value::String),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
    ]
}

/// Every path to a value in `value`, as JSON pointers.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// One input: an example event, mutated.
#[derive(Clone, Debug)]
struct Input {
    event_type: usize,
    /// (which path, by index modulo the number of paths; the new value)
    edits: Vec<(usize, Value)>,
    /// (byte position modulo the length; what happens there)
    bytes: Option<(usize, u8)>,
}

fn input() -> impl Strategy<Value = Input> {
    (
        0..EventType::ALL.len(),
        proptest::collection::vec((any::<usize>(), hostile()), 0..4),
        proptest::option::weighted(0.2, (any::<usize>(), any::<u8>())),
    )
        .prop_map(|(event_type, edits, bytes)| Input {
            event_type,
            edits,
            bytes,
        })
}

impl Input {
    fn wire(&self) -> Vec<u8> {
        let mut value = events::examples::event(EventType::ALL[self.event_type]).to_value();
        for (at, replacement) in &self.edits {
            let mut paths = Vec::new();
            pointers(&value, String::new(), &mut paths);
            let path = &paths[at % paths.len()];
            if path.is_empty() {
                continue;
            }
            *value.pointer_mut(path).expect("a path of the value") = replacement.clone();
        }
        let mut wire = serde_json::to_vec(&value).unwrap();
        match self.bytes {
            Some((at, 0)) => wire.truncate(at % wire.len()),
            Some((at, 1)) => {
                let at = at % wire.len();
                wire.splice(at..at, br"\ud800".iter().copied());
            }
            Some((at, byte)) => {
                let at = at % wire.len();
                wire[at] = byte;
            }
            None => {}
        }
        wire
    }
}

fn no_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => !s.contains('\0'),
        Value::Array(items) => items.iter().all(no_nul),
        Value::Object(map) => map.iter().all(|(k, v)| !k.contains('\0') && no_nul(v)),
        _ => true,
    }
}

/// Every row the fold would write, as JSON.
fn written(model: &Model) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut add = |v: serde_json::Result<Value>| rows.push(v.expect("rows serialize"));
    model
        .agents
        .values()
        .for_each(|r| add(serde_json::to_value(r)));
    model
        .issues
        .values()
        .for_each(|r| add(serde_json::to_value(r)));
    model
        .runs
        .values()
        .for_each(|r| add(serde_json::to_value(r)));
    model
        .wakeups
        .values()
        .for_each(|r| add(serde_json::to_value(r)));
    model
        .documents
        .values()
        .for_each(|r| add(serde_json::to_value(r)));
    let a = &model.appends;
    a.run_events
        .iter()
        .for_each(|r| add(serde_json::to_value(r)));
    a.comments.iter().for_each(|r| add(serde_json::to_value(r)));
    a.work_products
        .iter()
        .for_each(|r| add(serde_json::to_value(r)));
    a.revisions
        .iter()
        .for_each(|r| add(serde_json::to_value(r)));
    a.activity.iter().for_each(|r| add(serde_json::to_value(r)));
    rows
}

fn check(inputs: Vec<Input>) -> Result<(), TestCaseError> {
    let stored_at =
        events::examples::event(EventType::RunQueued).time + chrono::TimeDelta::minutes(1);
    let mut model = Model::default();
    for (seq, input) in inputs.iter().enumerate() {
        let wire = input.wire();
        let Ok(mut event) = Event::from_slice(&wire) else {
            continue;
        };
        let again = Event::from_slice(&event.to_vec());
        prop_assert_eq!(
            again,
            Ok(event.clone()),
            "an event round-trips through its encoding"
        );
        let checked = event.check_bounds(&wire, stored_at);
        prop_assert_eq!(
            event.check_bounds(&event.to_vec(), stored_at).is_ok(),
            checked.is_ok(),
            "the bounds of an event do not depend on its encoding"
        );
        if checked.is_err() {
            continue;
        }
        normalize(&mut event);
        let _ = fold::apply(&mut model, seq as i64 + 1, &event);
    }
    for row in written(&model) {
        prop_assert!(no_nul(&row), "a row PostgreSQL cannot store: {row}");
    }
    Ok(())
}

#[test]
fn fuzz_the_decoder_the_bounds_and_the_fold() {
    let budget = std::env::var("RUNLEDGER_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(15), Duration::from_secs);
    let began = Instant::now();
    let mut cases = 0u64;
    while began.elapsed() < budget {
        let mut runner = TestRunner::new(Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&proptest::collection::vec(input(), 1..8), check);
        if let Err(e) = result {
            panic!("fuzzing found: {e}");
        }
        cases += 64;
    }
    eprintln!("fuzz: {cases} cases in {:?}", began.elapsed());
}
