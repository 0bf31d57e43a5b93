//! The embedded default of `runledger up`: with no `NATS_URL`/`DATABASE_URL`, use the usual local
//! servers; if nothing answers there and the server binaries are installed, start private ones
//! under the data directory (`./.runledger/` by default) and stop them on exit. When a URL is
//! given, it is used exactly and nothing is ever started. Whenever it uses the embedded default,
//! `up` holds the data directory's endpoints file ([`crate::endpoints`]): one `up` per directory,
//! and the other subcommands find its servers there.

use crate::endpoints::Claim;
use crate::settings::{DbArgs, NatsArgs, DEFAULT_DATABASE_URL, DEFAULT_NATS_URL};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Where the embedded default looks first (overridable so it can be tested on a machine whose
/// standard ports are busy).
#[derive(clap::Args, Clone, Debug)]
pub struct EmbeddedArgs {
    /// Directory for private servers' data when they must be started.
    #[arg(
        long = "data-dir",
        env = "RUNLEDGER_DATA_DIR",
        default_value = crate::endpoints::DEFAULT_DATA_DIR
    )]
    pub data_dir: PathBuf,
    #[arg(long, env = "RUNLEDGER_DEFAULT_NATS_URL", default_value = DEFAULT_NATS_URL, hide = true)]
    pub default_nats_url: String,
    #[arg(long, env = "RUNLEDGER_DEFAULT_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide = true)]
    pub default_database_url: String,
}

/// A server this process started; stopped on [`Infra::stop`] (or killed on drop).
struct Managed {
    name: &'static str,
    child: Child,
    /// The signal that shuts it down cleanly.
    stop_signal: nix::sys::signal::Signal,
}

/// The servers runledger talks to.
pub struct Infra {
    pub nats_url: String,
    pub database_url: String,
    /// The private PostgreSQL's database through its socket directory (`database_url` is TCP).
    database_socket_url: Option<String>,
    managed: Vec<Managed>,
    /// Held while the embedded default is in use (either URL not given).
    claim: Option<Claim>,
    nats_given: bool,
    database_given: bool,
}

impl Infra {
    /// Tells the other subcommands of this directory where the servers are (the ones taken from
    /// the embedded default), and prints it with a ready-to-paste psql line.
    pub fn announce(&mut self, http_addr: std::net::SocketAddr) -> anyhow::Result<()> {
        let nats = (!self.nats_given).then(|| self.nats_url.clone());
        let database = (!self.database_given).then(|| self.database_url.clone());
        let http = (http_addr.port() != 0).then(|| format!("http://{http_addr}/"));
        let private = if self.managed.is_empty() {
            "servers"
        } else {
            "private servers"
        };
        println!("runledger up: {private} ready");
        println!("  NATS_URL={}", crate::db::redact(&self.nats_url));
        println!("  DATABASE_URL={}", crate::db::redact(&self.database_url));
        if let Some(socket) = &self.database_socket_url {
            println!("  (or through the socket directory: {socket})");
        }
        // Only when pasting it needs no secret.
        if crate::db::redact(&self.database_url) == self.database_url {
            println!("  psql '{}'", self.database_url);
        }
        if let Some(http) = &http {
            println!("  dashboard {http}");
        }
        if let Some(claim) = &mut self.claim {
            claim.publish(nats, database, self.database_socket_url.clone(), http)?;
            println!(
                "  other runledger commands run from this directory find them in {}",
                claim.file().display()
            );
        }
        Ok(())
    }

    /// Stops the servers this process started, cleanly, newest first.
    pub async fn stop(mut self) {
        // First, so that nothing new finds servers that are going away.
        drop(self.claim.take());
        while let Some(mut m) = self.managed.pop() {
            if let Some(pid) = m.child.id() {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), m.stop_signal);
            }
            match tokio::time::timeout(Duration::from_secs(15), m.child.wait()).await {
                Ok(_) => tracing::info!(server = m.name, "stopped private server"),
                Err(_) => {
                    let _ = m.child.kill().await;
                    tracing::warn!(
                        server = m.name,
                        "private server did not stop in 15 s; killed"
                    );
                }
            }
        }
    }
}

