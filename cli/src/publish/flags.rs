//! The one event of `--type`, `--company` and `--data`: built as a CloudEvent and parsed like
//! any received event, with the flag at fault named.

use super::Args;
use anyhow::{anyhow, bail};
use chrono::{SecondsFormat, Utc};
use events::{Event, EventType};
use serde_json::{json, Value};

/// Builds the CloudEvent of the flags and parses it like any received event.
pub(super) fn event_from_flags(args: &Args) -> anyhow::Result<Event> {
    let (Some(event_type), Some(company), Some(data)) =
        (&args.event_type, &args.company, &args.data)
    else {
        bail!("--type, --company and --data are all needed to publish one event from flags");
    };
    let data = parse_data_flag(data)?;
    let mut value = json!({
        "specversion": "1.0",
        "id": args.id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        "source": args.source.clone().unwrap_or_else(default_source),
        "type": event_type,
        "time": args.time.clone().unwrap_or_else(now_rfc3339),
        "datacontenttype": events::DATA_CONTENT_TYPE,
        "companyid": company,
        "data": data,
    });
    // The flags give the current shape of `data`; say so, or it would be upcast from version 1.
    if let Some(known) = EventType::parse(event_type) {
        value["schemaversion"] = json!(known.schema_version());
    }
    let wire = serde_json::to_vec(&value)?;
    Event::from_value(value)
        .and_then(|event| {
            event.check_bounds(&wire, chrono::Utc::now())?;
            Ok(event)
        })
        .map_err(|err| {
            anyhow!(
                "invalid event from flags ({}): {err}",
                flag_of(err.field().as_deref())
            )
        })
}

fn parse_data_flag(text: &str) -> anyhow::Result<Value> {
    let data: Value = serde_json::from_str(text).map_err(|err| {
        anyhow!("--data is not valid JSON ({err}); give the event's data as one JSON object, e.g. --data '{{\"run_id\": \"...\"}}'")
    })?;
    if !data.is_object() {
        bail!("--data must be a JSON object, got {}", json_kind(&data));
    }
    Ok(data)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The flag that sets the attribute or field a contract error is about.
fn flag_of(field: Option<&str>) -> &'static str {
    match field {
        Some("id") => "--id",
        Some("type") => "--type",
        Some("time") => "--time",
        Some("source") => "--source",
        Some("companyid") => "--company",
        Some(f) if f.starts_with("data") => "--data",
        _ => "flags",
    }
}

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn default_source() -> String {
    format!("runledger-cli/{}", hostname())
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}
