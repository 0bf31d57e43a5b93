//! The dashboard in a real browser: headless Chromium, driven over WebDriver (`chromedriver`,
//! through the `fantoccini` client), loads the page against a live runledger (real events through
//! NATS, the projector running as a task), signs in with a company token, checks the rendered
//! ledger, watches the running run finish live over Server-Sent Events, opens the run's timeline
//! and the handoff card's deep link, and saves screenshots under `target/` (`dashboard.png`;
//! `dashboard-live.png` before the finish, `dashboard-timeline.png`, `dashboard-summary.png`).
//!
//! A second test opens the company overview (the landing page) with a blocked and a stranded
//! issue, follows the stranded one to its last run's timeline, where the reconciler's comment and
//! refusal show inline as decisions, and saves each view at 1400×1000 and at a phone's 390 px width
//! (`target/dashboard-{overview,issue,timeline}-{wide,phone}.png`, copied to docs/img/).
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/services.sh installs them).

use crate::helpers::{tokens, Harness, Projection, World};
use events::*;
use fantoccini::{ClientBuilder, Locator};
use futures::FutureExt;
use serde_json::{json, Value};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use testsupport::{eventually, Deadline};

const TOKEN: &str = "dashboard-company-token-0123";

/// The chromedriver process and the browser's profile directory, both gone on drop.
struct Driver {
    process: Child,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// One browser session on its own chromedriver.
struct Browser {
    client: fantoccini::Client,
    driver: Driver,
}

impl Browser {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (apt-get install chromium chromium-driver; scripts/services.sh does)");
        let profile =
            std::env::temp_dir().join(format!("rl-chromium-{}", uuid::Uuid::new_v4().simple()));
        let driver = Driver { process, profile };
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let status = format!("{base}/status");
        eventually(Duration::from_secs(20), "chromedriver to be ready", || {
            let (http, status) = (http.clone(), status.clone());
            async move {
                let body: Value = http.get(status).send().await.ok()?.json().await.ok()?;
                (body["value"]["ready"] == true).then_some(())
            }
        })
        .await;
        // A new empty profile, and nothing that reaches beyond this machine.
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1366,768", "--hide-scrollbars",
                    format!("--user-data-dir={}", driver.profile.display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("an object")
        };
        // Plain HTTP to the local chromedriver: no TLS connector needed.
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&base)
            .await
            .expect("a browser session");
        Self { client, driver }
    }

    /// Ends the session (chromedriver then closes the browser, which runs in a process group of
    /// its own, so killing chromedriver alone would leave it running) and stops chromedriver.
    async fn close(self) {
        let _ = self.client.close().await;
        drop(self.driver);
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Runs `body` (a function body) in the page.
    async fn script(&self, body: &str) -> Value {
        self.client.execute(body, Vec::new()).await.unwrap()
    }

    /// Opens `url` and signs in with the company token at the form it shows.
    async fn sign_in(&self, url: &str) {
        self.goto(url).await;
        self.wait_for(
            "the sign-in form",
            "!document.getElementById('signin').hidden",
        )
        .await;
        self.type_into("#token", TOKEN).await;
        self.click("#signin-form button[type=submit]").await;
    }

    /// The items of a "Why" list (`#why-list`, `#run-why`) once it has `count` of them: rule,
    /// sentence and facts, newest first.
    async fn why_items(&self, what: &str, list: &str, count: usize) -> Vec<Value> {
        let items = self
            .wait_for(
                what,
                &format!(
                    "document.querySelectorAll('{list} li').length === {count} && \
                     Array.from(document.querySelectorAll('{list} li')).map(li => ({{
                         rule: li.dataset.rule,
                         sentence: li.querySelector('.why-sentence').innerText,
                         facts: li.querySelector('.why-facts').innerText,
                     }}))"
                ),
            )
            .await;
        items.as_array().cloned().unwrap_or_default()
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    }

    /// Polls `condition` (a JS expression) until it is truthy; returns its value.
    async fn wait_for(&self, what: &str, expression: &str) -> Value {
        let deadline = Deadline::after(Duration::from_secs(20));
        loop {
            let value = self.script(&format!("return ({expression});")).await;
            if !(value.is_null() || value == false || value == "" || value == 0) {
                return value;
            }
            if deadline.passed() {
                let page = self.script("return document.body.innerText;").await;
                panic!(
                    "timed out waiting for {what} (`{expression}`); the page shows:\n{}",
                    page.as_str().unwrap_or("")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

/// Texts of the rendered ledger.
const LEDGER_JS: &str =
    "return Array.from(document.querySelectorAll('#ledger-body tr')).map(tr => ({
    run: tr.dataset.run,
    status: tr.querySelector('.c-status').innerText,
    liveness: tr.querySelector('.c-liveness').innerText,
    stop: tr.querySelector('.c-stop').innerText,
    last: tr.querySelector('.c-last').innerText,
    next: tr.querySelector('.c-next').innerText,
    live: tr.classList.contains('live'),
}));";

#[tokio::test]
async fn the_dashboard_shows_the_ledger_and_follows_it_live_in_chromium() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Live, tokens(&[(w.company, TOKEN)])).await;
    let (events, runs) = w.ten_runs();
    h.publish(&events).await;
    let bad = format!("{}.{}.run.{}", h.ts.prefix, w.company, uuid::Uuid::new_v4());
    let last = h.publish_raw(&bad, b"{\"specversion\": \"0.3\"}").await;
    let ledger = format!(
        "/v1/companies/{}/issues/{}/runs?min_seq={last}",
        w.company, w.issue
    );
    assert_eq!(h.ok(&ledger).await["total"], 10, "projected");

    let browser = Browser::start().await;
    // The session is closed (and the browser with it) whether the checks pass or not.
    let checked = AssertUnwindSafe(check_dashboard(&browser, &mut w, &mut h, &runs))
        .catch_unwind()
        .await;
    browser.close().await;
    if let Err(failure) = checked {
        std::panic::resume_unwind(failure);
    }
    h.shutdown().await;
}

