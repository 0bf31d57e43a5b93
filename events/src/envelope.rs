//! The CloudEvents 1.0 envelope (structured JSON mode) and the single parse path every consumer
//! and producer goes through: size limit, envelope attributes, upcasting, typed data, rules.

use crate::error::ContractError;
use crate::event_type::EventType;
use crate::ids::{CompanyId, EventId};
use crate::payload::{DataSeed, EventData};
use crate::upcast;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// Largest encoded event accepted (below NATS' default 1 MiB `max_payload`, leaving headroom).
pub const MAX_EVENT_BYTES: usize = 512 * 1024;

/// The media type of `data`; the only one this contract uses.
pub const DATA_CONTENT_TYPE: &str = "application/json";

const CORE_ATTRIBUTES: [&str; 10] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "companyid",
    "schemaversion",
    "data",
];

/// One runledger event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Unique; the JetStream `Nats-Msg-Id`.
    pub id: EventId,
    /// Who produced it, e.g. `runledger-supervisor/host-1`.
    pub source: String,
    /// When it happened, by the producer's clock.
    pub time: DateTime<Utc>,
    /// The `companyid` extension attribute.
    pub company_id: CompanyId,
    pub data: EventData,
    /// CloudEvents extension attributes this contract does not define; kept as received.
    pub extensions: Map<String, Value>,
}

impl Event {
    /// A new event with a random id.
    pub fn new(
        company_id: CompanyId,
        source: impl Into<String>,
        time: DateTime<Utc>,
        data: EventData,
    ) -> Self {
        Self::with_id(EventId::new_random(), company_id, source, time, data)
    }

    /// A new event with a given id (deterministic follow-ups use [`EventId::derived`]).
    pub fn with_id(
        id: EventId,
        company_id: CompanyId,
        source: impl Into<String>,
        time: DateTime<Utc>,
        data: EventData,
    ) -> Self {
        Self {
            id,
            source: source.into(),
            time,
            company_id,
            data,
            extensions: Map::new(),
        }
    }

    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }

    /// The CloudEvents `subject`: `<entity>/<entity_id>`.
    pub fn ce_subject(&self) -> String {
        CeSubject(self).to_string()
    }

    /// Whether `subject` is [`Event::ce_subject`], without building it.
    pub fn is_ce_subject(&self, subject: &str) -> bool {
        let mut buf = uuid::Uuid::encode_buffer();
        subject.split_once('/').is_some_and(|(entity, id)| {
            entity == self.event_type().entity().as_str()
                && id == self.data.entity_id().hyphenated().encode_lower(&mut buf)
        })
    }

    /// Parses and validates one event from its JSON bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ContractError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(ContractError::TooLarge {
                size: bytes.len(),
                limit: MAX_EVENT_BYTES,
            });
        }
        // Checked as UTF-8 once, whole: the fast path's strings are then not checked one by one.
        if let Some(event) = std::str::from_utf8(bytes).ok().and_then(Self::fast) {
            return Ok(event);
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|err| ContractError::MalformedJson(err.to_string()))?;
        Self::from_value(value)
    }

    /// The common case — current schema version, no extension attributes, valid data — parsed
    /// without building a JSON tree (about twice as fast), in one pass when `type` comes before
    /// `data` ([`Wire`]). Anything unusual returns `None` and goes through
    /// [`Event::from_value`], which gives the same result or the precise error.
    fn fast(text: &str) -> Option<Self> {
        let wire: Wire = serde_json::from_str(text).ok()?;
        let event_type = wire.event_type;
        let current = u64::from(event_type.schema_version());
        let fine = wire.specversion == "1.0"
            && !wire.source.trim().is_empty()
            && wire.datacontenttype.is_none_or(|c| c == DATA_CONTENT_TYPE)
            && wire.schemaversion.unwrap_or(1) == current
            && current == 1;
        if !fine {
            return None;
        }
        let data = match wire.data {
            WireData::Typed(data) => {
                data.validate().ok()?;
                data
            }
            WireData::Raw(raw) => EventData::from_json_text(event_type, raw.get())?,
        };
        let event = Event {
            id: wire.id.parse().ok()?,
            source: wire.source,
            time: DateTime::parse_from_rfc3339(wire.time)
                .ok()?
                .with_timezone(&Utc),
            company_id: wire.companyid.parse().ok()?,
            data,
            extensions: Map::new(),
        };
        match wire.subject {
            Some(subject) if !event.is_ce_subject(subject) => None,
            _ => Some(event),
        }
    }

    /// Parses and validates one event from a JSON value.
    pub fn from_value(value: Value) -> Result<Self, ContractError> {
        let Value::Object(mut attrs) = value else {
            return Err(ContractError::NotAnObject);
        };
        let specversion = take_string(&mut attrs, "specversion")?;
        if specversion != "1.0" {
            return Err(ContractError::attribute(
                "specversion",
                format!("must be \"1.0\", got \"{specversion}\""),
            ));
        }
        let id = take_string(&mut attrs, "id")?;
        let id: EventId = id
            .parse()
            .map_err(|_| ContractError::attribute("id", format!("`{id}` is not a UUID")))?;
        let source = take_string(&mut attrs, "source")?;
        if source.trim().is_empty() {
            return Err(ContractError::attribute("source", "must not be empty"));
        }
        let type_text = take_string(&mut attrs, "type")?;
        let event_type =
            EventType::parse(&type_text).ok_or(ContractError::UnknownType(type_text))?;
        let time = take_string(&mut attrs, "time")?;
        let time = DateTime::parse_from_rfc3339(&time)
            .map_err(|err| {
                ContractError::attribute("time", format!("`{time}` is not RFC 3339: {err}"))
            })?
            .with_timezone(&Utc);
        let company = take_string(&mut attrs, "companyid")?;
        let company_id: CompanyId = company.parse().map_err(|_| {
            ContractError::attribute("companyid", format!("`{company}` is not a UUID"))
        })?;
        if let Some(content_type) = attrs.remove("datacontenttype") {
            if content_type.as_str() != Some(DATA_CONTENT_TYPE) {
                return Err(ContractError::attribute(
                    "datacontenttype",
                    format!("must be \"{DATA_CONTENT_TYPE}\", got {content_type}"),
                ));
            }
        }
        let version = match attrs.remove("schemaversion") {
            None => 1,
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| {
                    ContractError::attribute(
                        "schemaversion",
                        format!("must be a positive integer, got {v}"),
                    )
                })?,
        };
        let subject = attrs.remove("subject");
        let data = attrs
            .remove("data")
            .ok_or(ContractError::MissingAttribute("data"))?;
        let data = upcast::to_current(event_type, version, data)?;
        let data = EventData::from_value(event_type, data)?;
        for name in attrs.keys() {
            let valid = (1..=20).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !valid {
                return Err(ContractError::attribute(
                    name,
                    "CloudEvents extension attribute names are 1 to 20 lowercase letters or digits",
                ));
            }
        }
        let event = Event {
            id,
            source,
            time,
            company_id,
            data,
            extensions: attrs,
        };
        if let Some(subject) = subject {
            let expected = event.ce_subject();
            if subject.as_str() != Some(expected.as_str()) {
                return Err(ContractError::attribute(
                    "subject",
                    format!("must be \"{expected}\" for this event, got {subject}"),
                ));
            }
        }
        Ok(event)
    }

    /// The structured-mode JSON encoding.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("events always serialize")
    }

    /// The structured-mode JSON encoding, as a value.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("events always serialize")
    }
}

