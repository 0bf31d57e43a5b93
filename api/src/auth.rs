//! Access is scoped per company. A request presents a bearer token (`Authorization: Bearer ...`,
//! or the `runledger_token` cookie the dashboard's sign-in sets, because `EventSource` cannot send
//! headers). A company token reads that company only: any other company's data is answered 404,
//! exactly as if it did not exist; an admin token reads every company; no or an unknown token is
//! 401. With no tokens configured at all (allowed on loopback only), everyone is admin.

use crate::app::Shared;
use crate::error::ApiError;
use crate::settings::Grant;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use uuid::Uuid;

/// The cookie the dashboard's sign-in sets.
pub const COOKIE: &str = "runledger_token";

/// What the request may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Every company (admin token, or no tokens configured).
    Admin {
        open: bool,
    },
    Company(Uuid),
}

impl Access {
    /// Parses the `company` path parameter and checks that this access may read it. Another
    /// company is "not found", never "forbidden": a token does not learn what exists elsewhere.
    pub fn company(&self, raw: &str) -> Result<Uuid, ApiError> {
        let company = crate::params::uuid("company", raw)?;
        match self {
            Access::Admin { .. } => Ok(company),
            Access::Company(own) if *own == company => Ok(company),
            Access::Company(_) => Err(ApiError::not_found(format!("no company {company}"))),
        }
    }

    /// The single company of a company token.
    pub fn only_company(&self) -> Option<Uuid> {
        match self {
            Access::Company(c) => Some(*c),
            Access::Admin { .. } => None,
        }
    }
}

/// The token a request presents: the bearer header first, else the cookie.
pub fn presented(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::Unauthorized("the Authorization header is not text".into()))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?;
        return Ok(Some(token.trim().to_owned()));
    }
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            if let Some((name, token)) = pair.trim().split_once('=') {
                if name == COOKIE && !token.is_empty() {
                    return Ok(Some(token.to_owned()));
                }
            }
        }
    }
    Ok(None)
}

impl FromRequestParts<Shared> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<Self, ApiError> {
        let tokens = &app.settings.tokens;
        if tokens.is_empty() {
            return Ok(Access::Admin { open: true });
        }
        let token = presented(&parts.headers)?.ok_or_else(|| {
            ApiError::Unauthorized(
                "a bearer token is required (Authorization: Bearer <token>)".into(),
            )
        })?;
        match tokens.grant(&token) {
            Some(Grant::Admin) => Ok(Access::Admin { open: false }),
            Some(Grant::Company(c)) => Ok(Access::Company(c)),
            None => Err(ApiError::Unauthorized("unknown token".into())),
        }
    }
}