async fn check_dashboard(browser: &Browser, w: &mut World, h: &mut Harness, runs: &[RunId]) {
    let page = format!("{}/#/c/{}/i/{}", h.base, w.company, w.issue);
    browser.sign_in(&page).await;
    browser
        .wait_for("the ledger", "document.body.dataset.ready === 'true' && document.querySelectorAll('#ledger-body tr').length")
        .await;

    let rows = browser.script(LEDGER_JS).await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 8, "8 rows: {rows:?}");
    let older = browser
        .script("return document.getElementById('older').innerText;")
        .await;
    assert_eq!(older, "2 older runs not shown");
    let ids: Vec<&Value> = rows.iter().map(|r| &r["run"]).collect();
    let expected: Vec<Value> = runs
        .iter()
        .rev()
        .take(8)
        .map(|r| json!(r.to_string()))
        .collect();
    assert_eq!(ids, expected.iter().collect::<Vec<_>>(), "newest first");
    let running = &rows[0];
    assert_eq!(running["live"], true);
    assert_eq!(running["status"], "running");
    assert_eq!(running["liveness"], "Checks after finish");
    assert_eq!(running["stop"], "Still running");
    assert_eq!(running["last"], "No action recorded yet");
    let banner = browser
        .script("return document.getElementById('live-banner').innerText;")
        .await;
    assert!(
        banner
            .as_str()
            .unwrap()
            .contains("Running now by CodexCoder"),
        "{banner}"
    );
    let all = serde_json::to_string(rows).unwrap();
    for label in [
        "timeout (30s timeout)",
        "budget paused",
        "Exhausted",
        "Continuation attempt 2",
        "Continuation attempt 1",
        "Plan only",
        "Empty response",
        "No liveness data",
        "Blocked",
        "No concrete action",
        "No useful output",
        "completed (30s timeout)",
        "Need API credentials from the operator",
    ] {
        assert!(all.contains(label), "the ledger shows `{label}`: {all}");
    }
    let issue_head = browser
        .script("return document.getElementById('issue').innerText;")
        .await;
    assert!(issue_head.as_str().unwrap().contains("PAP-7"));
    browser
        .wait_for(
            "the dead letter in the operations panel",
            "document.getElementById('ops-dead').innerText === '1'",
        )
        .await;
    browser
        .wait_for(
            "the event stream",
            "document.body.dataset.stream === 'live'",
        )
        .await;

    browser.screenshot("dashboard-live.png").await;

    // The running run finishes: the row changes in place, without reloading the page.
    browser
        .script("window.__sameDocument = true; return true;")
        .await;
    h.publish(&[w.finished(runs[9], RunOutcome::Succeeded, None)])
        .await;
    browser
        .wait_for(
            "the finished run to show live",
            "(() => { const tr = document.querySelector('#ledger-body tr');
                return tr && tr.querySelector('.c-status').innerText === 'succeeded'
                    && tr.querySelector('.c-stop').innerText === 'completed (30s timeout)'; })()",
        )
        .await;
    assert_eq!(
        browser
            .script("return window.__sameDocument === true;")
            .await,
        true
    );
    let rows = browser.script(LEDGER_JS).await;
    assert_eq!(rows[0]["run"], json!(runs[9].to_string()));
    assert_eq!(rows[0]["live"], false);
    assert_eq!(rows[0]["liveness"], "No liveness data");
    browser
        .wait_for(
            "the live banner to go",
            "document.getElementById('live-banner').hidden",
        )
        .await;
    // The reconciler classifies it a moment later: that arrives live too.
    let classified_at = h
        .publish(&[w.classified(
            runs[9],
            LivenessState::Advanced,
            "1 tool/action event",
            None,
            0,
        )])
        .await;
    browser
        .wait_for(
            "the classification to show live",
            "document.querySelector('#ledger-body tr .c-liveness').innerText === 'Advanced'",
        )
        .await;
    browser
        .wait_for(
            "the operations panel to catch up",
            &format!(
                "Number(document.getElementById('ops-position').innerText.replace(/[^0-9]/g, '')) >= {classified_at}
                 && document.getElementById('ops-lag').innerText === '0'"
            ),
        )
        .await;
    let shot = browser.screenshot("dashboard.png").await;
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );

    // A click opens the run's timeline.
    browser.click("#ledger-body tr").await;
    browser
        .wait_for(
            "the run timeline",
            "!document.getElementById('drawer').hidden && document.querySelectorAll('#timeline li').length >= 4",
        )
        .await;
    let drawer = browser
        .script("return document.getElementById('drawer').innerText;")
        .await;
    let drawer = drawer.as_str().unwrap();
    assert!(
        drawer.contains("CodexCoder") && drawer.contains("ran cargo test"),
        "{drawer}"
    );
    browser.screenshot("dashboard-timeline.png").await;

    // The handoff card's deep link expands and focuses it; it can be copied.
    browser
        .script(&format!(
            "location.hash = '#/c/{}/i/{}/summary'; return true;",
            w.company, w.issue
        ))
        .await;
    browser
        .wait_for(
            "the expanded, focused handoff card",
            "!document.getElementById('summary-body').hidden && document.activeElement.id === 'summary-card'",
        )
        .await;
    let card = browser
        .script("return document.getElementById('summary-card').innerText;")
        .await;
    let card = card.as_str().unwrap();
    assert!(
        card.contains("Next Action") && card.contains("Copy"),
        "{card}"
    );
    browser.screenshot("dashboard-summary.png").await;
}

