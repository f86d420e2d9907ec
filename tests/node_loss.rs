//! Node loss under a constant load (200 req/s), measured the way a user feels it: the three-node cluster of
//! `deploy/nats/cluster/`, two workers and two HTTP bridges on different nodes, billed requests
//! sent open loop at a fixed rate through both bridges, while each node in turn is made the
//! leader of every stream and then killed (SIGKILL) and restarted. Printed per kill: answered
//! %, the longest run of errors, p99 latency, the peak of queued ledger records. Afterwards
//! the ledger holds every answered request exactly once and `quota rebuild --dry-run` finds
//! no drift. RELIABILITY.md ("Node loss") records the figures.

mod common;
#[path = "support/grammar/mod.rs"]
mod grammar;

use ailurus::bus::ConnectAuth;
use ailurus::config::Config;
use ailurus::formats::Format;
use ailurus::nats_server::free_port;
use ailurus::quota::account::QuotaStore;
use ailurus::quota::tokens::TokenStore;
use ailurus::shutdown::Shutdown;
use common::cluster::{cluster_nodes, lead_from, Node};
use grammar::ValidateStream;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests per second, through both bridges together (`AILURUS_NODE_LOSS_RATE` overrides).
fn rate() -> u64 {
    std::env::var("AILURUS_NODE_LOSS_RATE").ok().and_then(|v| v.parse().ok()).filter(|r| *r > 0).unwrap_or(200)
}
/// How long each node stays dead.
const DEAD: Duration = Duration::from_secs(10);
/// How long after a restart before the next node is made leader and killed.
const RECOVER: Duration = Duration::from_secs(8);

/// One request of the driver.
#[derive(Debug, Clone)]
struct Shot {
    /// When it was sent, from the start of the run.
    at: Duration,
    /// How long until its answer or error.
    latency: Duration,
    /// Answered (200 with a body).
    ok: bool,
    /// Its trace id (`x-request-id`), when a worker took it.
    trace: Option<String>,
    /// Why it failed.
    error: String,
    /// Whether it was a streaming request.
    stream: bool,
    /// A stream that did not end well-formed (the OpenAI grammar): what was wrong.
    malformed: Option<String>,
}

/// A temporary directory removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Connect to one node (the client learns the others from the cluster and reconnects there).
async fn on(node: &Node, name: &str) -> async_nats::Client {
    ailurus::bus::connect_with(&node.url(), name, &ConnectAuth::default()).await.expect("connect to a node")
}

/// One billed chat request through `base`, streaming or not.
async fn shoot(web: &reqwest::Client, base: &str, token: &str, at: Duration, stream: bool) -> Shot {
    let t = Instant::now();
    let body = format!(
        r#"{{"model":"mock","max_tokens":16,"stream":{stream},"messages":[{{"role":"user","content":"still there?"}}]}}"#
    );
    let res = web
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let mut malformed = None;
    let (ok, trace, error) = match res {
        Ok(r) => {
            let status = r.status().as_u16();
            let trace = r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
            let bytes = r.bytes().await.unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if stream && status == 200 {
                // A stream ends well-formed: answered, or with the usual in-stream error.
                malformed = Format::OpenAiChat.validate_stream(&bytes).err();
            }
            let answered = if stream {
                text.contains("data: [DONE]") && !text.contains("\"error\"")
            } else {
                text.contains("choices")
            };
            if status == 200 && answered && malformed.is_none() {
                (true, trace, String::new())
            } else {
                (false, trace, format!("{status}: {}", text.chars().take(160).collect::<String>()))
            }
        }
        Err(e) => (false, None, e.to_string()),
    };
    Shot { at, latency: t.elapsed(), ok, trace, error, stream, malformed }
}

