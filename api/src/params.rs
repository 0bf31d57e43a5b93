//! Request parameters with clear 400s. Path ids must be UUIDs and the message names the
//! parameter. A route's query string is one typed struct (`#[serde(deny_unknown_fields)]`,
//! taken with the [`Query`] extractor): a parameter the route does not take, or one given twice,
//! is rejected by the struct's derived `Deserialize` itself, so no handler can forget the check,
//! and the OpenAPI document lists the struct's own fields ([`schema`]). Each parameter type here
//! parses its text and says what was wrong; the extractor adds the parameter's name.

use crate::error::ApiError;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::value::MapDeserializer;
use serde::de::{DeserializeOwned, IntoDeserializer, Visitor};
use serde::{forward_to_deserialize_any, Deserialize, Deserializer};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
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

/// The query string as `T`, a struct with `#[serde(deny_unknown_fields)]` and `#[serde(default)]`
/// whose fields are parameter types of this module (or `Option<String>` for free text).
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Pairs in order, repeats kept: the struct's `Deserialize` decides about them.
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
                .map_err(|e| ApiError::bad_request(format!("query string: {e}")))?;
        let pairs = MapDeserializer::new(pairs.into_iter().map(|(k, v)| (k, Text(v))));
        serde_path_to_error::deserialize(pairs)
            .map(Query)
            .map_err(|e| {
                ApiError::bad_request(match e.inner() {
                    QueryError::Value(problem) => {
                        format!("query parameter `{}` {problem}", e.path())
                    }
                    QueryError::Whole(message) => message.clone(),
                })
            })
    }
}

/// No query parameters at all.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// The query parameters of `T` as the OpenAPI document lists them: an object schema whose
/// properties are the parameters, every subschema inline.
pub fn schema<T: JsonSchema>() -> Schema {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    settings.meta_schema = None;
    settings.contract = schemars::generate::Contract::Deserialize;
    settings.into_generator().into_root_schema_for::<T>()
}

/// Why a query string was rejected.
#[derive(Debug)]
enum QueryError {
    /// What is wrong with one parameter's value (the extractor names the parameter).
    Value(String),
    /// The whole message.
    Whole(String),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Value(m) | QueryError::Whole(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for QueryError {}

impl serde::de::Error for QueryError {
    fn custom<T: fmt::Display>(problem: T) -> Self {
        QueryError::Value(problem.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        QueryError::Whole(format!(
            "unknown query parameter `{}`; this route takes: {}",
            shown(field),
            if expected.is_empty() {
                "none".to_owned()
            } else {
                expected.join(", ")
            }
        ))
    }

    fn duplicate_field(field: &'static str) -> Self {
        QueryError::Whole(format!(
            "query parameter `{field}` is given more than once; give it once"
        ))
    }
}

/// One parameter's text, for the parameter types' `Deserialize`.
struct Text(String);

impl<'de> Deserializer<'de> for Text {
    type Error = QueryError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        visitor.visit_string(self.0)
    }

    /// A parameter that is there is `Some`; absent ones are the struct's default.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, QueryError> {
        visitor.visit_some(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

impl IntoDeserializer<'_, QueryError> for Text {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// Parses a parameter's text with `parse`, whose error says what the value must be.
fn parsed<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: impl FnOnce(&str) -> Option<T>,
    must_be: impl FnOnce() -> String,
) -> Result<T, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).ok_or_else(|| {
        serde::de::Error::custom(format!("must be {}, got `{}`", must_be(), shown(&text)))
    })
}

/// `limit`: from 1 to `MAX`, `DEFAULT` when absent.
#[derive(Clone, Copy, Debug)]
pub struct Limit<const MAX: i64, const DEFAULT: i64>(pub i64);

impl<const MAX: i64, const DEFAULT: i64> Default for Limit<MAX, DEFAULT> {
    fn default() -> Self {
        Self(DEFAULT)
    }
}

impl<'de, const MAX: i64, const DEFAULT: i64> Deserialize<'de> for Limit<MAX, DEFAULT> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(
            d,
            |t| t.parse().ok().filter(|n| (1..=MAX).contains(n)).map(Self),
            || format!("an integer from 1 to {MAX}"),
        )
    }
}

impl<const MAX: i64, const DEFAULT: i64> JsonSchema for Limit<MAX, DEFAULT> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Limit".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX, "default": DEFAULT})
    }
}

/// A stream sequence or projector position (`min_seq`, `after_seq`, `since`): 0 or more.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seq(pub i64);

impl<'de> Deserialize<'de> for Seq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(
            d,
            |t| t.parse().ok().filter(|n| *n >= 0).map(Self),
            || format!("an integer from 0 to {}", i64::MAX),
        )
    }
}

impl JsonSchema for Seq {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Seq".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "format": "int64", "minimum": 0})
    }
}

/// A UUID (an agent or issue filter).
#[derive(Clone, Copy, Debug)]
pub struct Id(pub Uuid);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(d, |t| Uuid::parse_str(t).ok().map(Self), || "a UUID".into())
    }
}

impl JsonSchema for Id {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Id".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "format": "uuid"})
    }
}

/// `true`/`1`/empty or `false`/`0`; false when absent.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(
            d,
            |t| match t {
                "true" | "1" | "" => Some(Self(true)),
                "false" | "0" => Some(Self(false)),
                _ => None,
            },
            || "true or false".into(),
        )
    }
}

impl JsonSchema for Flag {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Flag".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "boolean"})
    }
}

/// The values a [`OneOf`] parameter takes.
pub trait Choices {
    const VALUES: &'static [&'static str];
}

/// One of `C::VALUES`.
#[derive(Clone, Debug)]
pub struct OneOf<C>(pub String, PhantomData<C>);

impl<'de, C: Choices> Deserialize<'de> for OneOf<C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parsed(
            d,
            |t| {
                C::VALUES
                    .contains(&t)
                    .then(|| Self(t.to_owned(), PhantomData))
            },
            || format!("one of {}", C::VALUES.join(", ")),
        )
    }
}

impl<C: Choices> JsonSchema for OneOf<C> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "OneOf".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "enum": C::VALUES})
    }
}

/// `?min_seq=`, on every route that reads the projections.
#[derive(Clone, Copy, Debug, Default)]
pub struct MinSeq(pub Option<i64>);

impl<'de> Deserialize<'de> for MinSeq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Seq::deserialize(d).map(|seq| Self(Some(seq.0)))
    }
}

impl JsonSchema for MinSeq {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "MinSeq".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer", "format": "int64", "minimum": 0,
            "description": "Wait (briefly) until the projector has committed this stream sequence; \
                503 `not_reached` if it does not in time.",
        })
    }
}

/// The parameters of a route that reads the projections and takes nothing else.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Fresh {
    pub min_seq: MinSeq,
}