pub(crate) fn host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host_port = host_port.split(',').next()?;
    match host_port.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), p.parse().ok()?)),
        None => Some((host_port.to_owned(), default_port)),
    }
}

async fn answers(host: &str, port: u16) -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect((host, port))
        )
        .await,
        Ok(Ok(_))
    )
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    // Debian keeps the PostgreSQL server binaries off PATH.
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        dirs.extend(versions.into_iter().rev());
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

async fn wait_until_answers(
    name: &str,
    host: &str,
    port: u16,
    child: &mut Child,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if answers(host, port).await {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("the private {name} exited during start-up ({status}); see its log under the data directory");
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the private {name} did not accept connections within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Decides which servers to use, starting private ones if needed; a private nats-server applies
/// `mapping` (partitions: source and destination, `events::Subjects::mapping`).
pub async fn resolve(
    nats: &NatsArgs,
    db: &DbArgs,
    embedded: &EmbeddedArgs,
    mapping: Option<(String, String)>,
) -> anyhow::Result<Infra> {
    let claim = if nats.url.is_none() || db.url.is_none() {
        Some(Claim::take(&embedded.data_dir).await?)
    } else {
        None
    };
    let mut infra = Infra {
        nats_url: String::new(),
        database_url: String::new(),
        database_socket_url: None,
        managed: Vec::new(),
        claim,
        nats_given: nats.url.is_some(),
        database_given: db.url.is_some(),
    };
    infra.nats_url = match &nats.url {
        Some(url) => url.clone(),
        None => {
            let url = embedded.default_nats_url.clone();
            let (host, port) = host_port(&url, 4222).context("default NATS URL")?;
            if !answers(&host, port).await {
                let managed = start_nats(&embedded.data_dir, &host, port, mapping).await?;
                infra.record(managed)?;
            }
            url
        }
    };
    infra.database_url = match &db.url {
        Some(url) => url.clone(),
        None => {
            let url = embedded.default_database_url.clone();
            let (host, port) = host_port(&url, 5432).context("default database URL")?;
            if answers(&host, port).await {
                crate::db::create_database_if_missing(&url).await?;
                url
            } else {
                // Trust authentication is offered on a loopback address only.
                let tcp = is_loopback(&host).then_some(host.as_str());
                let (managed, socket_url) = start_postgres(&embedded.data_dir, tcp, port).await?;
                infra.record(managed)?;
                crate::db::create_database_if_missing(&socket_url).await?;
                infra.database_socket_url = Some(socket_url.clone());
                if tcp.is_some() {
                    url
                } else {
                    socket_url
                }
            }
        }
    };
    Ok(infra)
}

impl Infra {
    /// Keeps a started server, recorded in the endpoints file first (a killed `up` leaves it
    /// running; the next `up` stops it).
    fn record(&mut self, managed: Managed) -> anyhow::Result<()> {
        if let Some(claim) = &mut self.claim {
            claim.record_server(managed.name, managed.child.id())?;
        }
        self.managed.push(managed);
        Ok(())
    }
}

async fn start_nats(
    data_dir: &Path,
    host: &str,
    port: u16,
    mapping: Option<(String, String)>,
) -> anyhow::Result<Managed> {
    let Some(binary) = find_binary("nats-server") else {
        bail!(
            "nothing answers at {host}:{port} and nats-server is not installed: install it \
             (apt-get install nats-server) or set NATS_URL"
        );
    };
    let dir = data_dir.join("nats");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = std::fs::File::create(data_dir.join("nats-server.log"))?;
    let mut command = Command::new(&binary);
    if let Some((source, destination)) = mapping {
        // Partitions need the server to map producers' subjects (flags cannot say it).
        let conf = data_dir.join("nats-mapping.conf");
        std::fs::write(
            &conf,
            format!("mappings = {{\n  \"{source}\": \"{destination}\"\n}}\n"),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        command.arg("-c").arg(conf);
    }
    let mut child = command
        .args(["-a", host, "-p", &port.to_string(), "-js", "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    wait_until_answers("nats-server", host, port, &mut child).await?;
    tracing::info!(url = %format!("nats://{host}:{port}"), store = %dir.display(), "nothing answered; started a private nats-server");
    Ok(Managed {
        name: "nats-server",
        child,
        stop_signal: nix::sys::signal::Signal::SIGTERM,
    })
}

/// PostgreSQL refuses to run as root; as root, the private cluster runs as the `postgres` user
/// (set directly on the child, so the process we signal is PostgreSQL itself).
fn as_postgres_user(binary: &Path) -> anyhow::Result<Command> {
    let mut command = Command::new(binary);
    if nix::unistd::Uid::effective().is_root() {
        let user = nix::unistd::User::from_name("postgres")?
            .context("running as root needs a `postgres` user to run the private PostgreSQL")?;
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        command.env("HOME", &user.dir);
    }
    Ok(command)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Starts the private PostgreSQL on a socket in the data directory and, given `tcp_host`, on
/// `tcp_host:port` too (where nothing answered); returns it with the socket URL of its
/// `runledger` database. It trusts every local connection (`initdb --auth=trust`), which is why
/// it listens on a loopback address only.
async fn start_postgres(
    data_dir: &Path,
    tcp_host: Option<&str>,
    port: u16,
) -> anyhow::Result<(Managed, String)> {
    let (Some(initdb), Some(postgres)) = (find_binary("initdb"), find_binary("postgres")) else {
        bail!(
            "nothing answers at the default PostgreSQL address and initdb/postgres are not \
             installed: install them (apt-get install postgresql) or set DATABASE_URL"
        );
    };
    std::fs::create_dir_all(data_dir)?;
    let data_dir = std::fs::canonicalize(data_dir)?;
    let cluster = data_dir.join("pg");
    let socket = data_dir.join("pg-socket");
    std::fs::create_dir_all(&socket)?;
    let root = nix::unistd::Uid::effective().is_root();
    if root {
        let user = nix::unistd::User::from_name("postgres")?
            .context("running as root needs a `postgres` user to run the private PostgreSQL")?;
        nix::unistd::chown(socket.as_path(), Some(user.uid), Some(user.gid))?;
        if !cluster.exists() {
            std::fs::create_dir_all(&cluster)?;
            nix::unistd::chown(cluster.as_path(), Some(user.uid), Some(user.gid))?;
        }
    }
    if !cluster.join("PG_VERSION").exists() {
        let status = as_postgres_user(&initdb)?
            .args(["-D"])
            .arg(&cluster)
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8"])
            .stdout(Stdio::null())
            .status()
            .await
            .context("running initdb")?;
        if !status.success() {
            bail!("initdb failed ({status}) for {}", cluster.display());
        }
    }
    let log = std::fs::File::create(data_dir.join("postgres.log"))?;
    let mut child = as_postgres_user(&postgres)?
        .arg("-D")
        .arg(&cluster)
        .arg("-k")
        .arg(&socket)
        .arg("-c")
        .arg(format!("listen_addresses={}", tcp_host.unwrap_or_default()))
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting postgres")?;
    let url = format!(
        "host={} port={port} user=postgres dbname=runledger",
        socket.display()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut admin: tokio_postgres::Config = url.parse()?;
        admin.dbname("postgres");
        if admin.connect(tokio_postgres::NoTls).await.is_ok() {
            break;
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "the private postgres exited during start-up ({status}); see {}",
                data_dir.join("postgres.log").display()
            );
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the private postgres did not accept connections within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!(cluster = %cluster.display(), socket = %socket.display(), address = %tcp_host.map(|h| format!("{h}:{port}")).unwrap_or_default(), "nothing answered; started a private PostgreSQL");
    // SIGINT is PostgreSQL's "fast" shutdown: no waiting for clients.
    Ok((
        Managed {
            name: "postgres",
            child,
            stop_signal: nix::sys::signal::Signal::SIGINT,
        },
        url,
    ))
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn reads_host_and_port() {
        assert_eq!(
            host_port("nats://127.0.0.1:4222", 1),
            Some(("127.0.0.1".into(), 4222))
        );
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1:5432/runledger", 1),
            Some(("127.0.0.1".into(), 5432))
        );
        assert_eq!(
            host_port("postgres://u:p@db/runledger", 5432),
            Some(("db".into(), 5432))
        );
    }
}
