//! The dashboard's sign-in. `EventSource` cannot send an `Authorization` header, so the page trades
//! its bearer token for an `HttpOnly`, `SameSite=Strict` cookie holding the same token; every
//! route accepts either. `GET` says who the token is (the page uses it to ask for a token or not).

use super::{Body, Doc, Method};
use crate::app::Shared;
use crate::auth::{Access, COOKIE};
use crate::error::ApiError;
use crate::model::Session;
use crate::params::{NoParams, Query};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

pub const GET: Doc = Doc {
    method: Method::Get,
    path: "/v1/session",
    operation_id: "getSession",
    tag: "session",
    summary: "Who the presented token is",
    description: "`role` is `admin`, `company` (with `company_id`) or `open` (no tokens \
        configured, loopback only). 401 without a valid token.",
    auth: true,
    fresh: false,
    query: crate::params::schema::<NoParams>,
    body: Body::Json(super::json::<Session>),
};

pub const CREATE: Doc = Doc {
    method: Method::Post,
    path: "/v1/session",
    operation_id: "createSession",
    tag: "session",
    summary: "Sign in: set the token cookie for the dashboard",
    description: "Send the token as `Authorization: Bearer <token>`; the answer sets the \
        `runledger_token` cookie (HttpOnly, SameSite=Strict) that the page and its event stream \
        use.",
    auth: true,
    fresh: false,
    query: crate::params::schema::<NoParams>,
    body: Body::Json(super::json::<Session>),
};

pub const DELETE: Doc = Doc {
    method: Method::Delete,
    path: "/v1/session",
    operation_id: "deleteSession",
    tag: "session",
    summary: "Sign out: clear the token cookie",
    description: "",
    auth: false,
    fresh: false,
    query: crate::params::schema::<NoParams>,
    body: Body::Empty,
};

fn session(access: Access) -> Session {
    match access {
        Access::Admin { open: true } => Session {
            role: "open".into(),
            company_id: None,
        },
        Access::Admin { open: false } => Session {
            role: "admin".into(),
            company_id: None,
        },
        Access::Company(c) => Session {
            role: "company".into(),
            company_id: Some(c),
        },
    }
}

pub(crate) async fn get(access: Access, _: Query<NoParams>) -> Response {
    let mut response = Json(session(access)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(crate) async fn create(
    State(_app): State<Shared>,
    access: Access,
    _: Query<NoParams>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let mut response = Json(session(access)).into_response();
    if let Some(token) = crate::auth::presented(&headers)? {
        // Token characters are checked at configuration time, so they are valid in a cookie.
        let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        let value = HeaderValue::from_str(&cookie)
            .map_err(|_| ApiError::bad_request("the token cannot be stored in a cookie"))?;
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub(crate) async fn delete(_: Query<NoParams>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("runledger_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}
