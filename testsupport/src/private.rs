//! Private `nats-server`s for tests that need their own: one node, or a JetStream cluster of
//! several on free loopback ports, each with its own store and configuration file (subject
//! mappings for partitioned streams included). Nodes can be killed with SIGKILL and restarted on
//! the same ports and store; everything is killed and removed on drop.

use anyhow::Context;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One node of a private server or cluster.
struct Node {
    name: String,
    port: u16,
    route_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// Private nats-servers: a single one, or a cluster.
pub struct PrivateNats {
    nodes: Vec<Node>,
    /// `mappings = { ... }` entries, source → destination.
    mappings: Vec<(String, String)>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl PrivateNats {
    /// `nodes` servers (one: no cluster) with these subject mappings, ready for JetStream.
    pub async fn start(nodes: usize, mappings: &[(String, String)]) -> anyhow::Result<Self> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let mut cluster = Self {
            nodes: Vec::new(),
            mappings: mappings.to_vec(),
        };
        for i in 0..nodes.max(1) {
            cluster.nodes.push(Node {
                name: format!("n{i}"),
                port: free_port()?,
                route_port: free_port()?,
                dir: std::env::temp_dir().join(format!("rltest-nats-{tag}-n{i}")),
                child: None,
            });
        }
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_ready(i).await;
        }
        Ok(cluster)
    }

    fn config(&self, i: usize) -> String {
        let node = &self.nodes[i];
        let mut conf = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{port}\njetstream {{ store_dir: \"{store}\" }}\n",
            name = node.name,
            port = node.port,
            store = node.dir.join("store").display()
        );
        if self.nodes.len() > 1 {
            let routes: Vec<String> = self
                .nodes
                .iter()
                .map(|n| format!("nats-route://127.0.0.1:{}", n.route_port))
                .collect();
            conf.push_str(&format!(
                "cluster {{ name: rltest, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                node.route_port,
                routes.join(", ")
            ));
        }
        if !self.mappings.is_empty() {
            conf.push_str("mappings = {\n");
            for (source, destination) in &self.mappings {
                conf.push_str(&format!("  \"{source}\": \"{destination}\"\n"));
            }
            conf.push_str("}\n");
        }
        conf
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let config = self.config(i);
        let node = &mut self.nodes[i];
        std::fs::create_dir_all(&node.dir)?;
        let path = node.dir.join("server.conf");
        std::fs::write(&path, config)?;
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(
                "starting nats-server (is it installed? the README's test command installs it)",
            )?;
        node.child = Some(child);
        Ok(())
    }

    /// Waits until node `i` answers JetStream API requests (in a cluster: once it knows a
    /// meta leader).
    async fn wait_ready(&self, i: usize) {
        let url = self.node_url(i);
        crate::eventually(
            Duration::from_secs(30),
            "a private nats-server to serve JetStream",
            || {
                let url = url.clone();
                async move {
                    let client = async_nats::connect(&url).await.ok()?;
                    // query_account wants fields 2.9 does not send: read the reply as text.
                    let reply = client.request("$JS.API.INFO", "".into()).await.ok()?;
                    let text = String::from_utf8_lossy(&reply.payload);
                    (text.contains("account_info_response") && !text.contains("\"error\""))
                        .then_some(())
                }
            },
        )
        .await;
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are none (never).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every node's URL, comma-separated (what `NATS_URL` takes).
    pub fn url(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.node_url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s URL.
    pub fn node_url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// Node `i`'s server name.
    pub fn node_name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The node whose server name is `name`.
    pub fn node_named(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Kills node `i` (SIGKILL), keeping its store.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on the same ports and store, and waits until it serves JetStream.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i)?;
        self.wait_ready(i).await;
        Ok(())
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
            let _ = std::fs::remove_dir_all(&self.nodes[i].dir);
        }
    }
}

/// A private single `nats-server -js` on a free loopback port with its own store; killed on drop.
pub struct NatsServer(PrivateNats);

impl NatsServer {
    pub async fn start() -> anyhow::Result<Self> {
        Ok(Self(PrivateNats::start(1, &[]).await?))
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
