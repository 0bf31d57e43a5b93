//! Request parameters with clear 400s: path ids must be UUIDs and the message names the
//! parameter; query parameters are checked against the route's documented list (an unknown or
//! misspelt one is an error, not silently ignored), and typed getters name what was wrong.

use crate::error::ApiError;
use crate::routes::{Doc, Kind};
use axum::extract::{FromRequestParts, Path, Query as AxumQuery};
use axum::http::request::Parts;
use std::collections::HashMap;
use uuid::Uuid;

/// Shows at most 64 characters of a rejected value.
fn shown(raw: &str) -> String {
    let cut: String = raw.chars().take(64).collect();
    if cut.len() < raw.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// Parses a path parameter as a UUID.
pub fn uuid(name: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::bad_request(format!(
            "path parameter `{name}` must be a UUID, got `{}`",
            shown(raw)
        ))
    })
}

/// The path parameters of the matched route.
pub struct PathIds(HashMap<String, String>);

impl PathIds {
    /// The raw value (routes only name parameters they declare).
    pub fn raw(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("")
    }

    /// A UUID path parameter.
    pub fn uuid(&self, name: &str) -> Result<Uuid, ApiError> {
        uuid(name, self.raw(name))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(map) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("path parameters: {e}")))?;
        Ok(Self(map))
    }
}

/// The query string, checked against the route's documented parameters.
pub struct QueryParams(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let AxumQuery(map) = AxumQuery::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("query string: {e}")))?;
        Ok(Self(map))
    }
}

impl QueryParams {
    /// Rejects parameters the route does not document, and checks the documented ones' types.
    pub fn check(&self, doc: &Doc) -> Result<(), ApiError> {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        for name in names {
            let Some(param) = doc.query.iter().find(|p| p.name == name) else {
                let known: Vec<&str> = doc.query.iter().map(|p| p.name).collect();
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{}`; this route takes: {}",
                    shown(name),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            let value = &self.0[name];
            match param.kind {
                Kind::Uuid => {
                    self.uuid(name)?;
                }
                Kind::Int { min, max } => {
                    self.int(name, min, max, min)?;
                }
                Kind::OneOf(allowed) => {
                    if !allowed.contains(&value.as_str()) {
                        return Err(ApiError::bad_request(format!(
                            "query parameter `{name}` must be one of {}, got `{}`",
                            allowed.join(", "),
                            shown(value)
                        )));
                    }
                }
                Kind::Bool => {
                    self.flag(name)?;
                }
                Kind::Text => {}
            }
        }
        Ok(())
    }

    /// A UUID query parameter, if present.
    pub fn uuid(&self, name: &str) -> Result<Option<Uuid>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(raw) => Uuid::parse_str(raw).map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "query parameter `{name}` must be a UUID, got `{}`",
                    shown(raw)
                ))
            }),
        }
    }

    /// An integer in `min..=max`, or `default` when absent.
    pub fn int(&self, name: &str, min: i64, max: i64, default: i64) -> Result<i64, ApiError> {
        let Some(raw) = self.0.get(name) else {
            return Ok(default);
        };
        match raw.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "query parameter `{name}` must be an integer from {min} to {max}, got `{}`",
                shown(raw)
            ))),
        }
    }

    /// A text parameter, if present and not empty.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// `true`/`false`/`1`/`0`, default false.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.0.get(name).map(String::as_str) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "query parameter `{name}` must be true or false, got `{}`",
                shown(other)
            ))),
        }
    }

    /// `?min_seq=N`: wait until the projector has reached stream sequence N.
    pub fn min_seq(&self) -> Result<Option<i64>, ApiError> {
        if !self.0.contains_key("min_seq") {
            return Ok(None);
        }
        self.int("min_seq", 0, i64::MAX, 0).map(Some)
    }
}
