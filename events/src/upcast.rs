//! The one place where old schema versions become current ones.
//!
//! An event's `schemaversion` attribute says which version its `data` follows; absent means 1,
//! the first version, so producers that never send it keep working forever. Stored history is
//! never rewritten: every read (projector, reconciler, replay) upcasts on the way in, so a stream
//! written years ago replays through today's fold. When a type's data changes incompatibly, bump
//! its version in `event_type.rs`, add a step here from the previous version, and keep the old
//! fixtures in `tests/fixtures/` parsing.

use crate::error::ContractError;
use crate::event_type::EventType;
use serde_json::Value;

/// Brings `data` written at `version` up to the current version of `event_type`.
pub fn to_current(
    event_type: EventType,
    version: u64,
    data: Value,
) -> Result<Value, ContractError> {
    let current = event_type.schema_version();
    if version == 0 {
        return Err(ContractError::attribute(
            "schemaversion",
            "versions start at 1",
        ));
    }
    if version > u64::from(current) {
        return Err(ContractError::UnsupportedVersion {
            event_type: event_type.as_str(),
            found: version,
            current,
        });
    }
    // Contract v1 is the first version of every type: there is no older data to convert yet.
    // Steps are added here as `(type, from) => data` transformations applied in a loop.
    Ok(data)
}
