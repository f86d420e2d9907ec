//! Shared test harness: a real nats-server per test on a random loopback port with a temp
//! store, in-process workers, and worker processes (for kill and drain tests).
#![allow(dead_code)]

pub mod cluster;
pub mod http;
pub mod mgmt;
pub mod procs;
pub mod upstream;

use ailurus::bus::codec::Encoding;
use ailurus::client::{Replies, Requester};
use ailurus::config::Config;
use ailurus::nats_server::{NatsServer, SpawnOptions};
use ailurus::protocol::{LLMMessage, LLMNATSRequest, Platform};
use ailurus::shutdown::Shutdown;
use async_nats::HeaderMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The ledger's usage records of `user` (in stream order), once there are at least `n`, or
/// what there is when `limit` has passed.
pub async fn usage_records(
    client: &async_nats::Client,
    user: &ailurus::bus::subjects::Token,
    n: usize,
    limit: Duration,
) -> Vec<ailurus::quota::ledger::UsageRecord> {
    let js = async_nats::jetstream::new(client.clone());
    let deadline = Instant::now() + limit;
    loop {
        let recs: Vec<_> = ailurus::quota::ledger::read_all(&js, Some(user))
            .await
            .expect("ledger")
            .into_iter()
            .filter(|r| r.kind == "usage")
            .collect();
        if recs.len() >= n || Instant::now() > deadline {
            return recs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The user's balance once every quota lease and hold is back (workers return an idle lease
/// half a second after its last request, see `quota::lease`): only then does the spent counter
/// equal what the ledger charged. Panics when holds are still open after 20 s.
pub async fn quiet_balance(
    quota: &ailurus::quota::account::QuotaStore,
    user: &ailurus::bus::subjects::Token,
) -> ailurus::quota::account::Balance {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let open = quota.holds_in_flight().await.expect("holds");
        if open == 0 {
            return quota.balance(user).await.expect("balance");
        }
        assert!(Instant::now() < deadline, "{open} quota holds still open after 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A user `user` with `units` of quota (set, not added) and a new token of theirs; returns
/// the user id and the plain token.
pub async fn funded(
    tokens: &ailurus::quota::tokens::TokenStore,
    quota: &ailurus::quota::account::QuotaStore,
    user: &str,
    units: i64,
) -> (ailurus::bus::subjects::Token, String) {
    let u = ailurus::bus::subjects::Token::new("user_id", user).expect("user id");
    let (token, _) = tokens.create(user, "test", None, vec![], None).await.expect("token");
    quota.set(&u, units, None).await.expect("set quota");
    (u, token)
}

/// The platform (subject) a client of `format` sends on, as the bridge's routes do.
pub fn platform_of(format: ailurus::formats::Format) -> Platform {
    use ailurus::formats::Format;
    match format {
        Format::AnthropicMessages => Platform::Claude,
        Format::OpenAiChat => Platform::Openai,
        Format::OpenAiResponses => Platform::Codex,
        Format::GeminiGenerate => Platform::Gemini,
    }
}

/// A nats-server plus the workers started on it. Everything stops on drop.
pub struct Stack {
    /// The server (killed on drop).
    pub server: NatsServer,
    /// A client for the test itself.
    pub client: async_nats::Client,
    /// Stops the in-process workers.
    pub shutdown: Shutdown,
    /// In-process worker tasks.
    pub workers: Vec<tokio::task::JoinHandle<()>>,
    /// Each in-process worker's own client, for per-worker statistics.
    pub worker_clients: Vec<async_nats::Client>,
}

impl Stack {
    /// A server with the default test config and no workers.
    pub async fn server_only() -> Self {
        Self::with_server(SpawnOptions::default()).await
    }

    /// A server started with `opts`.
    pub async fn with_server(opts: SpawnOptions) -> Self {
        let server = NatsServer::spawn(opts).expect("spawn nats-server (run ./deploy/setup.sh)");
        let client = ailurus::bus::connect(&server.url, "test").await.expect("connect");
        Self { server, client, shutdown: Shutdown::new(), workers: Vec::new(), worker_clients: Vec::new() }
    }

    /// A server with one in-process worker in open mode (no auth, no billing).
    pub async fn start() -> Self {
        let mut s = Self::server_only().await;
        s.add_worker(open_config()).await;
        s
    }

    /// Start an in-process worker with `config`, on its own connection.
    pub async fn add_worker(&mut self, config: Config) {
        let router = ailurus::router::Router::new(&config.routing, &config.channels).expect("router");
        self.add_routed_worker(config, Arc::new(router)).await;
    }

    /// Start an in-process worker on `router` (built from `config`), which the test keeps to
    /// read channel health.
    pub async fn add_routed_worker(&mut self, config: Config, router: Arc<ailurus::router::Router>) {
        let client = ailurus::bus::connect(&self.server.url, "test-worker").await.expect("connect worker");
        self.worker_clients.push(client.clone());
        // `start` returns once the server holds the worker's subscriptions.
        let serving =
            ailurus::worker::start(client, &config, router, self.shutdown.clone()).await.expect("worker start");
        self.workers.push(tokio::spawn(async move { serving.run().await.expect("worker run") }));
    }

    /// Apply the embedded streams.
    pub async fn apply_streams(&self) {
        let js = async_nats::jetstream::new(self.client.clone());
        let decls = ailurus::streams::load(None).unwrap();
        ailurus::streams::apply(&js, &decls).await.expect("apply streams");
    }

    /// A requester on the test's client.
    pub fn requester(&self) -> Requester {
        Requester::new(self.client.clone())
    }

    /// Send a seed request.
    pub async fn send(&self, req: &LLMNATSRequest, enc: Encoding) -> Replies {
        self.requester().send(req, enc, HeaderMap::new()).await.expect("send")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The default config in open auth mode (no tokens, no billing).
pub fn open_config() -> Config {
    let mut c = Config::default();
    c.auth.mode = ailurus::quota::AuthMode::Open;
    c
}

/// `config` with the built-in mock serving `mock*` names only: beside a channel (which is
/// never called) and turned on explicitly, so a model that is not `mock*` has no channel
/// (with no channels at all, the mock answers every name).
pub fn mock_names_only(mut config: Config) -> Config {
    std::env::set_var("AILURUS_TEST_UNUSED_KEY", "sk-unused");
    let channel: ailurus::channel::ChannelConfig = toml::from_str(
        "name = \"unused\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
         api_key_env = [\"AILURUS_TEST_UNUSED_KEY\"]\nmodels = [\"unused-*\"]\n",
    )
    .expect("channel");
    config.channels.push(channel);
    config.routing.builtin_mock = Some(true);
    config
}

/// A valid seed request.
pub fn request(platform: Platform, model: &str, prompt: &str, stream: bool) -> LLMNATSRequest {
    LLMNATSRequest {
        trace_id: ailurus::bus::subjects::Token::random().to_string(),
        user_id: "user_1".into(),
        session_id: None,
        platform,
        model: model.into(),
        messages: vec![LLMMessage { role: "user".into(), content: prompt.into() }],
        stream,
        metadata: None,
        max_tokens: None,
        temperature: None,
        system: None,
        token: None,
    }
}

/// An `ailurus worker` process on `url`, ready when it has logged that it serves.
pub struct WorkerProcess {
    /// The process.
    pub child: Child,
}

impl WorkerProcess {
    /// Start it and wait (at most 15 s) until it serves.
    pub fn start(url: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ailurus"))
            .arg("worker")
            .env("NATS_URL", url)
            .env("AILURUS_LOG", "info")
            .env("NO_COLOR", "1")
            .env("AILURUS__AUTH__MODE", "open")
            .env_remove("NEW_API_URL")
            .env_remove("NEW_API_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ailurus worker");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("worker serving") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(15)).expect("worker process did not start");
        Self { child }
    }

    /// Send a signal by name (`TERM`, `KILL`).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{sig}");
    }

    /// Wait for exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