fn take_string(
    attrs: &mut Map<String, Value>,
    name: &'static str,
) -> Result<String, ContractError> {
    match attrs.remove(name) {
        None | Some(Value::Null) => Err(ContractError::MissingAttribute(name)),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ContractError::attribute(
            name,
            format!("must be a string, got {other}"),
        )),
    }
}

/// An event's CloudEvents `subject`, written where it is needed.
struct CeSubject<'a>(&'a Event);

impl std::fmt::Display for CeSubject<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let event = self.0;
        write!(
            f,
            "{}/{}",
            event.event_type().entity().as_str(),
            event.data.entity_id()
        )
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let extensions = self
            .extensions
            .keys()
            .filter(|name| !CORE_ATTRIBUTES.contains(&name.as_str()))
            .count();
        // The exact count: a binary encoding (the digest's) writes it before the entries.
        let mut map = serializer.serialize_map(Some(CORE_ATTRIBUTES.len() + extensions))?;
        map.serialize_entry("specversion", "1.0")?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("source", &self.source)?;
        map.serialize_entry("type", self.event_type().as_str())?;
        // Written straight into the output, not built first (every folded event is encoded
        // for its digest).
        map.serialize_entry("subject", &format_args!("{}", CeSubject(self)))?;
        map.serialize_entry(
            "time",
            &self.time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        )?;
        map.serialize_entry("datacontenttype", DATA_CONTENT_TYPE)?;
        map.serialize_entry("companyid", &self.company_id)?;
        map.serialize_entry("schemaversion", &self.event_type().schema_version())?;
        for (name, value) in &self.extensions {
            if !CORE_ATTRIBUTES.contains(&name.as_str()) {
                map.serialize_entry(name, value)?;
            }
        }
        map.serialize_entry("data", &self.data)?;
        map.end()
    }
}

/// The envelope as the fast path reads it: only the attributes this contract defines (anything
/// else fails, for the precise path), each once. `data` is parsed as its type says in the same
/// pass when `type` came before it, as every runledger producer writes it; after it, `data` is
/// kept as raw JSON and parsed once the type is known.
struct Wire<'a> {
    specversion: &'a str,
    id: &'a str,
    source: String,
    event_type: EventType,
    time: &'a str,
    companyid: &'a str,
    subject: Option<&'a str>,
    datacontenttype: Option<&'a str>,
    schemaversion: Option<u64>,
    data: WireData<'a>,
}

