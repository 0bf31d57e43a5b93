//! The dashboard: one static page (HTML, CSS, vanilla JS) compiled into the binary with
//! `include_str!`, so `runledger up` serves it with no build step. The page reads the same API as
//! everyone else (it signs in with a token when tokens are configured) and follows the ledger over
//! Server-Sent Events. A strict Content-Security-Policy allows only these same-origin files.

use crate::routes::{Body, Doc, Method};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

pub const PAGE: Doc = Doc {
    method: Method::Get,
    path: "/",
    operation_id: "dashboard",
    tag: "dashboard",
    summary: "The live run-ledger dashboard (HTML)",
    description: "Deep links: `#/c/<company>` (the company's overview, the landing page), \
        `#/c/<company>/i/<issue>`, `.../summary` (the handoff card, expanded and focused), \
        `.../r/<run>` (the run's timeline).",
    auth: false,
    fresh: false,
    query: crate::params::schema::<crate::params::NoParams>,
    body: Body::Text("text/html; charset=utf-8"),
};

pub const SCRIPT: Doc = Doc {
    method: Method::Get,
    path: "/assets/dashboard.js",
    operation_id: "dashboardScript",
    tag: "dashboard",
    summary: "The dashboard's script",
    description: "",
    auth: false,
    fresh: false,
    query: crate::params::schema::<crate::params::NoParams>,
    body: Body::Text("text/javascript; charset=utf-8"),
};

pub const STYLE: Doc = Doc {
    method: Method::Get,
    path: "/assets/dashboard.css",
    operation_id: "dashboardStyle",
    tag: "dashboard",
    summary: "The dashboard's style sheet",
    description: "",
    auth: false,
    fresh: false,
    query: crate::params::schema::<crate::params::NoParams>,
    body: Body::Text("text/css; charset=utf-8"),
};

const HTML: &str = include_str!("dashboard/index.html");
const JS: &str = include_str!("dashboard/dashboard.js");
const CSS: &str = include_str!("dashboard/dashboard.css");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub(crate) async fn page(_: crate::params::Query<crate::params::NoParams>) -> Response {
    let mut response = asset(HTML, "text/html; charset=utf-8");
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

pub(crate) async fn script(_: crate::params::Query<crate::params::NoParams>) -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

pub(crate) async fn style(_: crate::params::Query<crate::params::NoParams>) -> Response {
    asset(CSS, "text/css; charset=utf-8")
}
