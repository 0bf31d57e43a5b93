//! A private PostgreSQL cluster for tests that need to stop it, kill it or fill its disk: its own
//! data directory (optionally on a small tmpfs of its own, with the write-ahead log outside it so
//! a full disk fails writes to tables, not the log), a free loopback port, trust auth. Stopped,
//! unmounted and removed on drop. As root (CI) the server runs as the `postgres` user.

use anyhow::{bail, Context};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private PostgreSQL server.
pub struct PrivatePostgres {
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    child: Option<Child>,
    /// The data directory is a tmpfs mount of this many MiB.
    tmpfs_mib: Option<u64>,
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context(
            "PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)",
        )?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .context("no PostgreSQL version under /usr/lib/postgresql")
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// `binary args...`, as the `postgres` user when running as root.
fn command(binary: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(binary);
        c
    } else {
        Command::new(binary)
    }
}

fn chown_postgres(path: &Path) -> anyhow::Result<()> {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()?;
        anyhow::ensure!(status.success(), "chown postgres {}", path.display());
    }
    Ok(())
}

impl PrivatePostgres {
    /// A cluster on local disk.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None).await
    }

    /// A cluster whose data directory is a tmpfs of `mib` MiB (root only), so a test can fill
    /// its disk with [`PrivatePostgres::fill_disk`].
    pub async fn on_small_disk(mib: u64) -> anyhow::Result<Self> {
        Self::start_with(Some(mib)).await
    }

    async fn start_with(tmpfs_mib: Option<u64>) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let dir = std::env::temp_dir().join(format!("rltest-pg-{}", uuid::Uuid::new_v4().simple()));
        let data = dir.join("data");
        std::fs::create_dir_all(&data)?;
        let mut pg = Self {
            dir: dir.clone(),
            data: data.clone(),
            port: TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
            child: None,
            tmpfs_mib: None,
        };
        if let Some(mib) = tmpfs_mib {
            anyhow::ensure!(
                is_root(),
                "a PostgreSQL on a small disk mounts a tmpfs: run the tests as root"
            );
            let status = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                .arg(&data)
                .status()
                .context("mount -t tmpfs")?;
            anyhow::ensure!(status.success(), "mounting a {mib} MiB tmpfs failed");
            pg.tmpfs_mib = Some(mib);
        }
        chown_postgres(&dir)?;
        let output = command(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .arg("--waldir")
            .arg(dir.join("wal"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .output()
            .context("running initdb")?;
        if !output.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        pg.spawn()?;
        pg.wait_ready().await?;
        Ok(pg)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))?;
        chown_postgres(&self.dir.join("postgres.log"))?;
        let child = command(&bin_dir()?.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "fsync=off", "-c", "max_connections=100"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting postgres")?;
        self.child = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = crate::Deadline::after(Duration::from_secs(30));
        loop {
            if let Ok((client, conn)) =
                tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await
            {
                let conn = tokio::spawn(conn);
                let ok = client.simple_query("SELECT 1").await.is_ok();
                drop(client);
                let _ = conn.await;
                if ok {
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "postgres exited ({status}); see {}",
                        self.log_path().display()
                    );
                }
            }
            if deadline.passed() {
                bail!("postgres did not accept connections within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // poll interval
        }
    }

    /// `postgres://` URL of `database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// Creates `name`.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<()> {
        let (client, conn) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await?;
        let conn = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        drop(client);
        let _ = conn.await;
        Ok(())
    }

    /// Stops the server the way `pg_ctl stop -m immediate` does (SIGQUIT: no checkpoint, crash
    /// recovery at the next start) and waits for it to be gone.
    pub fn stop_immediate(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The postmaster is the child of `runuser` when running as root: signal by pid file.
            let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
            match pid {
                Some(pid) => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGQUIT,
                    );
                }
                None => {
                    let _ = child.kill();
                }
            }
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_ready().await
    }

    /// Fills the data directory's tmpfs to the last byte; returns the filler, whose removal frees
    /// the space again.
    pub fn fill_disk(&self) -> anyhow::Result<PathBuf> {
        anyhow::ensure!(self.tmpfs_mib.is_some(), "fill_disk needs on_small_disk");
        let filler = self.data.join("rltest-filler");
        let mut file = std::fs::File::create(&filler)?;
        let block = vec![0u8; 1 << 20];
        loop {
            match std::io::Write::write_all(&mut file, &block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => return Err(e.into()),
            }
        }
        // The last partial block, byte by byte would be slow: a smaller size fills the rest.
        let small = vec![0u8; 4096];
        while std::io::Write::write_all(&mut file, &small).is_ok() {}
        Ok(filler)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop_immediate();
        if self.tmpfs_mib.is_some() {
            let _ = Command::new("umount").arg(&self.data).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
