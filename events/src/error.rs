//! Contract violations. Every variant names what is wrong and where (attribute, field path or
//! JSON position), because the message is shown to whoever published the event: a person at a
//! terminal, an agent in another language, or an operator reading a dead letter.

use thiserror::Error;

/// Why bytes are not a valid runledger event. None of these is retryable: the same bytes will
/// always be rejected; producers report them, consumers dead-letter them.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ContractError {
    /// The bytes are not JSON (the message carries line and column).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The JSON is not an object.
    #[error("a CloudEvent must be a JSON object")]
    NotAnObject,
    /// The encoded event is larger than [`crate::MAX_EVENT_BYTES`].
    #[error("event is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    /// A required CloudEvents attribute is absent.
    #[error("missing required attribute `{0}`")]
    MissingAttribute(&'static str),
    /// A CloudEvents attribute has a bad value.
    #[error("attribute `{name}`: {reason}")]
    InvalidAttribute { name: String, reason: String },
    /// `type` names no event type of this contract.
    #[error("unknown event type `{0}` (known types: {known})", known = crate::EventType::known_list())]
    UnknownType(String),
    /// The event declares a schema version newer than this build understands.
    #[error("`{event_type}` schema version {found} is newer than the {current} this build reads")]
    UnsupportedVersion {
        event_type: &'static str,
        found: u64,
        current: u32,
    },
    /// The `data` payload does not match the type's schema or rules.
    #[error("{event_type}: field `data.{path}`: {reason}")]
    InvalidData {
        event_type: &'static str,
        path: String,
        reason: String,
    },
    /// A value PostgreSQL cannot store as it is (a NUL character, a number beyond its column, a
    /// time out of bounds; see [`crate::bounds`]).
    #[error("field `{field}`: {reason}")]
    OutOfBounds { field: String, reason: String },
}

impl ContractError {
    pub(crate) fn attribute(name: &str, reason: impl Into<String>) -> Self {
        Self::InvalidAttribute {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn data(event_type: &'static str, path: &str, reason: impl Into<String>) -> Self {
        Self::InvalidData {
            event_type,
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    /// The attribute or `data.` field the error is about, if it is about one.
    pub fn field(&self) -> Option<String> {
        match self {
            Self::MissingAttribute(name) => Some((*name).to_owned()),
            Self::InvalidAttribute { name, .. } => Some(name.clone()),
            Self::UnknownType(_) => Some("type".to_owned()),
            Self::UnsupportedVersion { .. } => Some("schemaversion".to_owned()),
            Self::InvalidData { path, .. } => Some(format!("data.{path}")),
            Self::OutOfBounds { field, .. } => Some(field.clone()),
            _ => None,
        }
    }
}
