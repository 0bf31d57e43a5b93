//! Access control and input checking: no token is 401, a company token reads its own company and
//! gets 404 for anything of another (even its ids under its own company path), the admin token
//! reads all; the dashboard's cookie works like the bearer header; malformed ids and parameters are
//! 400s that name the parameter; without tokens the API is open on loopback and refuses to serve
//! anywhere else.

use crate::helpers::{tokens, Harness, Projection, World, ADMIN};
use api::{ApiSettings, ApiState, ServeError, Tokens};
use events::*;
use serde_json::json;

const TOKEN_A: &str = "company-a-token-0123456789";
const TOKEN_B: &str = "company-b-token-0123456789";

/// Every documented route under `/v1/companies/{company}`, filled in with ids of `w`.
pub fn company_paths(w: &World, run: RunId) -> Vec<String> {
    api::routes::docs()
        .into_iter()
        .filter(|d| d.path.contains("{company}"))
        .map(|d| {
            d.path
                .replace("{company}", &w.company.to_string())
                .replace("{issue}", &w.issue.to_string())
                .replace("{run}", &run.to_string())
        })
        .collect()
}

#[tokio::test]
async fn tokens_scope_every_route_to_one_company() {
    let (mut a, mut b) = (World::new(), World::new());
    let mut h = Harness::new(
        Projection::Stepped,
        tokens(&[(a.company, TOKEN_A), (b.company, TOKEN_B)]),
    )
    .await;
    let (events_a, runs_a) = a.ten_runs();
    let (events_b, runs_b) = b.ten_runs();
    h.publish(&events_a).await;
    h.publish(&events_b).await;
    h.drain().await;

    let paths = company_paths(&a, runs_a[9]);
    assert!(paths.len() >= 11, "every company route: {paths:?}");
    for path in &paths {
        let none = h.get(path, None).await;
        assert_eq!(none.status, 401, "GET {path} without a token");
        assert_eq!(none.body["error"], "unauthorized");
        assert_eq!(
            none.headers["www-authenticate"],
            "Bearer realm=\"runledger\""
        );
        assert_eq!(
            h.get(path, Some("not-a-valid-token-at-all")).await.status,
            401,
            "{path}"
        );

        let own = h
            .http
            .get(h.url(path))
            .bearer_auth(TOKEN_A)
            .send()
            .await
            .unwrap();
        assert_eq!(own.status(), 200, "GET {path} with its company's token");
        drop(own); // the stream route: do not read the endless body
        let admin = h
            .http
            .get(h.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(admin.status(), 200, "GET {path} as admin");
        drop(admin);

        let foreign = h.get(path, Some(TOKEN_B)).await;
        assert_eq!(
            foreign.status, 404,
            "GET {path} with another company's token"
        );
        assert_eq!(foreign.body["error"], "not_found");
    }
    // Company A's ids under company B's own path are not found either.
    for path in company_paths(&b, runs_b[9]) {
        let mixed = path
            .replace(&b.issue.to_string(), &a.issue.to_string())
            .replace(&runs_b[9].to_string(), &runs_a[9].to_string());
        if mixed.contains(&a.issue.to_string()) || mixed.contains(&runs_a[9].to_string()) {
            let reply = h.get(&mixed, Some(TOKEN_B)).await;
            assert_eq!(
                reply.status, 404,
                "GET {mixed}: another company's id under its own company"
            );
        }
    }
    let malformed = h
        .http
        .get(h.url("/v1/companies"))
        .header("authorization", format!("Basic {TOKEN_A}"))
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 401);

    // Who sees which companies.
    let mine = h.get("/v1/companies", Some(TOKEN_A)).await.body;
    assert_eq!(mine["companies"].as_array().unwrap().len(), 1);
    assert_eq!(mine["companies"][0]["company_id"], json!(a.company));
    let all = h.get("/v1/companies", Some(ADMIN)).await.body;
    assert_eq!(all["companies"].as_array().unwrap().len(), 2);
    assert_eq!(h.get("/v1/companies", None).await.status, 401);

    let session = h.get("/v1/session", Some(TOKEN_A)).await.body;
    assert_eq!(session, json!({"role": "company", "company_id": a.company}));
    let session = h.get("/v1/session", Some(ADMIN)).await.body;
    assert_eq!(session, json!({"role": "admin", "company_id": null}));

    // Health, metrics, the page and the OpenAPI document need no token.
    for open in [
        "/healthz",
        "/metrics",
        "/",
        "/assets/dashboard.js",
        "/assets/dashboard.css",
        "/v1/openapi.json",
    ] {
        assert_eq!(
            h.http.get(h.url(open)).send().await.unwrap().status(),
            200,
            "{open}"
        );
    }
}

