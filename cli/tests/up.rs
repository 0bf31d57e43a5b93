//! `runledger up`. Its embedded default: with nothing answering at the default addresses and no
//! NATS_URL/DATABASE_URL, it starts a private nats-server and PostgreSQL under its data
//! directory, projects events into them, and stops them on SIGTERM. And its metrics: the projector
//! and the reconciler it runs feed `/metrics` with what they folded and decided. And its
//! endpoints file: the other subcommands run from the same directory find its private servers
//! without any setting, a second `up` there refuses, and a killed `up`'s file is found stale and
//! replaced. Every test runs `up` partitioned as `RUNLEDGER_TEST_PARTITIONS` says (its embedded
//! nats-server then maps the partitions itself).

use events::{examples, Event, EventType, Subjects};
use producers::{Publisher, PublisherSettings};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;
use testsupport::{eventually, Deadline};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn answers(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn up_starts_private_servers_when_nothing_answers_and_stops_them() {
    let (nats_port, pg_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("rl-up-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let partitions = testsupport::partitions();
    let mut up = Command::new(env!("CARGO_BIN_EXE_runledger"))
        .arg("up")
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .env("RUNLEDGER_PARTITIONS", partitions.to_string())
        .env(
            "RUNLEDGER_DEFAULT_NATS_URL",
            format!("nats://127.0.0.1:{nats_port}"),
        )
        .env(
            "RUNLEDGER_DEFAULT_DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{pg_port}/runledger"),
        )
        .env("RUNLEDGER_DATA_DIR", &dir)
        .env("RUNLEDGER_HTTP_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Deadline::after(Duration::from_secs(60));
    let socket_dir = dir.join("pg-socket");
    let pg = format!(
        "host={} port={pg_port} user=postgres dbname=runledger",
        socket_dir.display()
    );
    // Wait until both private servers answer and the schema exists.
    let client = loop {
        assert!(
            up.try_wait().unwrap().is_none(),
            "runledger up exited early"
        );
        assert!(!deadline.passed(), "private servers did not come up");
        if answers(nats_port) {
            if let Ok((client, conn)) = tokio_postgres::connect(&pg, tokio_postgres::NoTls).await {
                tokio::spawn(conn);
                let ready = client
                    .query_opt("SELECT 1 FROM projector_positions LIMIT 1", &[])
                    .await;
                if ready.is_ok() {
                    break client;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    };
    let nats = async_nats::connect(format!("nats://127.0.0.1:{nats_port}"))
        .await
        .unwrap();
    let publisher = Publisher::new(
        async_nats::jetstream::new(nats),
        Subjects::default().partitioned(partitions).unwrap(),
        PublisherSettings::default(),
    );
    let event = examples::event(EventType::RunStarted);
    publisher.publish(&event).await.unwrap();
    loop {
        let n: i64 = client
            .query_one("SELECT count(*) FROM runs", &[])
            .await
            .unwrap()
            .get(0);
        if n == 1 {
            break;
        }
        assert!(!deadline.passed(), "the event was not projected");
        tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
    }
    drop(client);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = up.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(up.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(status.success(), "runledger up failed: {log}");
    assert!(log.contains("started a private nats-server"), "{log}");
    assert!(log.contains("started a private PostgreSQL"), "{log}");
    assert!(!answers(nats_port), "the private nats-server was stopped");
    assert!(
        !socket_dir.join(format!(".s.PGSQL.{pg_port}")).exists(),
        "the private PostgreSQL was stopped"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One sample of a scrape: metric name and its labels.
type Sample = (String, BTreeMap<String, String>);

/// Parses the Prometheus text format strictly: every line is a `# HELP`, a `# TYPE` (counter,
/// gauge or histogram) or a sample of the family declared last, with well-formed labels and a
/// number; anything else fails the test.
fn parse_exposition(text: &str) -> BTreeMap<Sample, f64> {
    let mut samples = BTreeMap::new();
    let mut family: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(help) = line.strip_prefix("# HELP ") {
            assert!(help.split_once(' ').is_some(), "HELP without text: {line}");
            continue;
        }
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let (name, kind) = declared.split_once(' ').expect("TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "unexpected type: {line}"
            );
            family = Some((name.to_owned(), kind.to_owned()));
            continue;
        }
        let (family, kind) = family
            .as_ref()
            .unwrap_or_else(|| panic!("sample before TYPE: {line}"));
        let (series, value) = line.rsplit_once(' ').expect("sample value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("}"))),
        };
        let belongs = match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(family)),
            _ => name == family,
        };
        assert!(belongs, "`{name}` is not of family `{family}` ({kind})");
        let previous = samples.insert((name.to_owned(), labels), value);
        assert!(previous.is_none(), "repeated sample: {line}");
    }
    samples
}

fn parse_labels(mut text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (name, rest) = text.split_once("=\"").expect("label=\"value\"");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (i, '"') => break i,
                (_, '\\') => value.push(match chars.next().expect("escape").1 {
                    'n' => '\n',
                    other => other,
                }),
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.to_owned(), value);
        text = rest[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&rest[end + 1..]);
    }
    labels
}

/// The samples of `name`, keyed by the value of its one label `label`.
fn by_label(samples: &BTreeMap<Sample, f64>, name: &str, label: &str) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter(|((n, _), _)| n == name)
        .map(|((_, labels), v)| (labels[label].clone(), *v))
        .collect()
}

#[tokio::test]
async fn up_feeds_projector_batches_and_reconciler_decisions_into_metrics() {
    let db = testsupport::TestDb::new().await.unwrap();
    // Partitioned as RUNLEDGER_TEST_PARTITIONS says: `up` then runs a projector and a
    // reconciler per partition.
    let ts = testsupport::TestStream::new().await.unwrap();
    let subjects = ts.subjects();
    let port = free_port();
    let mut up = Command::new(env!("CARGO_BIN_EXE_runledger"))
        .arg("up")
        .env("DATABASE_URL", db.url())
        .env("NATS_URL", &ts.url)
        .env("RUNLEDGER_STREAM", &ts.stream)
        .env("RUNLEDGER_SUBJECT_PREFIX", &ts.prefix)
        .env("RUNLEDGER_PARTITIONS", ts.partitions.to_string())
        .env("RUNLEDGER_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("RUNLEDGER_TICK_INTERVAL", "1h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    eventually(Duration::from_secs(60), "runledger up to serve", || {
        let (http, url) = (http.clone(), metrics_url.clone());
        async move { http.get(url).send().await.ok() }
    })
    .await;

    // A run of an issue that starts and succeeds: the reconciler classifies it, writes its
    // summary and comments its result, and the projector folds those follow-ups too.
    let publisher = Publisher::new(
        ts.jetstream(),
        subjects.clone(),
        PublisherSettings::default(),
    );
    // The examples' company, whose partition folds and decides them (its reconciler schema and
    // projector position row; the whole stream's at P = 1).
    let company = examples::event(EventType::AgentRegistered).company_id;
    let partition = subjects.partition_of(company);
    let schema = testsupport::Reconcilers::schemas(&subjects)[partition as usize].clone();
    let consumer = projector::membership::position_key("runledger-projector", &subjects, partition);
    for event_type in [
        EventType::AgentRegistered,
        EventType::IssueCreated,
        EventType::RunStarted,
        EventType::RunFinished,
    ] {
        publisher
            .publish(&examples::event(event_type))
            .await
            .unwrap();
    }

    let client = db.client().await.unwrap();
    let js = ts.jetstream();
    let deadline = Deadline::after(Duration::from_secs(60));
    let (samples, stream_types, rules) = loop {
        assert!(up.try_wait().unwrap().is_none(), "runledger up exited");
        // What happened, from the stream and the reconciler's outbox ...
        let last = js
            .get_stream(&ts.stream)
            .await
            .unwrap()
            .cached_info()
            .state
            .last_sequence;
        let stream = js.get_stream(&ts.stream).await.unwrap();
        let mut stream_types = BTreeMap::new();
        for seq in 1..=last {
            let message = stream.get_raw_message(seq).await.unwrap();
            let event = Event::from_slice(&message.payload).unwrap();
            *stream_types
                .entry(event.event_type().as_str().to_owned())
                .or_insert(0.0) += 1.0;
        }
        let rules: BTreeMap<String, f64> = client
            .query(
                &format!("SELECT rule, count(*) FROM {schema}.outbox GROUP BY rule"),
                &[],
            )
            .await
            .map(|rows| {
                rows.iter()
                    .map(|r| (r.get(0), r.get::<_, i64>(1) as f64))
                    .collect()
            })
            .unwrap_or_default();
        let unpublished: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {schema}.outbox WHERE NOT published"),
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(1);
        // ... and what /metrics says, once the projector has folded all of it.
        let text = http
            .get(&metrics_url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let samples = parse_exposition(&text);
        let position = samples
            .get(&(
                "runledger_projector_position".to_owned(),
                [("consumer".to_owned(), consumer.clone())].into(),
            ))
            .copied();
        // The last event of the company's partition (of the stream at P = 1).
        let partition_last =
            projector::feed::last_seq_of(&js, &ts.stream, &subjects.partition_filter(partition))
                .await
                .unwrap();
        let settled = !rules.is_empty()
            && unpublished == 0
            && position == Some(partition_last as f64)
            && by_label(&samples, "runledger_projector_events_total", "type") == stream_types
            && by_label(&samples, "runledger_reconciler_decisions_total", "rule") == rules;
        if settled {
            break (samples, stream_types, rules);
        }
        assert!(
            !deadline.passed(),
            "metrics never matched the stream ({stream_types:?}) and the outbox ({rules:?}):\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
    };
    let events: f64 = stream_types.values().sum();
    assert!(
        rules.contains_key(reconciler::engine::rule::LIVENESS),
        "{rules:?}"
    );
    assert!(stream_types.contains_key("run.liveness_classified"));
    let one = |name: &str| samples[&(name.to_owned(), BTreeMap::new())];
    assert_eq!(one("runledger_projector_batch_size_sum"), events);
    let batches = one("runledger_projector_batch_size_count");
    assert!(batches >= 1.0);
    assert_eq!(
        one("runledger_projector_batch_duration_seconds_count"),
        batches
    );
    // Every partition's events (its clock's ticks included), each counted once.
    assert_eq!(
        by_label(
            &samples,
            "runledger_projector_events_applied_total",
            "consumer"
        )
        .values()
        .sum::<f64>(),
        events
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(up.wait().unwrap().success());
}

/// `runledger <args>` in `dir` with an empty environment: whatever it reaches, it found itself.
/// A subcommand in `dir` with no environment but the partition count (which `up`'s endpoints
/// file does not tell).
fn runledger_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runledger"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env(
            "RUNLEDGER_PARTITIONS",
            testsupport::partitions().to_string(),
        )
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `runledger up` in `dir` with the embedded default on the given ports, its output in files.
fn spawn_up(
    dir: &std::path::Path,
    nats_port: u16,
    pg_port: u16,
    name: &str,
) -> std::process::Child {
    let out = std::fs::File::create(dir.join(format!("{name}.out"))).unwrap();
    let err = std::fs::File::create(dir.join(format!("{name}.err"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_runledger"))
        .arg("up")
        .current_dir(dir)
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .env_remove("RUNLEDGER_DATA_DIR")
        .env(
            "RUNLEDGER_DEFAULT_NATS_URL",
            format!("nats://127.0.0.1:{nats_port}"),
        )
        .env(
            "RUNLEDGER_DEFAULT_DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:{pg_port}/runledger"),
        )
        .env("RUNLEDGER_HTTP_ADDR", "127.0.0.1:0")
        .env("RUNLEDGER_TICK_INTERVAL", "1h")
        .env(
            "RUNLEDGER_PARTITIONS",
            testsupport::partitions().to_string(),
        )
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap()
}

/// The endpoints file once `up` (started as `name`) has filled in its servers.
fn wait_for_endpoints(
    dir: &std::path::Path,
    up: &mut std::process::Child,
    name: &str,
) -> serde_json::Value {
    let deadline = Deadline::after(Duration::from_secs(90));
    let file = dir.join(".runledger").join("endpoints.json");
    loop {
        if let Some(status) = up.try_wait().unwrap() {
            panic!(
                "runledger up exited ({status}): {}",
                std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default()
            );
        }
        let read = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        if let Some(endpoints) = read {
            if endpoints["pid"] == up.id() && endpoints["nats_url"].is_string() {
                return endpoints;
            }
        }
        assert!(!deadline.passed(), "runledger up never wrote its endpoints");
        std::thread::sleep(Duration::from_millis(50)); // poll interval
    }
}

/// Kills what a failed test would leave running: the `up`s and the servers they recorded.
struct Leftovers(std::path::PathBuf, Vec<u32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        for pid in &self.1 {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        let file = self.0.join(".runledger").join("endpoints.json");
        if let Some(endpoints) = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        {
            for server in endpoints["servers"].as_array().into_iter().flatten() {
                if let Some(pid) = server["pid"].as_i64() {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn other_subcommands_find_the_private_servers_of_up_in_its_directory() {
    let (nats_port, pg_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("rl-up-ep-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut leftovers = Leftovers(dir.clone(), Vec::new());
    let mut up = spawn_up(&dir, nats_port, pg_port, "up");
    leftovers.1.push(up.id());
    let endpoints = wait_for_endpoints(&dir, &mut up, "up");
    let database_url = format!("postgres://postgres@127.0.0.1:{pg_port}/runledger");
    assert_eq!(
        endpoints["nats_url"],
        format!("nats://127.0.0.1:{nats_port}")
    );
    assert_eq!(endpoints["database_url"], database_url);
    assert_eq!(endpoints["servers"].as_array().unwrap().len(), 2);
    let printed = std::fs::read_to_string(dir.join("up.out")).unwrap();
    assert!(
        printed.contains(&format!("psql '{database_url}'")),
        "{printed}"
    );
    // The private PostgreSQL answers over TCP, as printed.
    assert!(answers(pg_port));

    // publish, status and reconcile --dry-run, from the same directory, with no environment.
    let published = runledger_in(
        &dir,
        &[
            "publish",
            "--type",
            "agent.registered",
            "--company",
            "5f0c6a8e-1d2b-4c3a-9e8f-7a6b5c4d3e2f",
            "--data",
            r#"{"agent_id":"0b9e7c52-8a1f-4d6e-b3c2-1f0e9d8c7b6a","name":"CodexCoder","role":"engineer","adapter_type":"codex_local","adapter_config":{"timeout_sec":900},"status":"idle"}"#,
        ],
    );
    assert!(published.status.success(), "{}", text(&published.stderr));
    let log = text(&published.stderr);
    assert!(
        log.contains("NATS_URL not set: using the private server of runledger up"),
        "{log}"
    );
    let deadline = Deadline::after(Duration::from_secs(60));
    let status = loop {
        let out = runledger_in(&dir, &["status", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let log = text(&out.stderr);
        assert!(
            log.contains("DATABASE_URL not set: using the private server of runledger up"),
            "{log}"
        );
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if status["stream_last_seq"].as_i64() >= Some(1)
            && status["projector_position"] == status["stream_last_seq"]
        {
            break status;
        }
        assert!(!deadline.passed(), "never projected: {status}");
        std::thread::sleep(Duration::from_millis(100)); // poll interval
    };
    assert_eq!(status["dead_letters"], 0, "{status}");
    let dry = runledger_in(&dir, &["reconcile", "--dry-run"]);
    let printed = text(&dry.stdout);
    // (With partitions, one dry run per partition, each under its heading.)
    assert!(
        printed
            .lines()
            .find(|l| !l.starts_with("partition "))
            .is_some_and(|l| l.starts_with("dry run of causes 1..=")),
        "{printed}{}",
        text(&dry.stderr)
    );

    // A second `up` in the same directory refuses, naming the first.
    let second = runledger_in(&dir, &["up"]);
    let said = text(&second.stderr);
    assert!(!second.status.success());
    assert!(
        said.contains(&format!("another runledger up (pid {},", up.id())),
        "{said}"
    );

    // Killed, `up` leaves its file (and its servers): readers call it stale ...
    up.kill().unwrap();
    up.wait().unwrap();
    let out = runledger_in(&dir, &["status"]);
    let log = text(&out.stderr);
    assert!(
        log.contains("ignoring a stale endpoints file: the runledger up that wrote it"),
        "{log}"
    );
    // ... and the next `up` stops the servers left behind and replaces it.
    let mut again = spawn_up(&dir, nats_port, pg_port, "again");
    leftovers.1.push(again.id());
    let replaced = wait_for_endpoints(&dir, &mut again, "again");
    assert_ne!(replaced["servers"], endpoints["servers"]);
    let log = std::fs::read_to_string(dir.join("again.err")).unwrap();
    assert!(log.contains("replacing a stale endpoints file"), "{log}");
    assert!(log.contains("started a private PostgreSQL"), "{log}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(again.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(again.wait().unwrap().success());
    assert!(!dir.join(".runledger").join("endpoints.json").exists());
    assert!(!answers(nats_port) && !answers(pg_port));
}
