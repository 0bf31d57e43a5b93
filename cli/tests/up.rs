//! The embedded default of `runledger up`: with nothing answering at the default addresses and no
//! NATS_URL/DATABASE_URL, it starts a private nats-server and PostgreSQL under its data
//! directory, projects events into them, and stops them on SIGTERM.

use events::{examples, EventType, Subjects};
use producers::{Publisher, PublisherSettings};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;
use testsupport::Deadline;

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
    let mut up = Command::new(env!("CARGO_BIN_EXE_runledger"))
        .arg("up")
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
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
        Subjects::default(),
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
