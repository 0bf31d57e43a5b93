//! The one JetStream stream holding all of runledger's history. Creating or updating it is
//! idempotent, and the settings the server reports back are checked, because an older server
//! silently drops settings it does not know and the guarantees (deny delete and purge, the
//! duplicate window, the replicas) would quietly be gone.
//!
//! The partition count is fixed when the stream is set up: it is written into the stream's
//! description and a stream set up with another count is refused, since every stored subject
//! and every reader's position depends on it. A partitioned stream needs the servers to map
//! producers' subjects into partitions; [`check_partition_mapping`] proves they do.

use crate::error::StreamError;
use async_nats::jetstream::stream::{Config, DiscardPolicy, Info, RetentionPolicy, StorageType};
use async_nats::jetstream::Context;
use events::{CompanyId, Subjects};
use futures::StreamExt;
use std::fmt::Debug;
use std::time::Duration;

/// Default stream name.
pub const DEFAULT_STREAM: &str = "RUNLEDGER";
/// Default duplicate window: a publish retried within it is stored once.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// What the stream must look like.
#[derive(Clone, Debug)]
pub struct StreamSettings {
    pub name: String,
    /// The subjects, with the partition count.
    pub subjects: Subjects,
    pub duplicate_window: Duration,
    /// Copies of the stream in a JetStream cluster (1 on a single server; 3 survives the loss
    /// of any one node).
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            name: DEFAULT_STREAM.to_owned(),
            subjects: Subjects::default(),
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            replicas: 1,
        }
    }
}

/// The stream's description, which records the partition count it was set up with.
fn description(partitions: u32) -> String {
    format!("runledger history; partitions: {partitions}")
}

/// Refuses `subjects`' partition count when `stream` exists and was set up with another one.
/// Readers that do not set the stream up (`runledger status`, `runledger replay`) check it
/// too: with another count they would look for positions no reader keeps.
pub async fn check_partitions(
    js: &Context,
    stream: &str,
    subjects: &Subjects,
) -> Result<(), StreamError> {
    let Ok(mut existing) = js.get_stream(stream).await else {
        return Ok(());
    };
    let existing = existing
        .info()
        .await
        .map_err(|e| StreamError::JetStream(format!("stream `{stream}` info: {e}")))?;
    let recorded = recorded_partitions(existing.config.description.as_deref());
    if recorded != subjects.partitions() {
        return Err(StreamError::Partitions {
            stream: stream.to_owned(),
            recorded,
            asked: subjects.partitions(),
        });
    }
    Ok(())
}

/// The partition count a stream's description records (streams made before partitions were
/// recorded, or by hand, count as one).
fn recorded_partitions(description: Option<&str>) -> u32 {
    description
        .and_then(|d| d.rsplit_once("partitions: "))
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or(1)
}

impl StreamSettings {
    fn config(&self) -> Config {
        Config {
            name: self.name.clone(),
            subjects: vec![self.subjects.all()],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            discard: DiscardPolicy::Old,
            deny_delete: true,
            deny_purge: true,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            description: Some(description(self.subjects.partitions())),
            ..Default::default()
        }
    }
}

/// Creates the stream or updates it to `settings`, then checks what the server applied.
pub async fn ensure_stream(js: &Context, settings: &StreamSettings) -> Result<Info, StreamError> {
    let asked = settings.config();
    check_partitions(js, &asked.name, &settings.subjects).await?;
    let info = create_or_update(js, &asked).await?;
    applied(&asked, &info.config)?;
    Ok(info)
}

/// How often a store-creation failure is tried again, and the first pause (doubled each time).
const STORE_ATTEMPTS: u32 = 6;
const STORE_FIRST_PAUSE: Duration = Duration::from_millis(50);

