//! A fresh, uniquely named PostgreSQL database per test, dropped (with `FORCE`) when the test ends.

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn admin_url() -> String {
    std::env::var("RUNLEDGER_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// A database that exists for the lifetime of this value.
pub struct TestDb {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDb {
    /// Creates `rl_test_<random>`.
    pub async fn new() -> anyhow::Result<Self> {
        let admin_url = admin_url();
        let name = format!("rl_test_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&admin_url, NoTls)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {admin_url} (is it running?)"))?;
        let conn = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating test database {name}"))?;
        drop(client);
        let _ = conn.await;
        let url = with_database(&admin_url, &name);
        Ok(Self {
            name,
            url,
            admin_url,
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection URL for it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A small pool on it.
    pub fn pool(&self) -> Pool {
        self.pool_of(8)
    }

    /// A pool of up to `size` connections on it.
    pub fn pool_of(&self, size: usize) -> Pool {
        let config: tokio_postgres::Config = self.url.parse().expect("valid test database URL");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(size)
            .build()
            .expect("pool builds")
    }

    /// A pool of two connections on it that work in `schema` (a rebuild's scratch schema).
    pub fn pool_in(&self, schema: &str) -> Pool {
        let mut config: tokio_postgres::Config = self.url.parse().expect("valid test database URL");
        config.options(format!("-c search_path={schema}"));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(2)
            .build()
            .expect("pool builds")
    }

    /// Makes PostgreSQL refuse (SQLSTATE 22023, a data exception) any comment whose body is
    /// `poison` in `schema`: a refusal no pre-check foresees.
    pub async fn refuse_poison_comments(client: &tokio_postgres::Client, schema: &str) {
        client
            .batch_execute(&format!(
                "CREATE FUNCTION {schema}.refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     IF NEW.body = 'poison' THEN
                         RAISE EXCEPTION 'poison comment' USING ERRCODE = '22023';
                     END IF;
                     RETURN NEW;
                 END $$;
                 CREATE TRIGGER refuse_poison BEFORE INSERT ON {schema}.issue_comments
                 FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_poison();"
            ))
            .await
            .expect("the poison trigger is created");
    }

    /// One direct client (its connection task runs in the background).
    pub async fn client(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }
}

/// Replaces the database name of a `postgres://` URL.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a thread with its own to finish the cleanup.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin_url, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    }
}