#[tokio::test]
async fn the_dashboard_cookie_works_like_the_bearer_token() {
    let mut a = World::new();
    let mut h = Harness::new(Projection::Stepped, tokens(&[(a.company, TOKEN_A)])).await;
    let (events, _) = a.ten_runs();
    h.publish(&events).await;
    h.drain().await;
    let ledger = format!("/v1/companies/{}/issues/{}/runs", a.company, a.issue);

    let signed_in = h
        .http
        .post(h.url("/v1/session"))
        .bearer_auth(TOKEN_A)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.starts_with(&format!("runledger_token={TOKEN_A};")),
        "{cookie}"
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();

    let with_cookie = h
        .http
        .get(h.url(&ledger))
        .header("cookie", &pair)
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie.status(), 200);
    let wrong = h
        .http
        .get(h.url(&ledger))
        .header("cookie", "runledger_token=not-a-valid-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let bad_sign_in = h
        .http
        .post(h.url("/v1/session"))
        .bearer_auth("not-a-valid-token-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_sign_in.status(), 401);
    assert!(bad_sign_in.headers().get("set-cookie").is_none());

    let signed_out = h.http.delete(h.url("/v1/session")).send().await.unwrap();
    assert_eq!(signed_out.status(), 204);
    assert!(signed_out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

#[tokio::test]
async fn malformed_ids_and_parameters_are_400s_naming_the_parameter() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Stepped, tokens(&[])).await;
    let (events, runs) = w.ten_runs();
    h.publish(&events).await;
    h.drain().await;
    let (c, i, r) = (w.company, w.issue, runs[0]);
    let cases = [
        (
            "/v1/companies/not-a-uuid/issues".to_owned(),
            "path parameter `company` must be a UUID, got `not-a-uuid`",
        ),
        (
            format!("/v1/companies/{c}/issues/12345/runs"),
            "path parameter `issue` must be a UUID",
        ),
        (
            format!("/v1/companies/{c}/runs/abc/events"),
            "path parameter `run` must be a UUID",
        ),
        (
            format!("/v1/companies/{c}/issues/{i}/runs?limit=0"),
            "query parameter `limit` must be an integer from 1 to 100, got `0`",
        ),
        (
            format!("/v1/companies/{c}/issues/{i}/runs?limit=lots"),
            "query parameter `limit`",
        ),
        (
            format!("/v1/companies/{c}/issues/{i}/runs?min_seq=-1"),
            "query parameter `min_seq`",
        ),
        (
            format!("/v1/companies/{c}/runs?status=sleeping"),
            "query parameter `status` must be one of live, queued, running",
        ),
        (
            format!("/v1/companies/{c}/wakeups?agent=bob"),
            "query parameter `agent` must be a UUID, got `bob`",
        ),
        (
            format!("/v1/companies/{c}/runs/{r}/events?after_seq=x"),
            "query parameter `after_seq`",
        ),
        (
            format!("/v1/companies/{c}/issues/{i}/documents?include_system=maybe"),
            "query parameter `include_system` must be true or false",
        ),
        (
            format!("/v1/companies/{c}/runs?stauts=running"),
            "unknown query parameter `stauts`; this route takes: status, agent, limit, min_seq",
        ),
        (
            format!("/v1/companies/{c}/issues/{i}/runs/stream?since=soon"),
            "query parameter `since`",
        ),
        (
            format!("/v1/companies/{c}/issues/{i}/runs?limit=1&limit=100"),
            "query parameter `limit` is given more than once",
        ),
        (
            format!("/v1/companies/{c}/runs?status=running&agent=bob&status=failed"),
            "query parameter `agent` must be a UUID, got `bob`",
        ),
        (
            format!("/v1/companies/{c}/runs/{r}?min_seq=1&min_seq=1"),
            "query parameter `min_seq` is given more than once",
        ),
        (
            format!("/v1/companies/{c}/runs/{r}?limit=5"),
            "unknown query parameter `limit`; this route takes: min_seq",
        ),
        (
            "/healthz?verbose=1".to_owned(),
            "unknown query parameter `verbose`; this route takes: none",
        ),
    ];
    for (path, message) in cases {
        let reply = h.get(&path, Some(ADMIN)).await;
        assert_eq!(reply.status, 400, "GET {path}: {}", reply.body);
        assert_eq!(reply.body["error"], "bad_request");
        let text = reply.body["message"].as_str().unwrap();
        assert!(
            text.contains(message),
            "GET {path}: `{text}` should say `{message}`"
        );
    }
    // Well-formed ids that do not exist are 404s.
    let missing = [
        format!("/v1/companies/{c}/issues/{}/runs", uuid::Uuid::new_v4()),
        format!("/v1/companies/{c}/runs/{}", uuid::Uuid::new_v4()),
        format!("/v1/companies/{c}/runs/{}/events", uuid::Uuid::new_v4()),
        format!("/v1/companies/{c}/issues/{}", uuid::Uuid::new_v4()),
    ];
    for path in missing {
        assert_eq!(h.get(&path, Some(ADMIN)).await.status, 404, "{path}");
    }
    let nowhere = h.get("/v1/nothing/here", Some(ADMIN)).await;
    assert_eq!(nowhere.status, 404);
    assert_eq!(nowhere.body["error"], "no_route");
}

#[tokio::test]
async fn without_tokens_the_api_is_open_on_loopback_and_refuses_other_addresses() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Stepped, Tokens::default()).await;
    let (events, _) = w.ten_runs();
    h.publish(&events).await;
    h.drain().await;
    let ledger = h
        .get(
            &format!("/v1/companies/{}/issues/{}/runs", w.company, w.issue),
            None,
        )
        .await;
    assert_eq!(ledger.status, 200);
    assert_eq!(h.get("/v1/session", None).await.body["role"], "open");

    let state = ApiState::new(
        h.pool.clone(),
        None,
        ApiSettings::new(Tokens::default(), "S"),
    );
    let anywhere = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let refused = api::serve(anywhere, state, stop_rx).await;
    assert!(
        matches!(refused, Err(ServeError::OpenBeyondLoopback(_))),
        "an open API beyond loopback is refused"
    );
    assert!(refused
        .unwrap_err()
        .to_string()
        .contains("RUNLEDGER_API_TOKENS"));
}
