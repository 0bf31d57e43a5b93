//! A private single `nats-server` for tests that stop and restart their server; clusters and
//! mapped servers come from [`crate::PrivateNats`] (the `localnats` crate).

use localnats::PrivateNats;

/// A private single `nats-server -js` on a free loopback port with its own store; killed on drop.
pub struct NatsServer(PrivateNats);

impl NatsServer {
    pub async fn start() -> anyhow::Result<Self> {
        Ok(Self(PrivateNats::start(1, &[]).await?))
    }

    /// One that maps `subjects`' partitions (a plain one without partitions), as every node
    /// serving a partitioned stream must; the mapping survives [`NatsServer::restart`].
    pub async fn mapping(subjects: &events::Subjects) -> anyhow::Result<Self> {
        let mappings: Vec<(String, String)> = subjects.mapping().into_iter().collect();
        Ok(Self(PrivateNats::start(1, &mappings).await?))
    }

    pub fn url(&self) -> String {
        self.0.node_url(0)
    }

    /// Stops the server (kill -9) without removing its store.
    pub fn stop(&mut self) {
        self.0.kill(0);
    }

    /// Starts it again on the same port and store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.0.restart(0).await
    }
}
