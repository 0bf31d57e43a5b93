//! Subjects: producers publish on `<prefix>.<company_id>.<entity>.<entity_id>`. This is the only
//! place that builds them, so the stream, publishers and readers cannot disagree.
//!
//! With P > 1 partitions the stream's work is split by company with NATS' own deterministic
//! subject mapping, configured on the servers:
//! `<prefix>.*.*.*` → `<prefix>.{{partition(P,1)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}`.
//! Producers in any language keep publishing on the four-token subject; the server maps it and
//! the stream stores `<prefix>.<p>.<company_id>.<entity>.<entity_id>`, where `p` is the FNV-1a
//! hash (32 bit) of the company id's text, modulo P: [`Subjects::partition_of`] computes the
//! same. The reserved tick company belongs to every partition: each partition's clock ticks on
//! its own, published straight to its five-token subject (no mapping applies to it).

use crate::envelope::Event;
use crate::ids::{CompanyId, RunId};
use crate::payload::EventData;
use crate::tick::TICK_COMPANY;
use thiserror::Error;

/// The default subject prefix and stream subjects `runledger.>`.
pub const DEFAULT_PREFIX: &str = "runledger";

/// Most partitions a stream can be split into.
pub const MAX_PARTITIONS: u32 = 1024;

/// A prefix that is not a single NATS subject token.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("subject prefix `{0}` must be one NATS token: letters, digits, `_` or `-`")]
pub struct InvalidPrefix(pub String);

/// A partition count out of range.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("partitions must be between 1 and {MAX_PARTITIONS}, not {0}")]
pub struct InvalidPartitions(pub u32);

/// Builds every subject of one installation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
    partitions: u32,
}

impl Default for Subjects {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            partitions: 1,
        }
    }
}

/// FNV-1a, 32 bit: what nats-server's `partition()` mapping function hashes with.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

