//! `runledger serve`: configured from the environment (address, company and admin tokens), serves
//! the read API and the dashboard over a migrated database, stops on SIGTERM, and refuses to serve
//! an open API (no tokens) on a non-loopback address; `up` checks its tokens before it migrates.

use std::process::{Command, Stdio};
use std::time::Duration;
use testsupport::{eventually, TestDb, TestStream};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn serve_reads_tokens_from_the_environment_and_stops_on_sigterm() {
    let db = TestDb::new().await.unwrap();
    let ts = TestStream::new().await.unwrap();
    {
        let mut client = db.client().await.unwrap();
        projector::store::migrate::migrate(&mut client, "public")
            .await
            .unwrap();
    }
    let company = uuid::Uuid::new_v4();
    let port = free_port();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_runledger"))
        .arg("serve")
        .env("DATABASE_URL", db.url())
        .env("NATS_URL", &ts.url)
        .env("RUNLEDGER_STREAM", &ts.stream)
        .env("RUNLEDGER_SUBJECT_PREFIX", &ts.prefix)
        .env("RUNLEDGER_PARTITIONS", ts.partitions.to_string())
        // A host name is resolved.
        .env("RUNLEDGER_HTTP_ADDR", format!("localhost:{port}"))
        .env(
            "RUNLEDGER_API_TOKENS",
            format!("{company}=serve-test-company-token"),
        )
        .env("RUNLEDGER_ADMIN_TOKEN", "serve-test-admin-token")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://localhost:{port}");
    let health = eventually(Duration::from_secs(20), "runledger serve to answer", || {
        let (http, url) = (http.clone(), format!("{base}/healthz"));
        async move { http.get(url).send().await.ok() }
    })
    .await;
    assert_eq!(health.status(), 200);
    let companies = format!("{base}/v1/companies");
    assert_eq!(http.get(&companies).send().await.unwrap().status(), 401);
    let mine: serde_json::Value = http
        .get(&companies)
        .bearer_auth("serve-test-company-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        mine["companies"][0]["company_id"],
        serde_json::json!(company)
    );
    let other = format!("{base}/v1/companies/{}/runs", uuid::Uuid::new_v4());
    let status = http
        .get(&other)
        .bearer_auth("serve-test-company-token")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    let admin = http
        .get(&other)
        .bearer_auth("serve-test-admin-token")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(admin, 200);
    let page = http.get(&base).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("runledger"));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exited = eventually(Duration::from_secs(15), "runledger serve to exit", || {
        let status = serve.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(exited.success());
}

#[test]
fn serve_refuses_an_open_api_beyond_loopback() {
    let output = Command::new(env!("CARGO_BIN_EXE_runledger"))
        .arg("serve")
        .env("RUNLEDGER_HTTP_ADDR", "0.0.0.0:0")
        .env_remove("RUNLEDGER_API_TOKENS")
        .env_remove("RUNLEDGER_ADMIN_TOKEN")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to serve the read API on 0.0.0.0:0 without tokens"),
        "{stderr}"
    );
}

#[tokio::test]
async fn up_checks_its_api_tokens_before_it_migrates_anything() {
    let db = TestDb::new().await.unwrap();
    let ts = TestStream::new().await.unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_runledger"))
        .arg("up")
        .env("DATABASE_URL", db.url())
        .env("NATS_URL", &ts.url)
        .env("RUNLEDGER_STREAM", &ts.stream)
        .env("RUNLEDGER_SUBJECT_PREFIX", &ts.prefix)
        .env("RUNLEDGER_PARTITIONS", ts.partitions.to_string())
        .env("RUNLEDGER_HTTP_ADDR", "127.0.0.1:0")
        .env("RUNLEDGER_API_TOKENS", "not-a-company=short")
        .env_remove("RUNLEDGER_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("RUNLEDGER_API_TOKENS entry"), "{stderr}");
    let client = db.client().await.unwrap();
    let migrated: Option<String> = client
        .query_one("SELECT to_regclass('public.schema_migrations')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(migrated, None, "nothing was migrated");
}