/// Creates or updates the stream. nats-server answers a failure to create the stream's files
/// with one fixed sentence ("error creating store for stream", code 10049) and logs the cause
/// only on its side; under load it is transient, so it is tried again a few times (about 3 s in
/// all) before it is reported. Every other error is reported at once.
async fn create_or_update(js: &Context, asked: &Config) -> Result<Info, StreamError> {
    let mut pause = STORE_FIRST_PAUSE;
    for attempt in 1.. {
        match js.create_or_update_stream(asked.clone()).await {
            Ok(info) => return Ok(info),
            Err(e) if attempt < STORE_ATTEMPTS && store_creation_failed(&e) => {
                tracing::warn!(stream = %asked.name, attempt, "{e}; trying again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => {
                return Err(StreamError::JetStream(format!(
                    "creating/updating `{}`: {e}",
                    asked.name
                )))
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}

fn store_creation_failed(e: &async_nats::jetstream::context::CreateStreamError) -> bool {
    use async_nats::jetstream::context::CreateStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    match e.kind() {
        CreateStreamErrorKind::JetStream(js) => js.error_code() == ErrorCode::STREAM_CREATE,
        _ => false,
    }
}

/// Checks that the server applied each setting runledger asked for.
fn applied(asked: &Config, got: &Config) -> Result<(), StreamError> {
    let settings: [(&'static str, &dyn Debug, &dyn Debug); 8] = [
        ("subjects", &asked.subjects, &got.subjects),
        ("retention", &asked.retention, &got.retention),
        ("storage", &asked.storage, &got.storage),
        ("deny_delete", &asked.deny_delete, &got.deny_delete),
        ("deny_purge", &asked.deny_purge, &got.deny_purge),
        (
            "duplicate_window",
            &asked.duplicate_window,
            &got.duplicate_window,
        ),
        ("num_replicas", &asked.num_replicas, &got.num_replicas),
        ("description", &asked.description, &got.description),
    ];
    for (setting, asked_value, got_value) in settings {
        let (asked_value, got_value) = (format!("{asked_value:?}"), format!("{got_value:?}"));
        if asked_value != got_value {
            return Err(StreamError::NotApplied {
                stream: asked.name.clone(),
                setting,
                asked: asked_value,
                got: got_value,
            });
        }
    }
    Ok(())
}

/// Companies whose partitions the mapping check looks at: derived, so every check probes the
/// same ones; enough of them that a wrong partition count shows.
fn probe_companies() -> impl Iterator<Item = CompanyId> {
    let namespace = uuid::Uuid::from_u128(0x52d1_7a3e_96b4_4c0f_8e21_d5a9_0f3c_b711);
    (0u32..16).map(move |i| CompanyId(uuid::Uuid::new_v5(&namespace, &i.to_be_bytes())))
}

/// Proves that the servers map producers' subjects into the partitions runledger computes
/// (nothing to prove with one partition). Probe messages go through the mapping as core NATS
/// messages that name a stream that does not exist, so JetStream refuses to store them; a
/// subscription sees where the servers put each one.
pub async fn check_partition_mapping(
    client: &async_nats::Client,
    subjects: &Subjects,
) -> Result<(), StreamError> {
    let Some((source, destination)) = subjects.mapping() else {
        return Ok(());
    };
    let missing = |what: String| StreamError::Mapping {
        problem: what,
        from: source.clone(),
        to: destination.clone(),
    };
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let prefix = subjects.prefix();
    let subscribe = |subject: String| async move {
        client
            .subscribe(subject)
            .await
            .map_err(|e| StreamError::JetStream(format!("checking the partition mapping: {e}")))
    };
    let mut mapped = subscribe(format!("{prefix}.*.*.mapping_probe.{nonce}")).await?;
    let mut unmapped = subscribe(format!("{prefix}.*.mapping_probe.{nonce}")).await?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Expected-Stream",
        "runledger-mapping-probe-stores-nothing",
    );
    let companies: Vec<CompanyId> = probe_companies().collect();
    for company in &companies {
        client
            .publish_with_headers(
                format!("{prefix}.{company}.mapping_probe.{nonce}"),
                headers.clone(),
                "".into(),
            )
            .await
            .map_err(|e| StreamError::JetStream(format!("checking the partition mapping: {e}")))?;
    }
    client
        .flush()
        .await
        .map_err(|e| StreamError::JetStream(format!("checking the partition mapping: {e}")))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for _ in &companies {
        let message = tokio::select! {
            m = mapped.next() => m,
            m = unmapped.next() => {
                let subject = m.map(|m| m.subject.to_string()).unwrap_or_default();
                return Err(missing(format!("`{subject}` was not mapped")));
            }
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let Some(message) = message else {
            return Err(missing("the probe messages did not come back".into()));
        };
        let tokens: Vec<&str> = message.subject.split('.').collect();
        let (Some(partition), Some(company)) = (tokens.get(1), tokens.get(2)) else {
            return Err(missing(format!(
                "`{}` is not mapped as expected",
                message.subject
            )));
        };
        let expected = company
            .parse()
            .map(|id| subjects.partition_of(CompanyId(id)).to_string())
            .unwrap_or_default();
        if *partition != expected {
            return Err(missing(format!(
                "company {company} was mapped to partition {partition}, runledger expects {expected} (another partition count?)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_records_the_partition_count() {
        assert_eq!(recorded_partitions(Some(&description(8))), 8);
        assert_eq!(recorded_partitions(Some(&description(1))), 1);
        assert_eq!(recorded_partitions(None), 1);
        assert_eq!(recorded_partitions(Some("made by hand")), 1);
    }
}
