//! The OpenAPI 3.1 document at `/v1/openapi.json`, generated from the route table
//! ([`crate::routes::table`]: paths, methods, parameters) and the response types
//! ([`crate::model`], through `schemars`). Nothing in it is written by hand, so it cannot list a
//! route the server does not have, or miss one; `api/tests/it/openapi.rs` checks both directions
//! against the running server.

use crate::error::ErrorBody;
use crate::routes::{docs, Body, Doc, Kind, Method};
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
    query: &[],
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

fn kind_schema(kind: Kind) -> Value {
    match kind {
        Kind::Uuid => json!({"type": "string", "format": "uuid"}),
        Kind::Int { min, max } => {
            let mut s = json!({"type": "integer", "format": "int64", "minimum": min});
            if max < i64::MAX {
                s["maximum"] = json!(max);
            }
            s
        }
        Kind::OneOf(values) => json!({"type": "string", "enum": values}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Text => json!({"type": "string"}),
    }
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
    for q in doc.query {
        parameters.push(json!({
            "name": q.name, "in": "query", "required": false,
            "description": q.description, "schema": kind_schema(q.kind),
        }));
    }
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
    if !doc.query.is_empty() || !path_params(doc.path).is_empty() {
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

pub(crate) async fn serve() -> Response {
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