/// Saves the view at 1400×1000 and at a phone's width (390×844) as `<name>-wide.png` and
/// `<name>-phone.png`, leaving the window wide.
async fn both_widths(browser: &Browser, name: &str) {
    for (suffix, width, height) in [("phone", 390, 844), ("wide", 1400, 1000)] {
        browser.client.set_window_size(width, height).await.unwrap();
        // The layout follows the new width before the picture is taken.
        browser
            .wait_for(
                "the new width",
                &format!("window.innerWidth <= {width} && window.innerWidth > {width} - 40"),
            )
            .await;
        let shot = browser.screenshot(&format!("{name}-{suffix}.png")).await;
        assert!(
            std::fs::metadata(&shot).unwrap().len() > 5_000,
            "a real screenshot"
        );
    }
}

#[tokio::test]
async fn the_overview_shows_what_needs_a_person_and_the_timeline_its_decisions_in_chromium() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Live, tokens(&[(w.company, TOKEN)])).await;
    let (mut events, _) = w.ten_runs();
    let home = w.issue;
    // A blocked issue, and a stranded one: assigned, its run lost, the retry refused.
    let (blocked, stranded, lost_run) = (
        IssueId::new_random(),
        IssueId::new_random(),
        RunId::new_random(),
    );
    events.push(w.issue_created(
        blocked,
        "PAP-9",
        "Wire the payments sandbox",
        IssueStatus::Blocked,
        None,
    ));
    events.push(w.issue_created(
        stranded,
        "PAP-8",
        "Migrate the billing exports",
        IssueStatus::InProgress,
        None,
    ));
    w.issue = stranded;
    events.push(w.queued(lost_run, 0));
    events.push(w.started(lost_run));
    events.push(w.lost(lost_run));
    // The reconciler's authorless comment on the run's result.
    let mut note = w.event(EventData::IssueCommentAdded(issue::IssueCommentAdded {
        comment_id: CommentId::new_random(),
        issue_id: stranded,
        body: "Run failed: the agent process was lost.".into(),
        author_agent_id: None,
        author_user_id: None,
        run_id: Some(lost_run),
        extra: Default::default(),
    }));
    note.source = "runledger-reconciler".into();
    events.push(note);
    let refused = w.event(EventData::IssueFollowUpRefused(
        issue::IssueFollowUpRefused {
            issue_id: stranded,
            run_id: Some(lost_run),
            agent_id: Some(w.agent),
            follow_up: "process_lost_retry".into(),
            reason: "6 automatic wakeups in the last 1h (ceiling 6)".into(),
            retry_after: None,
            extra: Default::default(),
        },
    ));
    events.push(refused);
    w.issue = home;
    h.publish(&events).await;
    let bad = format!("{}.{}.run.{}", h.ts.prefix, w.company, uuid::Uuid::new_v4());
    let last = h.publish_raw(&bad, b"{\"specversion\": \"0.3\"}").await;
    let overview = h
        .ok(&format!(
            "/v1/companies/{}/overview?min_seq={last}",
            w.company
        ))
        .await;
    assert_eq!(overview["live_run_count"], 1, "{overview}");
    assert_eq!(overview["blocked_count"], 1, "{overview}");
    assert_eq!(overview["stranded_count"], 1, "{overview}");
    assert_eq!(overview["dead_letters"], 1, "{overview}");
    assert_eq!(overview["attention"][0]["identifier"], "PAP-9");
    assert_eq!(overview["attention"][1]["identifier"], "PAP-8");
    assert_eq!(
        overview["attention"][1]["last_decision"]["type"],
        "follow_up.refused"
    );

    let browser = Browser::start().await;
    let checked = AssertUnwindSafe(check_overview(&browser, &w, &h, stranded, lost_run))
        .catch_unwind()
        .await;
    browser.close().await;
    if let Err(failure) = checked {
        std::panic::resume_unwind(failure);
    }
    h.shutdown().await;
}

