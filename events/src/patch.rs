//! Partial updates. `issue.updated` must tell "field absent" (leave it alone) from "field null"
//! (clear it, e.g. unassign); `Option<Option<T>>` with this deserializer does exactly that.

use serde::{Deserialize, Deserializer};

/// Deserializes a present field (even `null`) as `Some(..)`; an absent one stays `None` via
/// `#[serde(default)]`.
pub fn present<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
