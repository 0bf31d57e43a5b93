//! Subjects: `<prefix>.<company_id>.<entity>.<entity_id>`. This is the only place that builds
//! them, so the stream filter, publishers and subscribers cannot disagree.

use crate::envelope::Event;
use crate::ids::{CompanyId, RunId};
use thiserror::Error;

/// The default subject prefix and stream subjects `runledger.>`.
pub const DEFAULT_PREFIX: &str = "runledger";

/// A prefix that is not a single NATS subject token.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("subject prefix `{0}` must be one NATS token: letters, digits, `_` or `-`")]
pub struct InvalidPrefix(pub String);

/// Builds every subject of one installation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

impl Subjects {
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        let ok = !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(InvalidPrefix(prefix.to_owned()))
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>.>`: what the stream captures.
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The subject an event is published on.
    pub fn of(&self, event: &Event) -> String {
        format!(
            "{}.{}.{}.{}",
            self.prefix,
            event.company_id,
            event.event_type().entity().as_str(),
            event.data.entity_id()
        )
    }

    /// Whether `subject` is [`Subjects::of`]`(event)`, without building it (the projector checks
    /// every event it reads; building the subject allocated on every one).
    pub fn is_subject_of(&self, event: &Event, subject: &str) -> bool {
        let mut buf = uuid::Uuid::encode_buffer();
        let token = |rest: &'_ str, expected: &str| -> Option<usize> {
            rest.strip_prefix(expected)
                .and_then(|r| r.strip_prefix('.'))
                .map(|r| subject.len() - r.len())
        };
        let Some(at) = token(subject, &self.prefix) else {
            return false;
        };
        let company = event.company_id.0.hyphenated().encode_lower(&mut buf);
        let Some(at) = token(&subject[at..], company) else {
            return false;
        };
        let Some(at) = token(&subject[at..], event.event_type().entity().as_str()) else {
            return false;
        };
        subject[at..] == *event.data.entity_id().hyphenated().encode_lower(&mut buf)
    }

    /// Everything about one run (a supervisor listens here for `run.cancel_requested`).
    pub fn run(&self, company: CompanyId, run: RunId) -> String {
        format!("{}.{}.run.{}", self.prefix, company, run)
    }
}
