//! The route table: every route is declared once, here, with its [`Doc`] (method, path, query
//! parameters, response), and both the router and the OpenAPI document are built from this table.
//! A route's query parameters are one struct (`crate::params`), which its handler extracts and its
//! `Doc` documents, so the documented parameters are exactly the accepted ones.
//! `api/tests/it/openapi.rs` fails when a documented route is not served, a route is added outside
//! this table, or a route accepts a parameter it does not document.

mod companies;
pub mod decisions;
mod issues;
mod ledger;
mod ops;
mod overview;
pub(crate) mod runs;
mod session;
mod wakeups;

pub(crate) use ledger::{
    changed_rows, issue_exists as ledger_issue_exists, no_issue as ledger_no_issue,
};

use crate::app::Shared;
use crate::error::ApiError;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::MethodRouter;
use axum::Router;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use std::time::Instant;

/// HTTP method of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Delete => "delete",
        }
    }
}

/// What a route answers with.
#[derive(Clone, Copy)]
pub enum Body {
    Json(fn(&mut SchemaGenerator) -> Schema),
    /// Server-Sent Events (`text/event-stream`).
    EventStream,
    /// A static asset or text with this content type.
    Text(&'static str),
    /// 204 No Content.
    Empty,
}

/// A JSON body of type `T`.
pub fn json<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// Everything the OpenAPI document says about a route.
#[derive(Clone, Copy)]
pub struct Doc {
    pub method: Method,
    /// axum path syntax (`{name}`), which is also OpenAPI's.
    pub path: &'static str,
    pub operation_id: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    /// Needs a token (when tokens are configured).
    pub auth: bool,
    /// Takes `?min_seq=` and reports its position.
    pub fresh: bool,
    /// The query parameters: [`crate::params::schema`] of the struct the handler extracts.
    pub query: fn() -> Schema,
    pub body: Body,
}

/// Which dot-separated token of a stored subject names the company (for dead letters, which
/// are kept by subject): the second, or with partitions the third (`<prefix>.<p>.<company>...`).
pub(crate) fn company_token(subjects: &events::Subjects) -> i32 {
    if subjects.is_partitioned() {
        3
    } else {
        2
    }
}

/// Every route: its documentation and its handler.
pub(crate) fn table() -> Vec<(&'static Doc, MethodRouter<Shared>)> {
    use axum::routing::{delete, get, post};
    vec![
        (&crate::dashboard::PAGE, get(crate::dashboard::page)),
        (&crate::dashboard::SCRIPT, get(crate::dashboard::script)),
        (&crate::dashboard::STYLE, get(crate::dashboard::style)),
        (&crate::openapi::DOC, get(crate::openapi::serve)),
        (&ops::HEALTHZ, get(ops::healthz)),
        (&ops::METRICS, get(ops::metrics)),
        (&session::GET, get(session::get)),
        (&session::CREATE, post(session::create)),
        (&session::DELETE, delete(session::delete)),
        (&companies::LIST, get(companies::list)),
        (&companies::DEAD_LETTERS, get(companies::dead_letters)),
        (&overview::GET, get(overview::get)),
        (&issues::LIST, get(issues::list)),
        (&issues::GET, get(issues::get)),
        (&issues::DOCUMENTS, get(issues::documents)),
        (&issues::SUMMARY, get(issues::continuation_summary)),
        (&decisions::LIST, get(decisions::list)),
        (&ledger::LEDGER, get(ledger::ledger)),
        (&crate::sse::STREAM, get(crate::sse::stream)),
        (&runs::LIST, get(runs::list)),
        (&runs::GET, get(runs::get)),
        (&runs::EVENTS, get(runs::events)),
        (&wakeups::LIST, get(wakeups::list)),
    ]
}

/// The documentation of every route, in table order.
pub fn docs() -> Vec<&'static Doc> {
    table().into_iter().map(|(doc, _)| doc).collect()
}

/// The router: the table, a JSON 404 for everything else, and request metrics.
pub(crate) fn build(app: Shared) -> Router {
    let mut router = Router::new();
    for (doc, handler) in table() {
        router = router.route(doc.path, handler);
    }
    router
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), observe))
        .fallback(no_route)
        .with_state(app)
}

async fn no_route(request: Request) -> ApiError {
    ApiError::NoRoute(format!(
        "no route {} {}; see /v1/openapi.json",
        request.method(),
        request.uri().path()
    ))
}

/// Counts requests by route and status, and times them.
async fn observe(State(app): State<Shared>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let started = Instant::now();
    let response = next.run(request).await;
    app.metrics
        .record_http(&route, response.status().as_u16(), started.elapsed());
    response
}