/// The issue view's "Why" panel lists the reconciler's explained decisions, newest first: here
/// the single retry of a lost run (follow-ups decided by the reconciler's simulator).
#[tokio::test]
async fn the_why_panel_explains_the_reconcilers_decisions_in_chromium() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Live, tokens(&[(w.company, TOKEN)])).await;
    let run = RunId::new_random();
    let mut history = vec![
        w.agent("CodexCoder", "codex_local", json!({})),
        w.issue_created(w.issue, "PAP-7", "Ship it", IssueStatus::InProgress, None),
        w.queued(run, 0),
        w.started(run),
    ];
    history.push(w.lost(run));
    let mut sim = reconciler::sim::Simulator::new(reconciler::engine::Policy::default());
    let follow_ups = sim.run(history.iter().cloned());
    let lost_seq = h.publish(&history).await;
    let last = h.publish(&follow_ups).await;
    let decisions = format!(
        "/v1/companies/{}/issues/{}/decisions?min_seq={last}",
        w.company, w.issue
    );
    assert_eq!(
        h.ok(&decisions).await["decisions"]
            .as_array()
            .unwrap()
            .len(),
        follow_ups.len()
    );

    let browser = Browser::start().await;
    let checked = AssertUnwindSafe(async {
        browser
            .sign_in(&format!("{}/#/c/{}/i/{}", h.base, w.company, w.issue))
            .await;
        let items = browser.why_items("the Why panel", "#why-list", 3).await;
        let newest = &items[0];
        assert_eq!(newest["rule"], "process_lost_retry");
        assert_eq!(
            newest["sentence"],
            "requeued once: last run failed with process_lost; no recovery used yet"
        );
        let facts = newest["facts"].as_str().unwrap();
        assert!(
            facts.contains(&format!("caused by run.process_lost #{lost_seq}")),
            "{facts}"
        );
        assert!(
            facts.starts_with("process lost retry · run.queued"),
            "{facts}"
        );
        assert_eq!(items[2]["rule"], "liveness");
        browser.screenshot("dashboard-why.png").await;

        // The retry run's drawer says why it exists.
        let retry = follow_ups
            .iter()
            .find_map(|e| match &e.data {
                EventData::RunQueued(q) => Some(q.run_id),
                _ => None,
            })
            .unwrap();
        browser
            .wait_for(
                "the retry run's row",
                &format!("document.querySelector('#ledger-body tr[data-run=\"{retry}\"]')"),
            )
            .await;
        browser
            .click(&format!("#ledger-body tr[data-run=\"{retry}\"]"))
            .await;
        let why = browser
            .wait_for(
                "the run's Why",
                "document.querySelectorAll('#run-why li').length === 1 && \
                 document.querySelector('#run-why .why-sentence').innerText",
            )
            .await;
        assert_eq!(
            why,
            "requeued once: last run failed with process_lost; no recovery used yet"
        );
        browser.screenshot("dashboard-run-why.png").await;
    })
    .catch_unwind()
    .await;
    browser.close().await;
    if let Err(failure) = checked {
        std::panic::resume_unwind(failure);
    }
    h.shutdown().await;
}

