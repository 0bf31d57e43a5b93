//! runledger's HTTP read API and the live run-ledger dashboard, over the projector's read models.
//!
//! Operators keep the dashboard open; producers and tools read the API. Everything here only
//! reads PostgreSQL (and asks NATS for the stream's last sequence, for lag): the projector stays the
//! only writer. Dependencies come from the caller ([`ApiState`]: pool, optional NATS client,
//! settings, metrics registry), so `runledger up`, `runledger serve`, tests and benchmarks build the
//! same server.
//!
//! Layout: [`routes`] holds one file per resource plus the route table that both the router and
//! the OpenAPI document ([`openapi`]) are built from; [`auth`] scopes every request to a company;
//! [`freshness`] says which projector position a response reflects and waits for `?min_seq=`;
//! [`listen`] wakes it when the projector commits; [`sse`] pushes ledger changes; [`metrics`] renders Prometheus text; [`dashboard`] serves the page.

mod app;
mod auth;
#[macro_use]
mod columns;
pub mod dashboard;
mod error;
pub mod freshness;
mod health;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod model;
pub mod openapi;
mod params;
pub mod routes;
mod settings;
mod sse;

pub use app::{router, serve, ApiState, ServeError};
pub use error::ApiError;
pub use limits::Limits;
pub use metrics::Registry;
pub use settings::{ApiSettings, TokenError, Tokens, DEFAULT_HTTP_ADDR};
