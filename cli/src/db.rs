//! PostgreSQL connections for the subcommands: a pool whose sessions use the read-model schema,
//! and creating the database on first use.

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::time::Duration;
use tokio_postgres::NoTls;

pub fn config(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    url.parse()
        .with_context(|| "DATABASE_URL is not a valid PostgreSQL connection string".to_string())
}

/// How long a task waits for a free connection before it gets an error: a pool too small for
/// what uses it then fails with a message instead of hanging.
pub const POOL_WAIT: Duration = Duration::from_secs(60);

/// How long a session may sit idle inside a transaction before the server ends it. runledger
/// never waits on anything but the database inside a transaction.
pub const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(10);

/// A pool on `url` whose sessions read and write `schema`.
pub fn pool(url: &str, schema: &str, size: usize) -> anyhow::Result<Pool> {
    pool_waiting(url, schema, size, POOL_WAIT)
}

/// [`pool`] with another wait for a free connection.
pub fn pool_waiting(url: &str, schema: &str, size: usize, wait: Duration) -> anyhow::Result<Pool> {
    projector::store::migrate::check_schema_name(schema)?;
    let mut config = config(url)?;
    // A session left idle inside a transaction (its process frozen, or cut off) is ended by the
    // server, so the locks it holds (a position row, a partition's lease) cannot outlive it:
    // another instance can take the partition over.
    config.options(format!(
        "-c search_path={schema} -c idle_in_transaction_session_timeout={}",
        IDLE_IN_TRANSACTION.as_millis()
    ));
    config.application_name("runledger");
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(wait))
        .runtime(Runtime::Tokio1)
        .build()?)
}

/// One connection (its driver runs in the background).
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = config(url)?
        .connect(NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", redact(url)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// Creates the database `url` names if it does not exist, connecting to `postgres` to do it.
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
    let config = config(url)?;
    let name = config.get_dbname().unwrap_or("postgres").to_owned();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin
        .connect(NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", redact(url)))?;
    tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        let quoted = name.replace('"', "\"\"");
        match client
            .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
            .await
        {
            Ok(()) => tracing::info!(database = %name, "created database"),
            // Another process created it at the same moment.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e).with_context(|| format!("creating database {name}")),
        }
    }
    Ok(())
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_exhausted_pool_says_so_instead_of_waiting_forever() {
        let db = testsupport::TestDb::new().await.unwrap();
        let pool = pool_waiting(db.url(), "public", 1, Duration::from_millis(200)).unwrap();
        let held = pool.get().await.unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(10), pool.get()).await;
        let err = match waited {
            Err(_) => panic!("still waiting for a connection after 10 s"),
            Ok(Ok(_)) => panic!("the only connection is taken"),
            Ok(Err(e)) => e,
        };
        assert!(err.to_string().contains("waiting for a slot"), "{err}");
        drop(held);
        let _again = pool.get().await.expect("free again");
    }
}
