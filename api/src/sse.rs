//! Server-Sent Events: an issue's ledger changes, pushed as the projector commits them.
//!
//! No per-client polling of the projector: every stream follows the server's one position poller
//! ([`crate::freshness::Positions`]). When the position moves past what a stream has sent, the
//! stream reads, in one snapshot, the new position and the issue's ledger rows changed since
//! (`runs.last_seq` > last sent), and sends them as a `ledger` event whose `id` is the position.
//! A browser that reconnects sends that id back (`Last-Event-ID`) and gets exactly what it
//! missed; `?since=N` does the same for a client that just read the ledger at position N.
//!
//! Events: `ready` (once, `{position, since}`), `ledger` ([`LedgerChange`]), `position` (the
//! projector moved but nothing of this issue changed; at most once a second). Streams end when the
//! server shuts down.

use crate::app::Shared;
use crate::auth::Access;
use crate::error::ApiError;
use crate::freshness::{position, snapshot};
use crate::model::{LedgerChange, StreamPosition};
use crate::params::{schema, PathIds, Query, Seq};
use crate::routes::{changed_rows, Body, Doc, Method};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

pub const STREAM: Doc = Doc {
    method: Method::Get,
    path: "/v1/companies/{company}/issues/{issue}/runs/stream",
    operation_id: "streamIssueRunLedger",
    tag: "ledger",
    summary: "Ledger changes of an issue as the projector commits them (Server-Sent Events)",
    description: "Events: `ready` `{position, since}` once; `ledger` (data: `LedgerChange`, the \
        rows changed since the last event) whenever the projector commits a change to one of \
        the issue's runs; `position` `{position}` at most once a second when the projector moved \
        without touching the issue. Each event's `id` is the projector position: reconnecting \
        with `Last-Event-ID` (browsers do it by themselves; it wins over `since`) or \
        `?since=` resumes exactly.",
    auth: true,
    fresh: false,
    query: schema::<StreamQuery>,
    body: Body::EventStream,
};

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StreamQuery {
    /// Send rows changed after this position first (e.g. the `position` of the ledger read just
    /// made). Default: the current position (only future changes).
    since: Option<Seq>,
}

/// Whatever moved, announce the position at most this often.
const POSITION_EVERY: Duration = Duration::from_secs(1);

pub(crate) async fn stream(
    State(app): State<Shared>,
    access: Access,
    ids: PathIds,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<
    (
        [(&'static str, &'static str); 1],
        Sse<impl Stream<Item = Result<Event, Infallible>>>,
    ),
    ApiError,
> {
    let company = access.company(ids.raw("company"))?;
    let issue = ids.uuid("issue")?;
    // A reconnecting browser's `Last-Event-ID` is newer than the `since` in the URL it reuses.
    let since = match headers.get("last-event-id") {
        Some(last) => {
            let last = last
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok());
            Some(last.filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::bad_request("header `Last-Event-ID` must be a projector position")
            })?)
        }
        None => q.since.map(|s| s.0),
    };
    let current = {
        let mut client = app.client().await?;
        let tx = snapshot(&mut client).await?;
        let (current, exists) = tokio::try_join!(
            position(&tx, &app),
            crate::routes::ledger_issue_exists(&tx, company, issue),
        )?;
        if !exists {
            return Err(crate::routes::ledger_no_issue(company, issue));
        }
        current
    };
    let since = since.unwrap_or(current);
    let (out, rx) = mpsc::channel(16);
    tokio::spawn(feed(app, company, issue, since, current, out));
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    // Proxies such as nginx must pass events through instead of buffering them.
    Ok(([("x-accel-buffering", "no")], sse))
}

fn event(name: &str, position: i64, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .id(position.to_string())
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name))
}

async fn changes(
    app: &Shared,
    company: Uuid,
    issue: Uuid,
    since: i64,
) -> Result<(i64, LedgerChange), ApiError> {
    let mut client = app.client().await?;
    let tx = snapshot(&mut client).await?;
    let (position, (rows, total)) =
        tokio::try_join!(position(&tx, app), changed_rows(&tx, company, issue, since),)?;
    Ok((
        position,
        LedgerChange {
            position,
            issue_id: issue,
            total,
            rows,
        },
    ))
}

/// Sends one stream's events until the client leaves or the server shuts down.
async fn feed(
    app: Shared,
    company: Uuid,
    issue: Uuid,
    mut since: i64,
    current: i64,
    out: mpsc::Sender<Event>,
) {
    let _open = app.metrics.sse_connected();
    let mut positions = app.positions.subscribe();
    let mut shutdown = app.shutdown.clone();
    let ready = StreamPosition {
        position: current,
        since: Some(since),
    };
    if out.send(event("ready", since, &ready)).await.is_err() {
        return;
    }
    let mut announced = Instant::now();
    // Catch up first when the client is behind (`since` or `Last-Event-ID`).
    let mut known = current.max(*positions.borrow_and_update());
    loop {
        if known < since {
            // The read models were rebuilt behind the stream's back; start over from there.
            since = known;
        }
        if known > since {
            match changes(&app, company, issue, since).await {
                Ok((position, change)) => {
                    let message = if !change.rows.is_empty() {
                        Some(event("ledger", position, &change))
                    } else if announced.elapsed() >= POSITION_EVERY {
                        let data = StreamPosition {
                            position,
                            since: None,
                        };
                        Some(event("position", position, &data))
                    } else {
                        None
                    };
                    if let Some(message) = message {
                        announced = Instant::now();
                        if out.send(message).await.is_err() {
                            return;
                        }
                    }
                    since = position;
                }
                Err(e) => {
                    tracing::warn!(error = %e, %issue, "ledger stream could not read changes; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.wait_for(|stop| *stop) => return,
                        _ = out.closed() => return,
                    }
                }
            }
        }
        tokio::select! {
            changed = positions.changed() => if changed.is_err() { return },
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = out.closed() => return,
        }
        known = *positions.borrow_and_update();
    }
}