impl Subjects {
    /// One partition (the stream stores what is published, unmapped).
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        let ok = !prefix.is_empty()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self {
                prefix: prefix.to_owned(),
                partitions: 1,
            })
        } else {
            Err(InvalidPrefix(prefix.to_owned()))
        }
    }

    /// The same prefix split into `partitions` partitions by company.
    pub fn partitioned(self, partitions: u32) -> Result<Self, InvalidPartitions> {
        if (1..=MAX_PARTITIONS).contains(&partitions) {
            Ok(Self { partitions, ..self })
        } else {
            Err(InvalidPartitions(partitions))
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How many partitions the stream is split into.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Whether the stored subjects carry a partition token.
    pub fn is_partitioned(&self) -> bool {
        self.partitions > 1
    }

    /// The partition of a company (0 without partitions).
    pub fn partition_of(&self, company: CompanyId) -> u32 {
        if !self.is_partitioned() {
            return 0;
        }
        let mut buf = uuid::Uuid::encode_buffer();
        let text = company.0.hyphenated().encode_lower(&mut buf);
        fnv1a(text.as_bytes()) % self.partitions
    }

    /// The partition an event is stored in: its company's, or for a tick the partition whose
    /// clock it is.
    pub fn partition_of_event(&self, event: &Event) -> u32 {
        match &event.data {
            EventData::ReconcilerTicked(tick) if event.company_id == TICK_COMPANY => tick
                .partition
                .filter(|p| *p < self.partitions)
                .unwrap_or_else(|| self.partition_of(TICK_COMPANY)),
            _ => self.partition_of(event.company_id),
        }
    }

    /// What the stream captures: `<prefix>.>`, or with partitions only the mapped five-token
    /// subjects (an unmapped publish finds no stream and fails, instead of being stored where no
    /// partition reads it).
    pub fn all(&self) -> String {
        if self.is_partitioned() {
            format!("{}.*.*.*.*", self.prefix)
        } else {
            format!("{}.>", self.prefix)
        }
    }

    /// What the reader of partition `p` reads: its five-token subjects (a filter with `>`
    /// is not a subset of the stream's `<prefix>.*.*.*.*` for nats-server 2.9, which refuses it).
    pub fn partition_filter(&self, partition: u32) -> String {
        if self.is_partitioned() {
            format!("{}.{partition}.*.*.*", self.prefix)
        } else {
            self.all()
        }
    }

    /// The server mapping partitioning needs (`None` without partitions): source and
    /// destination, as in nats-server's `mappings` block.
    pub fn mapping(&self) -> Option<(String, String)> {
        self.is_partitioned().then(|| {
            (
                format!("{}.*.*.*", self.prefix),
                format!(
                    "{}.{{{{partition({},1)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}",
                    self.prefix, self.partitions
                ),
            )
        })
    }

    /// The subject an event is published on: the four-token subject (the servers map it into
    /// its partition), or for a partition's tick its stored subject.
    pub fn of(&self, event: &Event) -> String {
        let tick = matches!(event.data, EventData::ReconcilerTicked(_));
        if self.is_partitioned() && tick {
            return self.stored(event);
        }
        format!(
            "{}.{}.{}.{}",
            self.prefix,
            event.company_id,
            event.event_type().entity().as_str(),
            event.data.entity_id()
        )
    }

    /// The subject an event is stored on.
    pub fn stored(&self, event: &Event) -> String {
        if !self.is_partitioned() {
            return self.of(event);
        }
        format!(
            "{}.{}.{}.{}.{}",
            self.prefix,
            self.partition_of_event(event),
            event.company_id,
            event.event_type().entity().as_str(),
            event.data.entity_id()
        )
    }

    /// Whether `subject` is [`Subjects::stored`]`(event)`, without building it (every reader
    /// checks every event it reads; building the subject allocated on every one).
    pub fn is_subject_of(&self, event: &Event, subject: &str) -> bool {
        let mut buf = uuid::Uuid::encode_buffer();
        let token = |rest: &'_ str, expected: &str| -> Option<usize> {
            rest.strip_prefix(expected)
                .and_then(|r| r.strip_prefix('.'))
                .map(|r| subject.len() - r.len())
        };
        let Some(mut at) = token(subject, &self.prefix) else {
            return false;
        };
        if self.is_partitioned() {
            let Some((partition, _)) = subject[at..].split_once('.') else {
                return false;
            };
            let canonical = partition.len() == 1 || !partition.starts_with('0');
            if !canonical || partition.parse().ok() != Some(self.partition_of_event(event)) {
                return false;
            }
            at += partition.len() + 1;
        }
        let company = event.company_id.0.hyphenated().encode_lower(&mut buf);
        let Some(at) = token(&subject[at..], company) else {
            return false;
        };
        let Some(at) = token(&subject[at..], event.event_type().entity().as_str()) else {
            return false;
        };
        subject[at..] == *event.data.entity_id().hyphenated().encode_lower(&mut buf)
    }

    /// Everything about one run as stored (a supervisor listens here for
    /// `run.cancel_requested`).
    pub fn run(&self, company: CompanyId, run: RunId) -> String {
        if self.is_partitioned() {
            format!(
                "{}.{}.{}.run.{}",
                self.prefix,
                self.partition_of(company),
                company,
                run
            )
        } else {
            format!("{}.{}.run.{}", self.prefix, company, run)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_as_nats_server_maps_them() {
        // What nats-server 2.9.10 did with `{{partition(8,1)}}` for these tokens.
        let subjects = Subjects::new("rl").unwrap().partitioned(8).unwrap();
        for (company, partition) in [
            ("5f0c6a8e-1d2b-4c3a-9e8f-7a6b5c4d3e2f", 3),
            ("00000000-0000-0000-0000-000000000000", 1),
        ] {
            let id = CompanyId(company.parse().unwrap());
            assert_eq!(subjects.partition_of(id), partition, "{company}");
        }
        assert_eq!(fnv1a(b"abc") % 8, 3);
        assert_eq!(fnv1a(b"x") % 8, 7);
    }

    #[test]
    fn one_partition_keeps_the_layout() {
        let subjects = Subjects::new("rl").unwrap();
        assert_eq!(subjects.all(), "rl.>");
        assert_eq!(subjects.partition_filter(0), "rl.>");
        assert_eq!(subjects.mapping(), None);
        assert!(Subjects::new("rl").unwrap().partitioned(0).is_err());
        assert!(Subjects::new("rl")
            .unwrap()
            .partitioned(MAX_PARTITIONS + 1)
            .is_err());
    }

    #[test]
    fn the_mapping_is_what_the_servers_need() {
        let subjects = Subjects::new("rl").unwrap().partitioned(8).unwrap();
        assert_eq!(subjects.all(), "rl.*.*.*.*");
        assert_eq!(subjects.partition_filter(5), "rl.5.*.*.*");
        assert_eq!(
            subjects.mapping(),
            Some((
                "rl.*.*.*".to_owned(),
                "rl.{{partition(8,1)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}".to_owned()
            ))
        );
    }
}
