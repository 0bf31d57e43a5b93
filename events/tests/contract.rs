//! Contract tests: snapshots of every type, old-version fixtures, schema and docs drift, bad
//! input, and a property test that valid events survive serialize/parse.
//!
//! `RUNLEDGER_BLESS=1 cargo test -p events` rewrites the generated schemas, examples and the
//! generated part of `docs/events.md` after an intentional contract change.

use events::*;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn bless() -> bool {
    std::env::var_os("RUNLEDGER_BLESS").is_some()
}

/// Compares `actual` with the checked-in file, or rewrites it when blessing.
fn check_file(path: &Path, actual: &str) {
    if bless() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "{} is missing; run RUNLEDGER_BLESS=1 cargo test -p events",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} drifted from the Rust types; review the change and run RUNLEDGER_BLESS=1 cargo test -p events",
        path.display()
    );
}

#[test]
fn every_example_round_trips_and_matches_its_snapshot() {
    for t in EventType::ALL {
        let event = examples::event(*t);
        let bytes = event.to_vec();
        let parsed = Event::from_slice(&bytes).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(parsed, event, "{t} round trip");
        assert_eq!(parsed.to_vec(), bytes, "{t} re-encodes byte-identically");
        let pretty = serde_json::to_string_pretty(&event.to_value()).unwrap() + "\n";
        check_file(
            &repo_root().join(format!("docs/examples/{t}.json")),
            &pretty,
        );
    }
}

#[test]
fn json_schemas_match_the_rust_types() {
    for t in EventType::ALL {
        let schema = serde_json::to_string_pretty(&schema::event_schema(*t)).unwrap() + "\n";
        check_file(&repo_root().join(format!("docs/schemas/{t}.json")), &schema);
    }
}

#[test]
fn events_md_reference_matches_the_rust_types() {
    const BEGIN: &str = "<!-- BEGIN GENERATED: cargo test -p events -->\n";
    const END: &str = "<!-- END GENERATED -->";
    let path = repo_root().join("docs/events.md");
    let doc = std::fs::read_to_string(&path).expect("docs/events.md exists");
    let start = doc
        .find(BEGIN)
        .expect("docs/events.md has the BEGIN GENERATED marker")
        + BEGIN.len();
    let end = doc
        .find(END)
        .expect("docs/events.md has the END GENERATED marker");
    let generated = schema::markdown_reference();
    let rebuilt = format!("{}{}{}", &doc[..start], generated, &doc[end..]);
    check_file(&path, &rebuilt);
}

#[test]
fn version_1_fixtures_keep_parsing() {
    // Fixtures are frozen copies of events as producers wrote them; never regenerate them.
    let dir = repo_root().join("events/tests/fixtures/v1");
    let mut seen = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let event = Event::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{} no longer parses: {e}", path.display()));
        seen.insert(event.event_type());
    }
    assert_eq!(
        seen.len(),
        EventType::ALL.len(),
        "a v1 fixture for every type"
    );
}

fn example_value(t: EventType) -> serde_json::Value {
    examples::event(t).to_value()
}

fn err_of(value: serde_json::Value) -> ContractError {
    Event::from_value(value).expect_err("must be rejected")
}

#[test]
fn minimal_event_from_another_language_parses() {
    // What a TypeScript or Python agent writes by hand: no subject, no schemaversion,
    // only required data fields.
    let raw = r#"{"specversion":"1.0","id":"0f8b7a4e-2f7c-4bde-9a57-1c0e5f3b2a11",
        "source":"my-agent","type":"run.activity","time":"2026-03-19T09:00:00+01:00",
        "companyid":"5f0c6a8e-1d2b-4c3a-9e8f-7a6b5c4d3e2f",
        "data":{"run_id":"9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d","kind":"heartbeat","at":"2026-03-19T08:00:00Z"}}"#;
    let event = Event::from_slice(raw.as_bytes()).unwrap();
    assert_eq!(event.event_type(), EventType::RunActivity);
    assert_eq!(event.time.to_rfc3339(), "2026-03-19T08:00:00+00:00");
}