async fn check_overview(browser: &Browser, w: &World, h: &Harness, stranded: IssueId, run: RunId) {
    browser.sign_in(&format!("{}/", h.base)).await;
    // The landing page is the company's overview.
    browser
        .wait_for(
            "the overview",
            "document.body.dataset.view === 'overview' && document.querySelectorAll('#attention-list li a').length === 2",
        )
        .await;
    let tiles = browser
        .script(
            "return ['ov-live', 'ov-attention', 'ov-dead'].map(id => document.getElementById(id).innerText);",
        )
        .await;
    assert_eq!(tiles, json!(["1", "2", "1"]));
    let attention = browser
        .script("return document.getElementById('attention-list').innerText;")
        .await;
    let attention = attention.as_str().unwrap();
    for text in [
        "blocked",
        "PAP-9",
        "Wire the payments sandbox",
        "stranded",
        "PAP-8",
        "failed",
        "Decision · refused",
        "Automatic process_lost_retry refused: 6 automatic wakeups in the last 1h (ceiling 6)",
    ] {
        assert!(attention.contains(text), "`{text}` in: {attention}");
    }
    let live = browser
        .script("return document.getElementById('live-list').innerText;")
        .await;
    assert!(
        live.as_str().unwrap().contains("PAP-7") && live.as_str().unwrap().contains("CodexCoder"),
        "{live}"
    );
    both_widths(browser, "dashboard-overview").await;

    // The stranded issue's row opens its last run's timeline, the refusal inline.
    browser
        .click(&format!("#attention-list a[href*='{stranded}']"))
        .await;
    browser
        .wait_for(
            "the run timeline with its decision",
            "!document.getElementById('drawer').hidden && document.querySelector('#timeline li.decision')",
        )
        .await;
    let decisions = browser
        .script("return Array.from(document.querySelectorAll('#timeline li.decision')).map(li => li.innerText);")
        .await;
    let decisions: Vec<&str> = decisions
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    assert!(
        decisions[0].contains("Decision · comment added")
            && decisions[0].contains("Commented on the issue"),
        "{decisions:?}"
    );
    assert!(
        decisions[1].contains("Decision · refused")
            && decisions[1].contains("6 automatic wakeups in the last 1h"),
        "{decisions:?}"
    );
    assert!(browser
        .script(&format!(
            "return location.hash.endsWith('/i/{stranded}/r/{run}');"
        ))
        .await
        .as_bool()
        .unwrap());
    both_widths(browser, "dashboard-timeline").await;

    // An issue's ledger, from the sidebar.
    browser
        .script(&format!(
            "location.hash = '#/c/{}/i/{}'; return true;",
            w.company, w.issue
        ))
        .await;
    browser
        .wait_for(
            "the ledger",
            "document.body.dataset.view === 'issue' && document.getElementById('drawer').hidden && document.querySelectorAll('#ledger-body tr').length === 8",
        )
        .await;
    both_widths(browser, "dashboard-issue").await;
    // Back to the overview from the sidebar.
    browser.click("#overview-link").await;
    browser
        .wait_for(
            "the overview again",
            "document.body.dataset.view === 'overview' && !document.getElementById('overview').hidden",
        )
        .await;
}

