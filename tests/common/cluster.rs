//! The three-node loopback cluster of `deploy/nats/cluster/` for tests: nodes started from
//! those very files (ports rewritten to free loopback ones, stores to a temp dir), killed
//! with SIGKILL and restarted on the same store; stream leaders moved to one node.

use ailurus::nats_server::{free_port, NatsServer, SpawnOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The text of a file of the repository.
pub fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Replace every `from` in `text`, insisting there is one: a config that drifted away
/// from what the test rewrites must fail here, not start on fixed ports.
pub fn rewrite(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "config no longer contains {from:?}");
    text.replace(from, to)
}

/// One node of the three-node cluster: its rewritten config, ports and store survive a
/// kill, so a restart is the same node with the same data.
pub struct Node {
    /// `n1`, `n2`, `n3` (its `server_name`).
    pub name: String,
    /// The rewritten config.
    config: String,
    /// Its client port.
    port: u16,
    /// Its JetStream store (kept across restarts).
    store: PathBuf,
    /// Where its logs go, one file per start.
    logs: PathBuf,
    /// How many times it was started.
    starts: u32,
    /// The running process.
    server: Option<NatsServer>,
}

impl Node {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        self.starts += 1;
        let server = NatsServer::spawn(SpawnOptions {
            config: self.config.clone(),
            port: self.port,
            host: "127.0.0.1".into(),
            store_dir: Some(self.store.clone()),
            log_file: Some(self.logs.join(format!("{}-{}.log", self.name, self.starts))),
        })
        .unwrap_or_else(|e| panic!("{} starts: {e}", self.name));
        self.server = Some(server);
    }

    /// SIGKILL: no goodbye to the cluster or the clients.
    pub fn kill(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.kill();
        }
    }
}

/// `deploy/nats/cluster/n{1,2,3}.conf` on free loopback ports with stores under `root`.
pub fn cluster_nodes(root: &Path) -> Vec<Node> {
    let client: Vec<u16> = (0..3).map(|_| free_port().unwrap()).collect();
    let route: Vec<u16> = (0..3).map(|_| free_port().unwrap()).collect();
    (0..3)
        .map(|i| {
            let name = format!("n{}", i + 1);
            let mut text = read(&format!("deploy/nats/cluster/{name}.conf"));
            text =
                rewrite(&text, &format!("listen: 127.0.0.1:{}", 4222 + i), &format!("listen: 127.0.0.1:{}", client[i]));
            for (j, port) in route.iter().enumerate() {
                text = rewrite(&text, &format!("127.0.0.1:{}", 6222 + j), &format!("127.0.0.1:{port}"));
            }
            text = rewrite(&text, &format!("127.0.0.1:{}", 8222 + i), &format!("127.0.0.1:{}", free_port().unwrap()));
            text = rewrite(&text, &format!("127.0.0.1:{}", 9222 + i), &format!("127.0.0.1:{}", free_port().unwrap()));
            // The store is given with -sd (nats-server refuses both a flag and a config value).
            text = rewrite(&text, &format!("store_dir: \"./data/{name}\""), "");
            let store = root.join(&name);
            std::fs::create_dir_all(&store).unwrap();
            Node { name, config: text, port: client[i], store, logs: root.to_path_buf(), starts: 0, server: None }
        })
        .collect()
}

pub async fn stream_messages(js: &async_nats::jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Poll `LLM_USAGE` until it holds at least `n` records (at most `limit`); the count.
pub async fn usage_at_least(js: &async_nats::jetstream::Context, n: u64, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let have = stream_messages(js, "LLM_USAGE").await;
        if have >= n || Instant::now() > deadline {
            return have;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The leader of a stream's RAFT group, if the API answers.
pub async fn leader_of(js: &async_nats::jetstream::Context, stream: &str) -> Option<String> {
    let mut s = js.get_stream(stream).await.ok()?;
    s.info().await.ok()?.cluster.clone()?.leader
}

/// Move every stream's leader to `node` (server ≥ 2.11: stepdown with a preferred peer),
/// so killing `node` forces every election at once: the worst case for the ledger.
pub async fn lead_from(admin: &async_nats::Client, js: &async_nats::jetstream::Context, node: &str) {
    for decl in ailurus::streams::load(None).unwrap() {
        let name = decl.config.name;
        // Per stream: there are over twenty, and on a loaded machine each election takes its time.
        let deadline = Instant::now() + Duration::from_secs(30);
        while leader_of(js, &name).await.as_deref() != Some(node) {
            assert!(Instant::now() < deadline, "could not move the leader of {name} to {node}");
            let body = serde_json::json!({"placement": {"preferred": node}}).to_string();
            let _ = admin.request(format!("$JS.API.STREAM.LEADER.STEPDOWN.{name}"), body.into()).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