#[test]
fn unknown_fields_are_kept_in_data_and_envelope() {
    let mut v = example_value(EventType::RunFinished);
    v["data"]["model"] = serde_json::json!("gpt-5");
    v["traceparent"] = serde_json::json!("00-abc-01");
    let event = Event::from_value(v).unwrap();
    let again = event.to_value();
    assert_eq!(again["data"]["model"], "gpt-5");
    assert_eq!(again["traceparent"], "00-abc-01");
}

#[test]
fn malformed_json_names_line_and_column() {
    let err = Event::from_slice(b"{\"specversion\": \"1.0\",\n  \"id\": }").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("malformed JSON"), "{text}");
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn missing_envelope_attribute_is_named() {
    let mut v = example_value(EventType::RunStarted);
    v.as_object_mut().unwrap().remove("companyid");
    assert_eq!(err_of(v), ContractError::MissingAttribute("companyid"));
}

#[test]
fn missing_data_field_is_named() {
    let mut v = example_value(EventType::RunFinished);
    v["data"].as_object_mut().unwrap().remove("outcome");
    let err = err_of(v);
    assert_eq!(err.field().as_deref(), Some("data.outcome"), "{err}");
    assert!(err.to_string().contains("missing field `outcome`"), "{err}");
}

#[test]
fn wrong_type_is_named_with_its_path() {
    let mut v = example_value(EventType::RunStarted);
    v["data"]["pid"] = serde_json::json!("forty-two");
    let err = err_of(v);
    assert_eq!(err.field().as_deref(), Some("data.pid"), "{err}");
    assert!(err.to_string().contains("invalid type"), "{err}");
}

#[test]
fn unknown_type_lists_the_known_ones() {
    let mut v = example_value(EventType::RunStarted);
    v["type"] = serde_json::json!("run.exploded");
    let err = err_of(v);
    assert_eq!(err, ContractError::UnknownType("run.exploded".into()));
    assert!(err.to_string().contains("run.finished"));
}

#[test]
fn non_uuid_ids_are_rejected() {
    let mut v = example_value(EventType::RunStarted);
    v["data"]["run_id"] = serde_json::json!("run-1");
    let err = err_of(v);
    assert_eq!(err.field().as_deref(), Some("data.run_id"), "{err}");

    let mut v = example_value(EventType::RunStarted);
    v["id"] = serde_json::json!("evt-1");
    assert_eq!(err_of(v).field().as_deref(), Some("id"));

    let mut v = example_value(EventType::RunStarted);
    v["companyid"] = serde_json::json!("acme");
    assert_eq!(err_of(v).field().as_deref(), Some("companyid"));
}

#[test]
fn oversized_payload_is_rejected_before_parsing() {
    let mut v = example_value(EventType::DocumentRevised);
    v["data"]["body"] = serde_json::json!("x".repeat(MAX_EVENT_BYTES));
    let bytes = serde_json::to_vec(&v).unwrap();
    match Event::from_slice(&bytes).unwrap_err() {
        ContractError::TooLarge { size, limit } => {
            assert_eq!(size, bytes.len());
            assert_eq!(limit, MAX_EVENT_BYTES);
        }
        other => panic!("expected TooLarge, got {other}"),
    }
}

