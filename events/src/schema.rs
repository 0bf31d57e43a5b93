//! JSON Schemas and documentation generated from the Rust types, so that agents in other
//! languages read exactly what the projector will accept. A test compares the checked-in
//! `docs/schemas/*.json` and `docs/events.md` with what this module generates.

use crate::event_type::EventType;
use crate::examples;
use crate::{agent, document, issue, run, tick, wakeup};
use schemars::{schema_for, JsonSchema};
use serde_json::{json, Map, Value};

fn payload_schema<T: JsonSchema>() -> Value {
    schema_for!(T).to_value()
}

/// The JSON Schema of `event_type`'s `data`.
pub fn data_schema(event_type: EventType) -> Value {
    use EventType as T;
    match event_type {
        T::AgentRegistered => payload_schema::<agent::AgentRegistered>(),
        T::AgentStatusChanged => payload_schema::<agent::AgentStatusChanged>(),
        T::IssueCreated => payload_schema::<issue::IssueCreated>(),
        T::IssueUpdated => payload_schema::<issue::IssueUpdated>(),
        T::IssueCommentAdded => payload_schema::<issue::IssueCommentAdded>(),
        T::IssueWorkProductAdded => payload_schema::<issue::IssueWorkProductAdded>(),
        T::DocumentRevised => payload_schema::<document::DocumentRevised>(),
        T::WakeupRequested => payload_schema::<wakeup::WakeupRequested>(),
        T::RunQueued => payload_schema::<run::RunQueued>(),
        T::RunStarted => payload_schema::<run::RunStarted>(),
        T::RunActivity => payload_schema::<run::RunActivity>(),
        T::RunProcessDetached => payload_schema::<run::RunProcessDetached>(),
        T::RunProcessLost => payload_schema::<run::RunProcessLost>(),
        T::RunCancelRequested => payload_schema::<run::RunCancelRequested>(),
        T::RunFinished => payload_schema::<run::RunFinished>(),
        T::RunLivenessClassified => payload_schema::<run::RunLivenessClassified>(),
        T::IssueFollowUpRefused => payload_schema::<issue::IssueFollowUpRefused>(),
        T::IssueFollowUpDeferred => payload_schema::<issue::IssueFollowUpDeferred>(),
        T::IssueFollowUpDeferralClosed => payload_schema::<issue::IssueFollowUpDeferralClosed>(),
        T::ReconcilerTicked => payload_schema::<tick::ReconcilerTicked>(),
    }
}

/// The JSON Schema (draft 2020-12) of a whole CloudEvent of `event_type`.
pub fn event_schema(event_type: EventType) -> Value {
    let mut data = data_schema(event_type);
    let defs = data
        .as_object_mut()
        .and_then(|m| {
            m.remove("$schema");
            m.remove("title");
            m.remove("$defs")
        })
        .unwrap_or_else(|| Value::Object(Map::new()));
    let entity = event_type.entity().as_str();
    let uuid = json!({"type": "string", "format": "uuid"});
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("urn:runledger:event:{}:v{}", event_type.as_str(), event_type.schema_version()),
        "title": event_type.as_str(),
        "description": format!("Emitted by {}. {}", event_type.emitted_by(), event_type.effect()),
        "type": "object",
        "required": ["specversion", "id", "source", "type", "time", "companyid", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": uuid,
            "source": {"type": "string", "minLength": 1},
            "type": {"const": event_type.as_str()},
            "subject": {
                "type": "string",
                "description": format!("`{entity}/<{entity}_id>`; computed by runledger when absent"),
                "pattern": format!("^{entity}/[0-9a-fA-F-]{{36}}$"),
            },
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "companyid": uuid,
            "schemaversion": {
                "type": "integer",
                "minimum": 1,
                "maximum": event_type.schema_version(),
                "description": "Version of `data`; absent means 1",
            },
            "data": data,
        },
        "additionalProperties": {
            "description": "CloudEvents extension attributes (names of 1 to 20 lowercase letters or digits) are kept",
        },
    });
    if defs.as_object().is_some_and(|d| !d.is_empty()) {
        schema["$defs"] = defs;
    }
    schema
}

/// The generated part of `docs/events.md`: one section per type.
pub fn markdown_reference() -> String {
    let mut out = String::new();
    for event_type in EventType::ALL {
        let entity = event_type.entity().as_str();
        let example = examples::event(*event_type);
        let pretty = serde_json::to_string_pretty(&example.to_value()).expect("serializes");
        out.push_str(&format!(
            "### `{name}` (v{version})\n\n\
             - **Subject**: `<prefix>.<company_id>.{entity}.<{entity}_id>`\n\
             - **Emitted by**: {emitter}\n\
             - **Changes**: {effect}\n\
             - **Schema**: [`schemas/{name}.json`](schemas/{name}.json)\n\n\
             ```json\n{pretty}\n```\n\n",
            name = event_type.as_str(),
            version = event_type.schema_version(),
            emitter = event_type.emitted_by(),
            effect = event_type.effect(),
        ));
    }
    out
}
