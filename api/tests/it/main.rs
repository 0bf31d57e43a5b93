//! Read API integration tests against real PostgreSQL, NATS JetStream and (for the dashboard)
//! headless Chromium. Each test has its own database, stream and server on a free port; waiting is
//! polling with deadlines, never sleeping for a result.

mod auth;
mod browser;
mod decisions;
mod endpoints;
mod freshness;
mod health;
mod helpers;
mod ledger;
mod limits;
mod openapi;
mod overview;
mod sse;