#[test]
fn rules_beyond_shape_are_enforced() {
    let cases: Vec<(EventType, &str, serde_json::Value, &str)> = vec![
        (
            EventType::RunStarted,
            "pid",
            serde_json::json!(-3),
            "data.pid",
        ),
        (
            EventType::DocumentRevised,
            "key",
            serde_json::json!("Plan Doc"),
            "data.key",
        ),
        (
            EventType::DocumentRevised,
            "revision_number",
            serde_json::json!(0),
            "data.revision_number",
        ),
        (
            EventType::IssueCreated,
            "title",
            serde_json::json!("  "),
            "data.title",
        ),
        (
            EventType::IssueCreated,
            "assignee_user_id",
            serde_json::json!("user-1"),
            "data.assignee_user_id",
        ),
        (
            EventType::RunFinished,
            "outcome",
            serde_json::json!("exploded"),
            "data.outcome",
        ),
        (
            EventType::RunActivity,
            "kind",
            serde_json::json!("thinking"),
            "data.kind",
        ),
    ];
    for (t, field, value, expected) in cases {
        let mut v = example_value(t);
        v["data"][field] = value;
        let err = err_of(v);
        assert_eq!(err.field().as_deref(), Some(expected), "{t}.{field}: {err}");
    }
    let v = serde_json::json!({
        "specversion": "1.0", "id": "0f8b7a4e-2f7c-4bde-9a57-1c0e5f3b2a11", "source": "x",
        "type": "issue.updated", "time": "2026-03-19T09:00:00Z",
        "companyid": "5f0c6a8e-1d2b-4c3a-9e8f-7a6b5c4d3e2f",
        "data": {"issue_id": "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"}
    });
    assert!(err_of(v).to_string().contains("changes nothing"));
}

#[test]
fn envelope_rules_are_enforced() {
    let mut v = example_value(EventType::RunStarted);
    v["subject"] = serde_json::json!("run/00000000-0000-0000-0000-000000000000");
    assert_eq!(err_of(v).field().as_deref(), Some("subject"));
    let mut v = example_value(EventType::RunStarted);
    v["specversion"] = serde_json::json!("0.3");
    assert_eq!(err_of(v).field().as_deref(), Some("specversion"));
    let mut v = example_value(EventType::RunStarted);
    v["time"] = serde_json::json!("yesterday");
    assert_eq!(err_of(v).field().as_deref(), Some("time"));
    let mut v = example_value(EventType::RunStarted);
    v["schemaversion"] = serde_json::json!(2);
    assert!(matches!(
        err_of(v),
        ContractError::UnsupportedVersion { found: 2, .. }
    ));
    let mut v = example_value(EventType::RunStarted);
    v["Bad-Ext"] = serde_json::json!(1);
    assert_eq!(err_of(v).field().as_deref(), Some("Bad-Ext"));
    let mut v = example_value(EventType::RunStarted);
    v["datacontenttype"] = serde_json::json!("text/plain");
    assert_eq!(err_of(v).field().as_deref(), Some("datacontenttype"));
}

#[test]
fn issue_update_tells_absent_from_null() {
    let mut v = example_value(EventType::IssueUpdated);
    v["data"]["assignee_agent_id"] = serde_json::Value::Null;
    let event = Event::from_value(v).unwrap();
    let EventData::IssueUpdated(update) = &event.data else {
        panic!()
    };
    assert_eq!(update.assignee_agent_id, Some(None), "null clears");
    assert_eq!(update.assignee_user_id, None, "absent leaves alone");
    assert!(event.to_value()["data"]["assignee_agent_id"].is_null());
    assert_eq!(Event::from_slice(&event.to_vec()).unwrap(), event);
}

#[test]
fn subjects_follow_the_contract() {
    let subjects = Subjects::new("rl_test-1").unwrap();
    let event = examples::event(EventType::RunFinished);
    assert_eq!(
        subjects.of(&event),
        format!(
            "rl_test-1.{}.run.{}",
            examples::COMPANY,
            "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
        )
    );
    assert_eq!(subjects.all(), "rl_test-1.>");
    for event_type in EventType::ALL {
        let event = examples::event(*event_type);
        let subject = subjects.of(&event);
        assert!(subjects.is_subject_of(&event, &subject), "{subject}");
        let ce = event.ce_subject();
        assert!(event.is_ce_subject(&ce), "{ce}");
        for wrong in [
            String::new(),
            format!("{ce}x"),
            ce.replacen('/', ".", 1),
            ce[1..].to_owned(),
        ] {
            assert!(!event.is_ce_subject(&wrong), "`{wrong}` for `{ce}`");
        }
        let company = event.company_id.to_string();
        let entity = event.event_type().entity().as_str();
        let wrong = [
            String::new(),
            subject[..subject.len() - 1].to_owned(),
            format!("{subject}x"),
            format!("{subject}.x"),
            subject.to_uppercase(),
            subject.replacen("rl_test-1", "rl_test-2", 1),
            subject.replacen(&company, "0b7e2c1a-3f4d-4e5a-8b9c-0d1e2f3a4b5c", 1),
            subject.replacen(&format!(".{entity}."), ".other.", 1),
            format!("rl_test-1.{company}.{entity}"),
            format!("rl_test-1.{company}.{entity}.{}", uuid::Uuid::nil()),
        ];
        for w in wrong {
            assert!(!subjects.is_subject_of(&event, &w), "`{w}` for `{subject}`");
        }
    }
    assert!(Subjects::new("a.b").is_err());
    assert!(Subjects::new("").is_err());
}

