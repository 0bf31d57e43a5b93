//! `.runledger/endpoints.json`: how every other subcommand run from the same directory finds the
//! private servers of a running `runledger up`, and how two `up`s in one directory are kept apart.
//!
//! `up` takes the file when it uses the embedded default (created exclusively, with only its pid,
//! before it starts anything), fills in the URLs once its servers answer, and removes it on exit.
//! A subcommand without `NATS_URL`/`DATABASE_URL` reads it and says in its log which URL it took.
//! The file is stale when the `up` that wrote it is gone (its pid exited or was reused: the start
//! time from `/proc` is recorded beside it) or when a server it names does not answer; readers
//! then ignore it with a warning, and the next `up` replaces it after stopping the servers a
//! killed `up` left running (recorded with their own pids and start times).

use anyhow::{bail, Context};
use producers::process::{probe, stat};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The data directory when `RUNLEDGER_DATA_DIR` is not set (also `up --data-dir`'s default).
pub const DEFAULT_DATA_DIR: &str = ".runledger";

/// The file's name inside the data directory.
pub const FILE: &str = "endpoints.json";

/// What a running `up` tells the other subcommands.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoints {
    /// The `up` that wrote the file.
    pub pid: i32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat`): a reused pid is not it.
    pub pid_start: Option<u64>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// `None` while `up` is still starting its servers.
    pub nats_url: Option<String>,
    /// Over TCP, for psql and every subcommand.
    pub database_url: Option<String>,
    /// The same database through the private server's socket directory.
    pub database_socket_url: Option<String>,
    /// The read API and dashboard.
    pub http_url: Option<String>,
    /// The private servers `up` started (to stop them if `up` was killed).
    #[serde(default)]
    pub servers: Vec<Server>,
}

/// A private server process recorded in the file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub pid: i32,
    pub pid_start: Option<u64>,
}

/// What was found in a data directory.
#[derive(Debug)]
pub enum Found {
    Missing,
    Live(Endpoints),
    /// The file is there but its `up` is gone or its servers do not answer.
    Stale {
        endpoints: Option<Endpoints>,
        why: String,
    },
}

/// The file in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// The data directory of this process: `RUNLEDGER_DATA_DIR`, else `./.runledger`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("RUNLEDGER_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
}

fn up_alive(e: &Endpoints) -> bool {
    probe::probe(e.pid, e.pid_start).is_alive()
}

/// Whether `url`'s first server accepts TCP connections within half a second. URLs that are
/// not host:port (a socket directory) count as answering: the pid check stands alone.
fn answers(url: &str, default_port: u16) -> bool {
    let Some((host, port)) = crate::infra::host_port(url, default_port) else {
        return true;
    };
    let Ok(addrs) = (host.as_str(), port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok())
}

/// Reads and judges the file in `dir`.
pub fn inspect(dir: &Path) -> Found {
    let file = path(dir);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::Missing,
        Err(e) => {
            return Found::Stale {
                endpoints: None,
                why: format!("it cannot be read: {e}"),
            }
        }
    };
    let endpoints: Endpoints = match serde_json::from_str(&text) {
        Ok(e) => e,
        Err(e) => {
            return Found::Stale {
                endpoints: None,
                why: format!("it is not what runledger up writes: {e}"),
            }
        }
    };
    if !up_alive(&endpoints) {
        let why = format!(
            "the runledger up that wrote it (pid {}) is gone",
            endpoints.pid
        );
        return Found::Stale {
            endpoints: Some(endpoints),
            why,
        };
    }
    let silent = [
        (endpoints.nats_url.as_deref(), 4222),
        (endpoints.database_url.as_deref(), 5432),
    ]
    .into_iter()
    .find_map(|(url, port)| url.filter(|url| !answers(url, port)));
    if let Some(url) = silent {
        let why = format!("its server at {} does not answer", crate::db::redact(url));
        return Found::Stale {
            endpoints: Some(endpoints),
            why,
        };
    }
    Found::Live(endpoints)
}

/// The file of this process's data directory, read once; says in the log what it found.
fn discovered() -> Option<&'static Endpoints> {
    static FOUND: OnceLock<Option<Endpoints>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let dir = data_dir();
            match inspect(&dir) {
                Found::Missing => None,
                Found::Live(e) => Some(e),
                Found::Stale { why, .. } => {
                    tracing::warn!(
                        file = %path(&dir).display(),
                        "ignoring a stale endpoints file: {why}; using the default servers \
                         (start `runledger up` again to replace it)"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// Which URL a subcommand uses when none was given: the running `up`'s, else `default`.
fn pick(what: &'static str, from_up: fn(&Endpoints) -> Option<&String>, default: &str) -> String {
    let found = discovered().map(|e| (e.pid, from_up(e)));
    let url = match found {
        Some((_, Some(url))) => url.clone(),
        _ => default.to_owned(),
    };
    // Said once per process and variable.
    static SAID: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.contains(&what) {
        said.push(what);
        let shown = crate::db::redact(&url);
        match found {
            Some((pid, Some(_))) => tracing::info!(
                url = %shown,
                "{what} not set: using the private server of runledger up (pid {pid}) from {}",
                path(&data_dir()).display()
            ),
            Some((pid, None)) => tracing::info!(
                url = %shown,
                "{what} not set and runledger up (pid {pid}) is still starting its servers: \
                 using the default"
            ),
            None => tracing::debug!(url = %shown, "{what} not set: using the default"),
        }
    }
    url
}

/// The NATS URL when `NATS_URL` is not set.
pub fn nats_url_or(default: &str) -> String {
    pick("NATS_URL", |e| e.nats_url.as_ref(), default)
}

/// The database URL when `DATABASE_URL` is not set.
pub fn database_url_or(default: &str) -> String {
    pick("DATABASE_URL", |e| e.database_url.as_ref(), default)
}

/// Sends `signal` to a recorded server if it is still that process, and waits up to 15 s for
/// it to go.
async fn stop_orphan(server: &Server) {
    if !probe::probe(server.pid, server.pid_start).is_alive() {
        return;
    }
    let signal = if server.name == "postgres" {
        nix::sys::signal::Signal::SIGINT // PostgreSQL's fast shutdown
    } else {
        nix::sys::signal::Signal::SIGTERM
    };
    tracing::warn!(
        server = %server.name,
        pid = server.pid,
        "stopping a private server left running by a killed runledger up"
    );
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(server.pid), signal);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while probe::probe(server.pid, server.pid_start).is_alive() {
        if tokio::time::Instant::now() > deadline {
            tracing::warn!(server = %server.name, pid = server.pid, "it did not stop within 15 s");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
    }
}

/// `up`'s hold on the file of its data directory; removes the file when dropped.
pub struct Claim {
    file: PathBuf,
    endpoints: Endpoints,
}

impl Claim {
    /// Takes the file of `dir` for this process: refuses while another `up` that wrote it is
    /// alive, replaces a stale one (stopping the servers its killed `up` left running).
    pub async fn take(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = path(dir);
        let pid = std::process::id() as i32;
        let endpoints = Endpoints {
            pid,
            pid_start: stat::start_time(pid),
            started_at: chrono::Utc::now(),
            nats_url: None,
            database_url: None,
            database_socket_url: None,
            http_url: None,
            servers: Vec::new(),
        };
        for _ in 0..3 {
            let created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file);
            match created {
                Ok(mut f) => {
                    f.write_all(&serde_json::to_vec_pretty(&endpoints)?)?;
                    return Ok(Self { file, endpoints });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("creating {}", file.display())),
            }
            match inspect(dir) {
                Found::Missing => continue, // removed in between: try again
                Found::Live(other) => bail!(refusal(&file, &other)),
                Found::Stale { endpoints, why } => {
                    if let Some(other) = &endpoints {
                        // Its servers may answer; it is the `up` that matters.
                        if up_alive(other) {
                            bail!(refusal(&file, other));
                        }
                        for server in other.servers.iter().rev() {
                            stop_orphan(server).await;
                        }
                    }
                    tracing::warn!(file = %file.display(), "replacing a stale endpoints file: {why}");
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(e).with_context(|| format!("removing {}", file.display()))
                        }
                    }
                }
            }
        }
        bail!(
            "{} keeps changing: is another runledger up starting here?",
            file.display()
        )
    }

    /// The servers this `up` started, recorded before anything else can use them.
    pub fn record_server(&mut self, name: &str, pid: Option<u32>) -> anyhow::Result<()> {
        let Some(pid) = pid else { return Ok(()) };
        let pid = pid as i32;
        self.endpoints.servers.push(Server {
            name: name.to_owned(),
            pid,
            pid_start: stat::start_time(pid),
        });
        self.write()
    }

    /// Fills in what the other subcommands use (`None`: not from the embedded default).
    pub fn publish(
        &mut self,
        nats_url: Option<String>,
        database_url: Option<String>,
        database_socket_url: Option<String>,
        http_url: Option<String>,
    ) -> anyhow::Result<()> {
        self.endpoints.nats_url = nats_url;
        self.endpoints.database_url = database_url;
        self.endpoints.database_socket_url = database_socket_url;
        self.endpoints.http_url = http_url;
        self.write()
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Replaces the file whole (write beside, then rename), so a reader never sees half of it.
    fn write(&self) -> anyhow::Result<()> {
        let tmp = self
            .file
            .with_extension(format!("json.{}", self.endpoints.pid));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.endpoints)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.file)
            .with_context(|| format!("replacing {}", self.file.display()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Only while it is still this process's file.
        let ours = std::fs::read_to_string(&self.file)
            .ok()
            .and_then(|text| serde_json::from_str::<Endpoints>(&text).ok())
            .is_some_and(|e| e.pid == self.endpoints.pid);
        if ours {
            let _ = std::fs::remove_file(&self.file);
        }
    }
}

fn refusal(file: &Path, other: &Endpoints) -> String {
    let mut text = format!(
        "another runledger up (pid {}, started {}) runs with its private servers in this \
         directory ({}): stop it first, or use it",
        other.pid,
        other
            .started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        file.display()
    );
    if let Some(url) = &other.nats_url {
        text.push_str(&format!(" (NATS {url}"));
        if let Some(db) = &other.database_url {
            text.push_str(&format!(", PostgreSQL {}", crate::db::redact(db)));
        }
        text.push(')');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rl-ep-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn a_second_claim_is_refused_and_a_dead_writers_file_replaced() {
        let dir = scratch();
        let mut first = Claim::take(&dir).await.unwrap();
        first
            .publish(Some("nats://127.0.0.1:1".into()), None, None, None)
            .unwrap();
        // This process is alive, so its file is live for a reader ... (its NATS URL does not
        // answer, so a reader calls it stale, but a second `up` still refuses: the writer lives).
        let again = Claim::take(&dir).await.err().expect("refused");
        assert!(
            again.to_string().contains("another runledger up"),
            "{again}"
        );
        drop(first);
        assert!(matches!(inspect(&dir), Found::Missing));

        // A file whose writer's pid was reused (another start time) is stale and replaced.
        let pid = std::process::id() as i32;
        let dead = Endpoints {
            pid,
            pid_start: Some(stat::start_time(pid).unwrap() + 1),
            started_at: chrono::Utc::now(),
            nats_url: None,
            database_url: None,
            database_socket_url: None,
            http_url: None,
            servers: Vec::new(),
        };
        std::fs::write(path(&dir), serde_json::to_vec(&dead).unwrap()).unwrap();
        assert!(matches!(inspect(&dir), Found::Stale { .. }));
        let replaced = Claim::take(&dir).await.unwrap();
        assert!(matches!(inspect(&dir), Found::Live(e) if e.pid_start == stat::start_time(pid)));
        drop(replaced);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