/// The Why panel of a blocked issue: its first run loses its process, the retry and then the
/// stranded issue's one recovery run fail with `process_lost`, and the reconciler sets the issue
/// to blocked; the newest decision says so and why. (The follow-ups are the reconciler's simulator's, fed back the way
/// a live reconciler's are.)
#[tokio::test]
async fn the_why_panel_of_a_blocked_issue_says_why_it_was_blocked() {
    let mut w = World::new();
    let mut h = Harness::new(Projection::Live, tokens(&[(w.company, TOKEN)])).await;
    let interval = Duration::from_secs(30);
    let mut sim = reconciler::sim::Simulator::new(reconciler::engine::Policy::default());
    let mut stream: Vec<Event> = Vec::new();
    let mut feed = |events: Vec<Event>, stream: &mut Vec<Event>| {
        stream.extend(events.iter().cloned());
        let follow_ups = sim.run(events);
        stream.extend(follow_ups.iter().cloned());
        follow_ups
    };
    let first = RunId::new_random();
    let start = vec![
        w.agent("CodexCoder", "codex_local", json!({})),
        w.issue_created(w.issue, "PAP-9", "Ship it", IssueStatus::Todo, None),
        w.queued(first, 0),
        w.started(first),
        w.lost(first),
    ];
    let mut follow_ups = feed(start, &mut stream);
    let blocked = |events: &[Event]| {
        events.iter().any(|e| {
            matches!(&e.data, EventData::IssueUpdated(u) if u.status == Some(IssueStatus::Blocked))
        })
    };
    let mut rounds = 0;
    while !blocked(&follow_ups) {
        rounds += 1;
        assert!(
            rounds <= 8,
            "the reconciler never blocked the issue: {stream:#?}"
        );
        // Every run the reconciler queued starts and fails with `process_lost`; then time passes.
        let mut next = Vec::new();
        for event in &follow_ups {
            if let EventData::RunQueued(q) = &event.data {
                next.push(w.started(q.run_id));
                let mut failed = w.finished(
                    q.run_id,
                    RunOutcome::Failed,
                    Some("run failed before issue advanced"),
                );
                if let EventData::RunFinished(f) = &mut failed.data {
                    f.error_code = Some("process_lost".into());
                }
                next.push(failed);
            }
        }
        let now = w.now();
        next.push(reconciler::tick::tick(
            interval,
            reconciler::tick::slot_of(now, interval),
        ));
        follow_ups = feed(next, &mut stream);
    }
    let last = h.publish(&stream).await;
    let decisions = h
        .ok(&format!(
            "/v1/companies/{}/issues/{}/decisions?min_seq={last}",
            w.company, w.issue
        ))
        .await;
    let count = decisions["decisions"].as_array().unwrap().len();
    assert_eq!(decisions["decisions"][0]["rule"], "stranded_escalation");

    let browser = Browser::start().await;
    let checked = AssertUnwindSafe(async {
        browser
            .sign_in(&format!("{}/#/c/{}/i/{}", h.base, w.company, w.issue))
            .await;
        let items = browser
            .why_items("the blocked issue's Why panel", "#why-list", count)
            .await;
        // The escalation is the newest decision: the issue set to blocked, and its comment.
        assert_eq!(items[0]["rule"], "stranded_escalation", "{items:?}");
        let blocked = items
            .iter()
            .take(2)
            .find(|i| {
                i["sentence"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("issue set to blocked:"))
            })
            .unwrap_or_else(|| panic!("no 'issue set to blocked' among the newest: {items:?}"));
        assert_eq!(blocked["rule"], "stranded_escalation");
        assert_eq!(
            blocked["sentence"],
            "issue set to blocked: issue todo with no live run; last run failed with \
             process_lost; it was already a recovery (assignment_recovery)"
        );
        let facts = blocked["facts"].as_str().unwrap();
        assert!(facts.contains("reconciler.ticked"), "{facts}");
        browser.screenshot("dashboard-why-blocked.png").await;
    })
    .catch_unwind()
    .await;
    browser.close().await;
    if let Err(failure) = checked {
        std::panic::resume_unwind(failure);
    }
    h.shutdown().await;
}
