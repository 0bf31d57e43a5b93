//! The one JetStream stream holding all of runledger's history. Creating or updating it is
//! idempotent, and the settings the server reports back are checked, because an older server
//! silently drops settings it does not know and the guarantees (deny delete and purge, the
//! duplicate window) would quietly be gone.

use crate::error::StreamError;
use async_nats::jetstream::stream::{Config, DiscardPolicy, Info, RetentionPolicy, StorageType};
use async_nats::jetstream::Context;
use events::Subjects;
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
    let got = &info.config;
    let check = |setting: &'static str, a: String, g: String| {
        if a == g {
            Ok(())
        } else {
            Err(StreamError::NotApplied {
                stream: asked.name.clone(),
                setting,
                asked: a,
                got: g,
            })
        }
    };
    check(
        "subjects",
        format!("{:?}", asked.subjects),
        format!("{:?}", got.subjects),
    )?;
    check(
        "retention",
        format!("{:?}", asked.retention),
        format!("{:?}", got.retention),
    )?;
    check(
        "storage",
        format!("{:?}", asked.storage),
        format!("{:?}", got.storage),
    )?;
    check(
        "deny_delete",
        asked.deny_delete.to_string(),
        got.deny_delete.to_string(),
    )?;
    check(
        "deny_purge",
        asked.deny_purge.to_string(),
        got.deny_purge.to_string(),
    )?;
    check(
        "duplicate_window",
        format!("{:?}", asked.duplicate_window),
        format!("{:?}", got.duplicate_window),
    )?;
    Ok(info)
}