// A short-lived value on the parse's stack, moved once into the event: boxing the large
// variant would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
enum WireData<'a> {
    /// Parsed in the envelope's pass (not validated yet).
    Typed(EventData),
    /// `data` came before `type`.
    Raw(&'a serde_json::value::RawValue),
}

impl<'de> serde::Deserialize<'de> for Wire<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(WireVisitor)
    }
}

struct WireVisitor;

impl<'de> serde::de::Visitor<'de> for WireVisitor {
    type Value = Wire<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a CloudEvent")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Wire<'de>, A::Error> {
        use serde::de::Error;
        fn once<T, E: Error>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), E> {
            if slot.replace(value).is_some() {
                return Err(E::custom(format_args!("`{name}` twice")));
            }
            Ok(())
        }
        let (mut specversion, mut id, mut source, mut event_type) = (None, None, None, None);
        let (mut time, mut companyid, mut subject) = (None, None, None);
        let (mut datacontenttype, mut schemaversion, mut data) = (None, None, None);
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "specversion" => once(&mut specversion, map.next_value()?, key)?,
                "id" => once(&mut id, map.next_value()?, key)?,
                "source" => once(&mut source, map.next_value()?, key)?,
                "type" => {
                    let text: &str = map.next_value()?;
                    let parsed = EventType::parse(text)
                        .ok_or_else(|| A::Error::custom("unknown event type"))?;
                    once(&mut event_type, parsed, key)?
                }
                "time" => once(&mut time, map.next_value()?, key)?,
                "companyid" => once(&mut companyid, map.next_value()?, key)?,
                "subject" => once(&mut subject, map.next_value::<Option<&str>>()?, key)?,
                "datacontenttype" => {
                    once(&mut datacontenttype, map.next_value::<Option<&str>>()?, key)?
                }
                "schemaversion" => once(&mut schemaversion, map.next_value::<Option<u64>>()?, key)?,
                "data" => {
                    let value = match event_type {
                        Some(t) => WireData::Typed(map.next_value_seed(DataSeed(t))?),
                        None => WireData::Raw(map.next_value()?),
                    };
                    once(&mut data, value, key)?
                }
                _ => return Err(A::Error::custom("an attribute the fast path does not read")),
            }
        }
        let missing = |name: &'static str| A::Error::missing_field(name);
        Ok(Wire {
            specversion: specversion.ok_or_else(|| missing("specversion"))?,
            id: id.ok_or_else(|| missing("id"))?,
            source: source.ok_or_else(|| missing("source"))?,
            event_type: event_type.ok_or_else(|| missing("type"))?,
            time: time.ok_or_else(|| missing("time"))?,
            companyid: companyid.ok_or_else(|| missing("companyid"))?,
            subject: subject.flatten(),
            datacontenttype: datacontenttype.flatten(),
            schemaversion: schemaversion.flatten(),
            data: data.ok_or_else(|| missing("data"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_takes_the_fast_path_in_one_pass_or_two() {
        for event_type in EventType::ALL {
            let event = crate::examples::event(*event_type);
            // As runledger writes it: `type` before `data` (one pass).
            let canonical = event.to_vec();
            // Keys in alphabetical order (serde_json's map): `data` before `type` (two passes).
            let sorted = serde_json::to_vec(&serde_json::to_value(&event).unwrap()).unwrap();
            assert!(
                sorted.windows(6).position(|w| w == b"\"data\"")
                    < sorted.windows(6).position(|w| w == b"\"type\""),
                "the second encoding puts data first"
            );
            for bytes in [canonical, sorted] {
                let fast = Event::fast(std::str::from_utf8(&bytes).unwrap());
                assert_eq!(fast.as_ref(), Some(&event), "{}", event_type.as_str());
                let precise = Event::from_value(serde_json::from_slice(&bytes).unwrap()).unwrap();
                assert_eq!(precise, event);
            }
        }
    }

    #[test]
    fn the_fast_path_leaves_every_irregular_envelope_to_the_precise_one() {
        let event = crate::examples::event(EventType::RunFinished);
        let value = serde_json::to_value(&event).unwrap();
        let with = |change: &dyn Fn(&mut Map<String, Value>)| {
            let mut v = value.clone();
            change(v.as_object_mut().unwrap());
            serde_json::to_vec(&v).unwrap()
        };
        let irregular = [
            with(&|m| {
                m.insert("ext".into(), json_str("x"));
            }),
            with(&|m| {
                m.remove("time");
            }),
            with(&|m| {
                m.insert("type".into(), json_str("run.nonsense"));
            }),
            with(&|m| {
                m.insert("data".into(), Value::Array(vec![]));
            }),
            // `type` twice, `data` between them.
            br#"{"type":"run.finished","data":{},"type":"run.finished"}"#.to_vec(),
        ];
        for bytes in irregular {
            let text = std::str::from_utf8(&bytes).unwrap();
            assert_eq!(Event::fast(text), None, "{text}");
        }
    }

    fn json_str(text: &str) -> Value {
        Value::String(text.into())
    }
}
