//! Private `nats-server`s: one node, or a JetStream cluster of several, on free loopback ports,
//! each with its own store and configuration file (subject mappings for partitioned streams
//! included). Nodes can be killed with SIGKILL and restarted on the same ports and store;
//! everything is killed and removed on drop, whatever happened before. The tests
//! (`testsupport`) and `runledger bench` start their servers here.

use anyhow::Context;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to serve JetStream (in a cluster: to know a meta leader).
const READY_WITHIN: Duration = Duration::from_secs(30);

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
                dir: std::env::temp_dir().join(format!("runledger-nats-{tag}-n{i}")),
                child: None,
            });
        }
        // From here on, a failure drops `cluster`, which kills what started and removes the
        // stores.
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_ready(i).await?;
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
                "cluster {{ name: runledger-local, listen: 127.0.0.1:{}, routes: [{}] }}\n",
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
                "starting nats-server (is it installed? apt-get install nats-server; the \
                 README's test command installs it)",
            )?;
        node.child = Some(child);
        Ok(())
    }

    /// Waits until node `i` answers JetStream API requests (in a cluster: once it knows a
    /// meta leader), polling until a deadline.
    async fn wait_ready(&mut self, i: usize) -> anyhow::Result<()> {
        let url = self.node_url(i);
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if serves_jetstream(&url).await {
                return Ok(());
            }
            if let Some(child) = self.nodes[i].child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    anyhow::bail!("nats-server {} exited during start-up ({status})", url);
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "nats-server {url} did not serve JetStream within {READY_WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await; // poll interval
        }
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

    /// The process ids of the nodes running now (for CPU accounting).
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
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
        self.wait_ready(i).await
    }
}

/// Whether the server at `url` answers a JetStream account info request without an error.
async fn serves_jetstream(url: &str) -> bool {
    let Ok(client) = async_nats::connect(url).await else {
        return false;
    };
    // query_account wants fields 2.9 does not send: read the reply as text.
    let Ok(reply) = client.request("$JS.API.INFO", "".into()).await else {
        return false;
    };
    let text = String::from_utf8_lossy(&reply.payload);
    text.contains("account_info_response") && !text.contains("\"error\"")
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
            let _ = std::fs::remove_dir_all(&self.nodes[i].dir);
        }
    }
}
