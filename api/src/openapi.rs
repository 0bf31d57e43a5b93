//! The OpenAPI 3.1 document at `/v1/openapi.json`, generated from the route table
//! ([`crate::routes::table`]: paths, methods), the query parameter structs the handlers extract
//! ([`crate::params`]) and the response types ([`crate::model`]), all through `schemars`. Nothing in it is written by hand, so it cannot list a
//! route the server does not have, or miss one; `api/tests/it/openapi.rs` checks both directions
//! against the running server.

use crate::error::ErrorBody;
use crate::routes::{docs, Body, Doc, Method};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use schemars::generate::{Contract, SchemaSettings};
use schemars::{Schema, SchemaGenerator};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

pub const DOC: Doc = Doc {
    method: Method::Get,
    path: "/v1/openapi.json",
    operation_id: "getOpenApi",
    tag: "meta",
    summary: "This OpenAPI document",
    description: "",
    auth: false,
    fresh: false,
    query: crate::params::schema::<crate::params::NoParams>,
    body: Body::Json(any_object),
};

fn any_object(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({ "type": "object" })
}

/// The names of a path's `{parameters}`, in order.
pub fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// The query parameters of a route: the properties of its parameter struct's schema, each with
/// its description lifted to the parameter and without the `null` an `Option` adds (an absent
/// parameter is simply not sent).
fn query_params(doc: &Doc) -> Vec<Value> {
    let schema = (doc.query)();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    properties
        .into_iter()
        .map(|(name, mut schema)| {
            let description = schema
                .as_object_mut()
                .and_then(|s| s.remove("description"))
                .unwrap_or_else(|| json!(""));
            json!({
                "name": name, "in": "query", "required": false,
                "description": description, "schema": without_null(schema),
            })
        })
        .collect()
}

fn without_null(mut schema: Value) -> Value {
    if let Some(types) = schema.get_mut("type").and_then(Value::as_array_mut) {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            schema["type"] = types[0].clone();
        }
    }
    if let Some(values) = schema.get_mut("enum").and_then(Value::as_array_mut) {
        values.retain(|v| !v.is_null());
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
        let mut rest: Vec<Value> = any
            .iter()
            .filter(|s| s["type"] != "null")
            .cloned()
            .collect();
        if rest.len() == 1 {
            let mut one = rest.remove(0);
            if let (Some(one), Some(outer)) = (one.as_object_mut(), schema.as_object()) {
                for (key, value) in outer {
                    if key != "anyOf" {
                        one.insert(key.clone(), value.clone());
                    }
                }
            }
            return one;
        }
    }
    schema
}

fn path_param_description(name: &str) -> &'static str {
    match name {
        "company" => "Company id (UUID). Another company's id answers 404 for a company token.",
        "issue" => "Issue id (UUID).",
        "run" => "Run id (UUID).",
        _ => "Id (UUID).",
    }
}

