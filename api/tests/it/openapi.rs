//! The OpenAPI document against the server: every documented operation is served (not the
//! fallback, not 405), every served route is documented (routes are only added through the route
//! table, and the methods a path does not document are 405), every route takes exactly its
//! documented query parameters (an unknown one is a 400 naming it), parameters and `$ref`s are
//! consistent, and real responses have the documented shape.

use crate::helpers::{tokens, Harness, Projection, World, ADMIN};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("local ref");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r.clone());
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// A real body has exactly the documented properties (flattened types included).
fn assert_shape(doc: &Value, schema: &Value, body: &Value, what: &str) {
    let schema = resolve(doc, schema);
    let properties = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {schema}"));
    let body = body.as_object().unwrap();
    for key in body.keys() {
        assert!(
            properties.contains_key(key),
            "{what}: `{key}` is returned but not documented"
        );
    }
    for required in schema["required"].as_array().into_iter().flatten() {
        assert!(
            body.contains_key(required.as_str().unwrap()),
            "{what}: documented `{required}` missing"
        );
    }
}

fn request_to(h: &Harness, method: &str, url: &str) -> reqwest::RequestBuilder {
    match method {
        "get" => h.http.get(h.url(url)),
        "post" => h.http.post(h.url(url)),
        "delete" => h.http.delete(h.url(url)),
        other => panic!("unexpected method {other}"),
    }
}

/// A value a documented query parameter's schema allows.
fn example(schema: &Value) -> String {
    if let Some(first) = schema["enum"].as_array().and_then(|values| values.first()) {
        return first.as_str().unwrap().to_owned();
    }
    match schema["type"].as_str() {
        Some("integer") => schema["minimum"].as_i64().unwrap_or(0).to_string(),
        Some("boolean") => "true".into(),
        Some("string") if schema["format"] == "uuid" => uuid::Uuid::new_v4().to_string(),
        Some("string") => "text".into(),
        other => panic!("a query parameter of type {other:?}: {schema}"),
    }
}

#[tokio::test]
async fn the_document_matches_the_served_routes() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Stepped, tokens(&[])).await;
    let (events, runs) = w.ten_runs();
    h.publish(&events).await;
    h.drain().await;

    let reply = h.get("/v1/openapi.json", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/json");
    let doc = reply.body;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();

    let mut operation_ids = BTreeSet::new();
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            assert!(
                operation_ids.insert(op["operationId"].as_str().unwrap().to_owned()),
                "unique operationId"
            );
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let in_path: BTreeSet<&str> = api::openapi::path_params(path).into_iter().collect();
            assert_eq!(declared, in_path, "{method} {path}: path parameters");
            assert!(op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .any(|k| k.starts_with('2')));

            // Served: a real request reaches a handler.
            let url = path
                .replace("{company}", &w.company.to_string())
                .replace("{issue}", &w.issue.to_string())
                .replace("{run}", &runs[9].to_string());
            let response = request_to(&h, method, &url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert!(
                (200..300).contains(&status),
                "{method} {path} is documented but answers {status}"
            );
            // A parameter the route does not take is a 400 that names it, whatever the route.
            let unknown = request_to(&h, method, &format!("{url}?zz_unknown=1"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            assert_eq!(unknown.status(), 400, "{method} {path}?zz_unknown=1");
            let message = unknown.json::<Value>().await.unwrap()["message"].clone();
            assert!(
                message
                    .as_str()
                    .unwrap()
                    .starts_with("unknown query parameter `zz_unknown`; this route takes: "),
                "{method} {path}: {message}"
            );
            // Every documented parameter is taken (with a value its schema allows).
            let documented: Vec<(String, String)> = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["in"] == "query")
                .map(|p| {
                    (
                        p["name"].as_str().unwrap().to_owned(),
                        example(&p["schema"]),
                    )
                })
                .collect();
            if !documented.is_empty() {
                let query: Vec<String> =
                    documented.iter().map(|(n, v)| format!("{n}={v}")).collect();
                let taken = request_to(&h, method, &format!("{url}?{}", query.join("&")))
                    .bearer_auth(ADMIN)
                    .send()
                    .await
                    .unwrap();
                assert!(
                    taken.status().is_success(),
                    "{method} {path}?{}: {}",
                    query.join("&"),
                    taken.text().await.unwrap()
                );
            }
            // Methods a path does not document are not served.
            if !item.as_object().unwrap().contains_key("put") {
                let put = h
                    .http
                    .put(h.url(&url))
                    .bearer_auth(ADMIN)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    put.status(),
                    405,
                    "PUT {path} is not documented, so not served"
                );
            }
            drop(response);
        }
    }
    // The document is the route table; its own consistency is checked above.
    let table: BTreeSet<(String, String)> = api::routes::docs()
        .into_iter()
        .map(|d| (d.method.as_str().to_owned(), d.path.to_owned()))
        .collect();
    assert_eq!(documented, table);
    assert!(documented.len() >= 21, "{documented:?}");
    for required in [
        "/v1/companies/{company}/issues/{issue}/runs",
        "/v1/companies/{company}/runs/{run}",
        "/v1/companies/{company}/runs/{run}/events",
        "/v1/companies/{company}/issues/{issue}/continuation-summary",
        "/v1/companies/{company}/wakeups",
        "/v1/companies/{company}/runs",
        "/v1/companies/{company}/issues/{issue}/runs/stream",
        "/healthz",
        "/metrics",
        "/v1/openapi.json",
        "/",
    ] {
        assert!(paths.contains_key(required), "{required} is documented");
    }
    let mut all_refs = Vec::new();
    refs(&doc, &mut all_refs);
    for r in all_refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} resolves"
        );
    }

    // Real responses have the documented shapes.
    let ledger_op = &doc["paths"]["/v1/companies/{company}/issues/{issue}/runs"]["get"];
    let schema = &ledger_op["responses"]["200"]["content"]["application/json"]["schema"];
    let ledger = h
        .ok(&format!(
            "/v1/companies/{}/issues/{}/runs",
            w.company, w.issue
        ))
        .await;
    assert_shape(&doc, schema, &ledger, "LedgerPage");
    let row_schema = json!({"$ref": "#/components/schemas/LedgerRow"});
    for row in ledger["rows"].as_array().unwrap() {
        assert_shape(&doc, &row_schema, row, "LedgerRow");
    }
    let run_op = &doc["paths"]["/v1/companies/{company}/runs/{run}"]["get"];
    let schema = &run_op["responses"]["200"]["content"]["application/json"]["schema"];
    let run = h
        .ok(&format!("/v1/companies/{}/runs/{}", w.company, runs[9]))
        .await;
    assert_shape(&doc, schema, &run, "RunResponse");
    assert_shape(
        &doc,
        &json!({"$ref": "#/components/schemas/RunDetail"}),
        &run["run"],
        "RunDetail",
    );
}

/// Routes can only be added through the route table, which the document is built from.
#[test]
fn routes_are_only_added_through_the_documented_table() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.strip_prefix(&src).unwrap().display().to_string();
            for needle in [
                ".route(",
                ".nest(",
                ".merge(",
                ".route_service(",
                ".nest_service(",
                "Router::new(",
            ] {
                let count = text.matches(needle).count();
                let allowed = match (name.as_str(), needle) {
                    ("routes/mod.rs", ".route(") | ("routes/mod.rs", "Router::new(") => 1,
                    _ => 0,
                };
                if count != allowed {
                    offenders.push(format!("{name}: {count} × `{needle}`"));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "routes added outside routes::table(): {offenders:?}"
    );
}
