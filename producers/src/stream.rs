//! The one JetStream stream holding all of runledger's history. Creating or updating it is
//! idempotent, and the settings the server reports back are checked, because an older server
//! silently drops settings it does not know and the guarantees (deny delete and purge, the
//! duplicate window) would quietly be gone.

use crate::error::StreamError;
use async_nats::jetstream::stream::{Config, DiscardPolicy, Info, RetentionPolicy, StorageType};
use async_nats::jetstream::Context;
use events::Subjects;
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
    pub subjects: Subjects,
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            name: DEFAULT_STREAM.to_owned(),
            subjects: Subjects::default(),
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
        }
    }
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
            ..Default::default()
        }
    }
}

/// Creates the stream or updates it to `settings`, then checks what the server applied.
pub async fn ensure_stream(js: &Context, settings: &StreamSettings) -> Result<Info, StreamError> {
    let asked = settings.config();
    let info = js
        .create_or_update_stream(asked.clone())
        .await
        .map_err(|e| StreamError::JetStream(format!("creating/updating `{}`: {e}", asked.name)))?;
    applied(&asked, &info.config)?;
    Ok(info)
}

/// Checks that the server applied each setting runledger asked for.
fn applied(asked: &Config, got: &Config) -> Result<(), StreamError> {
    let settings: [(&'static str, &dyn Debug, &dyn Debug); 6] = [
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