/// The `ailurus_worker_ledger_queued` gauge of a worker's `/metrics`.
async fn queued(web: &reqwest::Client, metrics: &str) -> u64 {
    let Ok(r) = web.get(format!("http://{metrics}/metrics")).send().await else { return 0 };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("ailurus_worker_ledger_queued "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Figures of the shots sent in `[from, to)`.
#[derive(Debug)]
struct Window {
    sent: usize,
    answered: usize,
    longest_errors: Duration,
    p99: Duration,
}

fn window(shots: &[Shot], from: Duration, to: Duration) -> Window {
    let inside: Vec<&Shot> = shots.iter().filter(|s| s.at >= from && s.at < to).collect();
    let answered = inside.iter().filter(|s| s.ok).count();
    let mut lat: Vec<Duration> = inside.iter().map(|s| s.latency).collect();
    lat.sort();
    let p99 = lat.get((lat.len() * 99 / 100).min(lat.len().saturating_sub(1))).copied().unwrap_or_default();
    // A run of errors: from the first failed request to the next answered one sent after it.
    let (mut longest, mut start) = (Duration::ZERO, None::<Duration>);
    for s in &inside {
        match (s.ok, start) {
            (false, None) => start = Some(s.at),
            (true, Some(b)) => {
                longest = longest.max(s.at - b);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(b) = start {
        longest = longest.max(to.min(inside.last().map_or(to, |s| s.at)) - b);
    }
    Window { sent: inside.len(), answered, longest_errors: longest, p99 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_lost_in_turn_under_constant_load_keeps_answering_and_billing_exactly() {
    tokio::time::timeout(Duration::from_secs(300), node_loss()).await.expect("node loss test timed out");
}

async fn node_loss() {
    let _ = tracing_subscriber::fmt().with_env_filter("ailurus=warn").with_test_writer().try_init();
    let root = TempDir(std::env::temp_dir().join(format!("ailurus-node-loss-{}", nuid::next())));
    std::fs::create_dir_all(&root.0).expect("temp dir");
    let mut nodes = cluster_nodes(&root.0);
    for n in &mut nodes {
        n.start();
    }
    let urls = nodes.iter().map(Node::url).collect::<Vec<_>>().join(",");
    let admin = ailurus::bus::connect_with(&urls, "admin", &ConnectAuth::default()).await.expect("connect");
    let js = async_nats::jetstream::new(admin.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while js.query_account().await.is_err() {
        assert!(Instant::now() < deadline, "JetStream cluster not ready in 30 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut decls = ailurus::streams::load(None).expect("streams");
    ailurus::streams::with_replicas(&mut decls, 3).expect("replicas");
    let deadline = Instant::now() + Duration::from_secs(40);
    while let Err(e) = ailurus::streams::apply(&js, &decls).await {
        assert!(Instant::now() < deadline, "streams apply --replicas 3: {e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let tokens = TokenStore::open(&js).await.expect("tokens");
    let quota = QuotaStore::open(admin.clone()).await.expect("quota");
    let dora = ailurus::bus::subjects::Token::new("user_id", "dora").expect("user id");
    let (token, _) = tokens.create("dora", "load", None, Vec::new(), None).await.expect("token");
    quota.set(&dora, 50_000_000, None).await.expect("fund");

    // Workers on n1 and n2, bridges on n1 and n3: every node serves something.
    let shutdown = Shutdown::new();
    let mut metrics = Vec::new();
    for i in [0, 1] {
        let addr = format!("127.0.0.1:{}", free_port().expect("port"));
        let mut config = Config::default();
        config.worker.metrics_listen = Some(addr.clone());
        let client = on(&nodes[i], &format!("worker-{i}")).await;
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = ailurus::worker::run(client, &config, stop).await {
                panic!("worker stopped: {e}");
            }
        });
        metrics.push(addr);
    }
    let mut bases = Vec::new();
    for i in [0, 2] {
        let client = on(&nodes[i], &format!("bridge-{i}")).await;
        bases.push(common::http::bridge(client, Default::default(), shutdown.clone()).await);
    }
    let web = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client");
    // Both workers answer before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(20);
    for base in &bases {
        while !shoot(&web, base, &token, Duration::ZERO, false).await.ok {
            assert!(Instant::now() < deadline, "no answer through {base}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // The driver: one request every 1/RATE s, alternating bridges, never waiting for answers.
    let shots: Arc<Mutex<Vec<Shot>>> = Arc::default();
    let peak: Arc<Mutex<BTreeMap<usize, u64>>> = Arc::default();
    let running = Shutdown::new();
    let started = Instant::now();
    let driver = {
        let (shots, running, web, bases, token) =
            (shots.clone(), running.clone(), web.clone(), bases.clone(), token.clone());
        tokio::spawn(async move {
            let tasks = tokio_util::task::TaskTracker::new();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate()));
            let mut n = 0usize;
            loop {
                tokio::select! {
                    _ = running.wait() => break,
                    _ = tick.tick() => {
                        let (shots, web, base, token) = (shots.clone(), web.clone(), bases[n % 2].clone(), token.clone());
                        n += 1;
                        let at = started.elapsed();
                        // Every fourth request streams.
                        let stream = n.is_multiple_of(4);
                        tasks.spawn(async move {
                            let s = shoot(&web, &base, &token, at, stream).await;
                            shots.lock().unwrap_or_else(|p| p.into_inner()).push(s);
                        });
                    }
                }
            }
            tasks.close();
            tasks.wait().await;
        })
    };
    let sampler = {
        let (peak, running, web, metrics) = (peak.clone(), running.clone(), web.clone(), metrics.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = running.wait() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        for (i, m) in metrics.iter().enumerate() {
                            let q = queued(&web, m).await;
                            let mut p = peak.lock().unwrap_or_else(|p| p.into_inner());
                            let e = p.entry(i).or_default();
                            *e = (*e).max(q);
                        }
                    }
                }
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut kills = Vec::new();
    for node in nodes.iter_mut() {
        let name = node.name.clone();
        lead_from(&admin, &js, &name).await;
        let at = started.elapsed();
        eprintln!("{at:?}: killing {name}, the leader of every stream");
        node.kill();
        tokio::time::sleep(DEAD).await;
        eprintln!("{:?}: restarting {name}", started.elapsed());
        node.start();
        kills.push((name, at));
        tokio::time::sleep(RECOVER).await;
    }
    running.trigger();
    driver.await.expect("driver");
    let _ = sampler.await;
    let shots = shots.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut shots = shots;
    shots.sort_by_key(|s| s.at);

    let whole = window(&shots, Duration::ZERO, started.elapsed());
    let peaks = peak.lock().unwrap_or_else(|p| p.into_inner()).clone();
    println!(
        "node loss at {} req/s: {} sent, {} answered ({:.2} %), longest error run {:?}, p99 {:?}; queued ledger records peak {:?}",
        rate(),
        whole.sent,
        whole.answered,
        100.0 * whole.answered as f64 / whole.sent.max(1) as f64,
        whole.longest_errors,
        whole.p99,
        peaks
    );
    let mut worst = Duration::ZERO;
    for (name, at) in &kills {
        let w = window(&shots, *at, *at + DEAD);
        println!(
            "  {name} killed: {} sent, {} answered ({:.2} %), longest error run {:?}, p99 {:?}",
            w.sent,
            w.answered,
            100.0 * w.answered as f64 / w.sent.max(1) as f64,
            w.longest_errors,
            w.p99
        );
        worst = worst.max(w.longest_errors);
    }
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for s in shots.iter().filter(|s| !s.ok) {
        *reasons.entry(s.error.chars().take(90).collect()).or_default() += 1;
    }
    for (r, n) in &reasons {
        println!("  {n} × {r}");
    }

    // Streams end well-formed, answered or with the usual in-stream error.
    let streams = shots.iter().filter(|s| s.stream).count();
    let malformed: Vec<&String> = shots.iter().filter_map(|s| s.malformed.as_ref()).collect();
    println!(
        "  streams: {streams} sent, {} answered, {} malformed",
        shots.iter().filter(|s| s.stream && s.ok).count(),
        malformed.len()
    );
    assert!(malformed.is_empty(), "streams that did not end well-formed: {malformed:?}");

    // Nothing billed twice, nothing answered unbilled, no drift.
    let answered: Vec<&str> = shots.iter().filter(|s| s.ok).filter_map(|s| s.trace.as_deref()).collect();
    let bal = common::quiet_balance(&quota, &dora).await;
    let recs = common::usage_records(&admin, &dora, answered.len(), Duration::from_secs(60)).await;
    let mut by_trace: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for r in &recs {
        by_trace.entry(r.trace_id.as_str()).or_default().push(r.quota);
    }
    let missing = answered.iter().filter(|t| !by_trace.contains_key(**t)).count();
    let twice = by_trace.values().filter(|q| q.iter().filter(|u| **u > 0).count() > 1).count();
    assert_eq!(twice, 0, "requests billed twice");
    assert_eq!(missing, 0, "{missing} answered requests have no ledger record");
    assert_eq!(bal.used, recs.iter().map(|r| r.quota).sum::<i64>(), "the counter holds the ledger's sum");
    let (_, drifts) = ailurus::quota::ledger::rebuild(&quota, true).await.expect("rebuild");
    assert!(drifts.is_empty(), "drift after node loss: {drifts:?}");

    // What the service promises through an election (RELIABILITY.md, "Node loss"; measured
    // at 200 req/s: 99.91 % overall, 99.95 / 99.85 / 99.70 % per kill, error runs under 40 ms).
    // The share bound leaves room for a loaded CI machine; the target is 99.9 % and 1 s.
    let share = whole.answered as f64 / whole.sent.max(1) as f64;
    assert!(share >= 0.97, "answered {:.2} % of requests", share * 100.0);
    assert!(worst < Duration::from_secs(1), "an error run of {worst:?} during a node loss");
    shutdown.trigger();
}