fn error(generator: &mut SchemaGenerator, description: &str) -> Value {
    let schema = generator.subschema_for::<ErrorBody>();
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn operation(doc: &Doc, generator: &mut SchemaGenerator) -> Value {
    let mut parameters = Vec::new();
    for name in path_params(doc.path) {
        parameters.push(json!({
            "name": name, "in": "path", "required": true,
            "description": path_param_description(name),
            "schema": {"type": "string", "format": "uuid"},
        }));
    }
    let query = query_params(doc);
    let takes_query = !query.is_empty();
    parameters.extend(query);
    let mut responses = Map::new();
    let fresh_header = json!({"X-Runledger-Position": {
        "description": "The projector position (stream sequence) this response reflects.",
        "schema": {"type": "integer", "format": "int64"},
    }});
    match doc.body {
        Body::Json(schema) => {
            let mut ok = json!({
                "description": "OK",
                "content": {"application/json": {"schema": schema(generator)}},
            });
            if doc.fresh {
                ok["headers"] = fresh_header;
            }
            responses.insert("200".into(), ok);
        }
        Body::EventStream => {
            let data = generator.subschema_for::<crate::model::LedgerChange>();
            let position = generator.subschema_for::<crate::model::StreamPosition>();
            responses.insert(
                "200".into(),
                json!({
                    "description": "A stream of Server-Sent Events (`ready`, `ledger`, `position`).",
                    "content": {"text/event-stream": {"schema": {
                        "type": "string",
                        "x-runledger-events": {"ready": position.clone(), "ledger": data, "position": position},
                    }}},
                }),
            );
        }
        Body::Text(content_type) => {
            responses.insert(
                "200".into(),
                json!({"description": "OK", "content": {content_type: {"schema": {"type": "string"}}}}),
            );
        }
        Body::Empty => {
            responses.insert("204".into(), json!({"description": "Done"}));
        }
    }
    if takes_query || !path_params(doc.path).is_empty() {
        responses.insert(
            "400".into(),
            error(
                generator,
                "A malformed id or query parameter; the message names it.",
            ),
        );
    }
    if doc.auth {
        responses.insert(
            "401".into(),
            error(generator, "No token, or an unknown one."),
        );
    }
    if path_params(doc.path).contains(&"company") {
        responses.insert(
            "404".into(),
            error(
                generator,
                "Nothing of this company by that id (also: another company's data).",
            ),
        );
    }
    if doc.fresh {
        responses.insert(
            "503".into(),
            error(
                generator,
                "`not_reached`: the projector did not reach `min_seq` in time (Retry-After: 1); \
                 `unavailable`: PostgreSQL is down.",
            ),
        );
    }
    let mut op = json!({
        "operationId": doc.operation_id,
        "summary": doc.summary,
        "tags": [doc.tag],
        "parameters": parameters,
        "responses": responses,
    });
    if !doc.description.is_empty() {
        op["description"] = json!(doc.description);
    }
    op["security"] = if doc.auth {
        json!([{"bearer": []}, {"cookie": []}])
    } else {
        json!([])
    };
    op
}

/// The whole document.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    settings.contract = Contract::Serialize;
    let mut generator = settings.into_generator();
    let mut paths = Map::new();
    for doc in docs() {
        let entry = paths
            .entry(doc.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[match doc.method {
            Method::Get => "get",
            Method::Post => "post",
            Method::Delete => "delete",
        }] = operation(doc, &mut generator);
    }
    let schemas = generator.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "runledger read API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Read-only access to runledger's projections: run ledgers, runs and their \
                timelines, wakeups, continuation summaries, and live ledger changes over \
                Server-Sent Events. Every projection response carries the projector position it \
                reflects (`X-Runledger-Position`, body `position`); `?min_seq=N` waits for N. \
                See docs/api.md.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                    "description": "A company token (RUNLEDGER_API_TOKENS) or the admin token (RUNLEDGER_ADMIN_TOKEN)."},
                "cookie": {"type": "apiKey", "in": "cookie", "name": crate::auth::COOKIE,
                    "description": "Set by POST /v1/session (the dashboard; EventSource cannot send headers)."},
            },
        },
    })
}

pub(crate) async fn serve(_: crate::params::Query<crate::params::NoParams>) -> Response {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| {
        serde_json::to_string_pretty(&document()).expect("the OpenAPI document serializes")
    });
    let mut response = text.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_parameters_are_found() {
        assert_eq!(
            super::path_params("/v1/companies/{company}/runs/{run}/events"),
            ["company", "run"]
        );
        assert!(super::path_params("/healthz").is_empty());
    }
}

#[cfg(test)]
mod parameter_tests {
    use serde_json::json;

    #[test]
    fn query_parameters_are_the_fields_of_the_struct_the_handler_takes() {
        let doc = super::document();
        let op = &doc["paths"]["/v1/companies/{company}/runs"]["get"];
        let query: Vec<_> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .cloned()
            .collect();
        let param = |name: &str, description: &str, schema| {
            json!({"name": name, "in": "query", "required": false, "description": description,
                   "schema": schema})
        };
        assert_eq!(
            query,
            [
                param(
                    "agent",
                    "Only runs of this agent.",
                    json!({"type": "string", "format": "uuid"})
                ),
                param(
                    "limit",
                    "Runs to return; default 100.",
                    json!({"type": "integer", "format": "int64", "minimum": 1, "maximum": 500,
                           "default": 100})
                ),
                param(
                    "min_seq",
                    "Wait (briefly) until the projector has committed this stream sequence; \
                     503 `not_reached` if it does not in time.",
                    json!({"type": "integer", "format": "int64", "minimum": 0})
                ),
                param(
                    "status",
                    "Only runs in this status; `live` = queued or running.",
                    json!({"type": "string", "enum": crate::routes::runs::RUN_STATUSES})
                ),
            ]
        );
    }
}