#[test]
fn derived_ids_are_deterministic_and_rule_specific() {
    let cause = EventId::new_random();
    assert_eq!(
        EventId::derived(cause, "retry"),
        EventId::derived(cause, "retry")
    );
    assert_ne!(
        EventId::derived(cause, "retry"),
        EventId::derived(cause, "wakeup")
    );
}

mod properties {
    use super::*;
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 _.:/\\-\u{e9}\u{4e2d}]{1,40}".prop_filter("non-blank", |s| !s.trim().is_empty())
    }

    fn extra() -> impl Strategy<Value = serde_json::Map<String, Value>> {
        proptest::collection::btree_map("x_[a-z]{1,8}", any::<i64>(), 0..3)
            .prop_map(|m| m.into_iter().map(|(k, v)| (k, json!(v))).collect())
    }

    /// Mutates an example event: random strings in every string field, random optional
    /// fields dropped, random extra fields, random id, time and company.
    fn mutated(t: EventType) -> impl Strategy<Value = Value> {
        (
            any::<u128>(),
            any::<u128>(),
            0i64..4_000_000_000,
            proptest::collection::vec(text(), 8),
            proptest::collection::vec(any::<bool>(), 8),
            extra(),
        )
            .prop_map(move |(id, company, secs, texts, drops, extra)| {
                let mut v = examples::event(t).to_value();
                v["id"] = json!(uuid::Uuid::from_u128(id).to_string());
                v["companyid"] = json!(uuid::Uuid::from_u128(company).to_string());
                v["time"] = json!(Utc.timestamp_opt(secs, 0).unwrap().to_rfc3339());
                v.as_object_mut().unwrap().remove("subject");
                let data = v["data"].as_object_mut().unwrap();
                let mut i = 0;
                for name in [
                    "message", "name", "role", "body", "reason", "title", "host", "summary",
                ] {
                    if data.get(name).is_some_and(Value::is_string) {
                        data.insert(name.into(), json!(texts[i % texts.len()]));
                        i += 1;
                    }
                }
                for (n, name) in [
                    "description",
                    "stdout_excerpt",
                    "next_action",
                    "usage",
                    "change_summary",
                    "pgid",
                    "signal",
                    "retry_of_run_id",
                ]
                .iter()
                .enumerate()
                {
                    if drops[n] {
                        data.remove(*name);
                    }
                }
                data.extend(extra);
                v
            })
    }

    fn any_event() -> impl Strategy<Value = Value> {
        proptest::sample::select(EventType::ALL.to_vec()).prop_flat_map(mutated)
    }

    proptest! {
        #[test]
        fn valid_events_survive_serialize_and_parse(v in any_event()) {
            let event = Event::from_value(v).expect("mutated examples stay valid");
            let bytes = event.to_vec();
            let parsed = Event::from_slice(&bytes).expect("serialized events parse");
            prop_assert_eq!(&parsed, &event);
            // the fast path and the precise path agree
            let slow = Event::from_value(serde_json::from_slice(&bytes).unwrap()).unwrap();
            prop_assert_eq!(&slow, &event);
            prop_assert_eq!(parsed.to_vec(), bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Event::from_slice(&bytes);
        }
    }
}
