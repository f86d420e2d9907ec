//! `ailurus-bench`: the whole benchmark in one process (run it through `bench/run.sh`).
//!
//! Starts nats-server (streams applied, as `ailurus up` does), the fast mock upstream, an
//! `ailurus worker` and an `ailurus bridge` (the release binaries next to this one, with
//! `[[channels]]` pointing at the mock) and, when installed, the LiteLLM proxy on the same
//! mock; drives fixed-rate open-loop load; prints every figure next to the same load sent
//! straight to the mock, so the table shows what the gateway adds. Everything it starts is
//! killed when it ends (or fails).
//!
//! ```text
//! ailurus-bench [--phase-ms 3000] [--out FILE] [--no-litellm] [--litellm PATH] [--driver-threads 1]
//! ```

mod jetstream;
mod load;
mod stats;
mod telemetry;

use ailurus::bus::codec::Encoding;
use ailurus::bus::headers::ReplyKind;
use ailurus::client::Requester;
use ailurus::protocol::{LLMMessage, LLMNATSRequest, Platform};
use bytes::Bytes;
use load::{Outcome, RateOpts, Target};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One LiteLLM rate: (req/s, direct-to-mock latencies at that rate, LiteLLM outcome).
type LiteRow = (f64, hdrhistogram::Histogram<u64>, Outcome);

/// Command-line settings.
#[derive(Debug, Clone)]
struct Args {
    phase: Duration,
    out: Option<PathBuf>,
    litellm: Option<PathBuf>,
    driver_threads: usize,
    /// Skip the highest-rate search and the 10,000-stream memory phase.
    quick: bool,
    /// Phases to run (all when empty): fixed, shapes, stream, native, max, mem, telemetry,
    /// jetstream, quota, stats, stats1m, litellm.
    only: Vec<String>,
    /// Rates of the fixed-rate phase.
    rates: Vec<f64>,
    /// The `ailurus` binary (default: next to this one).
    ailurus: Option<PathBuf>,
}

impl Args {
    fn runs(&self, phase: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == phase)
    }
}

fn parse_args() -> Args {
    let mut a = Args {
        phase: Duration::from_millis(3000),
        out: None,
        litellm: Some(PathBuf::from(".tools/litellm-venv/bin/litellm")),
        driver_threads: 1,
        quick: false,
        only: Vec::new(),
        rates: vec![100.0, 200.0, 500.0, 1000.0, 2000.0, 4000.0],
        ailurus: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--phase-ms" => a.phase = Duration::from_millis(it.next().and_then(|v| v.parse().ok()).unwrap_or(3000)),
            "--out" => a.out = it.next().map(PathBuf::from),
            "--no-litellm" => a.litellm = None,
            "--litellm" => a.litellm = it.next().map(PathBuf::from),
            "--driver-threads" => a.driver_threads = it.next().and_then(|v| v.parse().ok()).unwrap_or(1),
            "--quick" => a.quick = true,
            "--ailurus" => a.ailurus = it.next().map(PathBuf::from),
            "--rates" => {
                a.rates = it.next().map(|v| v.split(',').filter_map(|r| r.parse().ok()).collect()).unwrap_or_default()
            }
            "--only" => a.only = it.next().map(|v| v.split(',').map(str::to_string).collect()).unwrap_or_default(),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    a
}

/// A child process killed (with its process group) on drop.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command) -> Result<Self, String> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let child = cmd.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Self { child, name })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Its process group too (LiteLLM's workers are children of the process we started),
        // each member by its own id.
        let me = self.child.id();
        for pid in group_members(me) {
            if pid > 1 && pid != me && pid != std::process::id() {
                let _ = Command::new("kill").arg("-KILL").arg("--").arg(pid.to_string()).stderr(Stdio::null()).status();
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("stopped {}", self.name);
    }
}

/// Processes whose process group is `pgid` (from /proc/<pid>/stat).
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|s| {
                // Fields after the command (which may hold spaces) start after the last ')'.
                s.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok())
                    == Some(pgid)
            })
        })
        .collect()
}

/// CPU time (user + system) of a process and its threads, clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After the command: state is field 3, utime 14 and stime 15 (1-based).
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// CPU ticks of several processes.
fn cpu_of(pids: &[u32]) -> Vec<u64> {
    pids.iter().map(|p| cpu_ticks(*p)).collect()
}

/// Microseconds of CPU per answered request, from ticks before and after.
fn cpu_us_per_req(before: &[u64], after: &[u64], answered: u64) -> Vec<f64> {
    before.iter().zip(after).map(|(b, a)| (a - b) as f64 * 10_000.0 / answered.max(1) as f64).collect()
}

/// `gateway_overhead_seconds` (sum, count) over all labels, from the worker's /metrics.
async fn worker_overhead(addr: SocketAddr) -> Option<(f64, f64)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nhost: 127.0.0.1\r\n\r\n").await.ok()?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut text)).await.ok()?.ok()?;
    let total = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    };
    Some((total("gateway_overhead_seconds_sum"), total("gateway_overhead_seconds_count")))
}

/// VmRSS of a process, kB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// `BENCH_MEM_HOOK`, when set: a shell command run while the idle streams are held, with
/// `WORKER_PID` and `BRIDGE_PID` set (e.g. a heap profiler's snapshot:
/// `vgdb --pid=$WORKER_PID detailed_snapshot /tmp/w.massif` with `--ailurus` a wrapper that
/// runs the worker under `valgrind --tool=massif`).
fn mem_hook(worker: u32, bridge: u32) {
    if let Ok(hook) = std::env::var("BENCH_MEM_HOOK") {
        let status = Command::new("sh")
            .arg("-c")
            .arg(&hook)
            .env("WORKER_PID", worker.to_string())
            .env("BRIDGE_PID", bridge.to_string())
            .status();
        eprintln!("  BENCH_MEM_HOOK: {status:?}");
    }
}

/// A free loopback port below the ephemeral range (10,000 client connections use that).
fn free_port() -> u16 {
    ailurus::nats_server::free_port().unwrap_or(0)
}

fn load_avg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<u64>().ok()))
        .map_or(String::new(), |kb| format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0));
    let n = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{n} CPUs ({cpu}), {mem} memory")
}

/// Milliseconds with three decimals.
fn ms(ns: f64) -> String {
    format!("{:.3}", ns / 1e6)
}

fn pct(o: &Outcome, q: f64) -> f64 {
    o.latency.value_at_quantile(q) as f64
}

/// `p50 / p99 / p99.9` of a histogram, ms.
fn triple(h: &hdrhistogram::Histogram<u64>) -> String {
    if h.is_empty() {
        return "–".into();
    }
    format!(
        "{} / {} / {}",
        ms(h.value_at_quantile(0.5) as f64),
        ms(h.value_at_quantile(0.99) as f64),
        ms(h.value_at_quantile(0.999) as f64)
    )
}

/// Added `p50 / p99 / p99.9`, ms: gateway percentile minus direct percentile.
fn added(g: &hdrhistogram::Histogram<u64>, d: &hdrhistogram::Histogram<u64>) -> String {
    if g.is_empty() || d.is_empty() {
        return "–".into();
    }
    let a = |q: f64| ms(g.value_at_quantile(q) as f64 - d.value_at_quantile(q) as f64);
    format!("{} / {} / {}", a(0.5), a(0.99), a(0.999))
}

fn errs(o: &Outcome) -> String {
    if o.errors == 0 {
        "0".into()
    } else {
        format!("{} ({:.2}%)", o.errors, o.error_rate() * 100.0)
    }
}

fn log_outcome(label: &str, rate: f64, o: &Outcome) {
    eprintln!(
        "  {label:<28} {rate:>6.0}/s  ok {:>6}  err {:>5}  thr {:>7.0}/s  p50 {} p99 {} p99.9 {} ms{}",
        o.ok,
        o.errors,
        o.throughput(),
        ms(pct(o, 0.5)),
        ms(pct(o, 0.99)),
        ms(pct(o, 0.999)),
        o.first_error.as_ref().map_or(String::new(), |e| format!("  [{e}]"))
    );
}

/// Everything the benchmark started.
struct Stack {
    _nats: ailurus::nats_server::NatsServer,
    nats_url: String,
    nats_pid: u32,
    _mock: Proc,
    mock_addr: SocketAddr,
    worker: Option<Proc>,
    bridge: Option<Proc>,
    bridge_addr: SocketAddr,
    metrics_addr: SocketAddr,
    config: PathBuf,
    bin: PathBuf,
    _dir: TempDir,
}

impl Stack {
    /// Stop the worker and the bridge and start fresh ones in auth `mode`; ready when a
    /// request (with `token`) goes through.
    async fn restart(&mut self, mode: &str, token: Option<&str>) -> Result<(), String> {
        self.restart_with(mode, token, &[]).await
    }

    /// [`Stack::restart`] with extra environment for the worker.
    async fn restart_with(&mut self, mode: &str, token: Option<&str>, env: &[(&str, &str)]) -> Result<(), String> {
        self.worker = None;
        self.bridge = None;
        let mut worker = ailurus_cmd(&self.bin, &self.config, &self.nats_url, mode);
        worker.envs(env.iter().copied());
        let w = Proc::spawn("ailurus worker", worker.arg("worker"))?;
        let b =
            Proc::spawn("ailurus bridge", ailurus_cmd(&self.bin, &self.config, &self.nats_url, mode).arg("bridge"))?;
        self.worker = Some(w);
        self.bridge = Some(b);
        wait_ready(&openai_target(self.bridge_addr, "bench", false, token), Duration::from_secs(20)).await
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config_text(nats_url: &str, mock: SocketAddr, bridge: SocketAddr, metrics: SocketAddr) -> String {
    format!(
        r#"[nats]
url = "{nats_url}"

[worker]
concurrency = 16384
max_queued = 16384
metrics_listen = "{metrics}"

[bridge]
listen = "{bridge}"

[routing]
builtin_mock = false

[[pricing.models]]
pattern = "bench*"
input = 1.0
output = 2.0

[[channels]]
name = "bench-openai"
kind = "openai"
base_url = "http://{mock}/v1"
api_key_env = ["BENCH_UPSTREAM_KEY"]
models = ["bench*"]
platforms = ["openai", "codex"]

[[channels]]
name = "bench-anthropic"
kind = "anthropic"
base_url = "http://{mock}"
api_key_env = ["BENCH_UPSTREAM_KEY"]
models = ["bench*"]
platforms = ["claude"]

[[channels]]
name = "bench-gemini"
kind = "gemini"
base_url = "http://{mock}"
api_key_env = ["BENCH_UPSTREAM_KEY"]
models = ["bench*"]
platforms = ["gemini"]
"#
    )
}

fn ailurus_cmd(bin: &Path, config: &Path, nats_url: &str, mode: &str) -> Command {
    let mut c = Command::new(bin);
    c.arg("--config")
        .arg(config)
        .env("NATS_URL", nats_url)
        .env("BENCH_UPSTREAM_KEY", "sk-bench")
        .env("AILURUS_LOG", "warn,async_nats=error")
        .env("AILURUS__AUTH__MODE", mode)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

fn chat_body(model: &str, stream: bool) -> Bytes {
    Bytes::from(format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"Say hello to the benchmark, briefly."}}],"max_tokens":64,"stream":{stream}}}"#
    ))
}

fn openai_target(addr: SocketAddr, model: &str, stream: bool, token: Option<&str>) -> Target {
    let mut headers = Vec::new();
    if let Some(t) = token {
        headers.push(("authorization".to_string(), format!("Bearer {t}")));
    }
    Target { addr, path: "/v1/chat/completions".into(), headers, body: chat_body(model, stream) }
}

fn anthropic_target(addr: SocketAddr) -> Target {
    Target {
        addr,
        path: "/v1/messages".into(),
        headers: vec![("anthropic-version".into(), "2023-06-01".into()), ("x-api-key".into(), "sk-bench".into())],
        body: Bytes::from_static(
            br#"{"model":"bench","max_tokens":64,"messages":[{"role":"user","content":"Say hello to the benchmark, briefly."}]}"#,
        ),
    }
}

fn gemini_target(addr: SocketAddr) -> Target {
    Target {
        addr,
        path: "/v1beta/models/bench:generateContent".into(),
        headers: vec![("x-goog-api-key".into(), "sk-bench".into())],
        body: Bytes::from_static(
            br#"{"contents":[{"role":"user","parts":[{"text":"Say hello to the benchmark, briefly."}]}]}"#,
        ),
    }
}

/// Wait until `t` answers 200 (bounded).
async fn wait_ready(t: &Target, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < deadline {
        let o = load::run_rate(
            t,
            RateOpts {
                rate: 10.0,
                duration: Duration::from_millis(100),
                stream: false,
                max_inflight: 10,
                timeout: Duration::from_secs(3),
            },
        )
        .await;
        if o.ok > 0 && o.errors == 0 {
            return Ok(());
        }
        last = o.first_error.unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!("{}{} not ready: {last}", t.addr, t.path))
}

fn opts(rate: f64, duration: Duration) -> RateOpts {
    RateOpts { rate, duration, stream: false, max_inflight: 4096, timeout: Duration::from_secs(10) }
}

async fn rate_run(label: &str, t: &Target, o: RateOpts) -> Outcome {
    let out = load::run_rate(t, o).await;
    log_outcome(label, o.rate, &out);
    tokio::time::sleep(Duration::from_millis(300)).await;
    out
}

/// NATS-native requests (no bridge): `Requester` from `ailurus::client`, seed JSON or
/// MessagePack, fixed rate.
async fn nats_run(label: &str, req: &Requester, enc: Encoding, o: RateOpts) -> Outcome {
    let out = load::run_generic(o, |rec| {
        let req = req.clone();
        async move {
            let t0 = Instant::now();
            let seed = LLMNATSRequest {
                trace_id: ailurus::bus::subjects::Token::random().to_string(),
                user_id: "bench".into(),
                session_id: None,
                platform: Platform::Openai,
                model: "bench".into(),
                messages: vec![LLMMessage {
                    role: "user".into(),
                    content: "Say hello to the benchmark, briefly.".into(),
                }],
                stream: false,
                metadata: None,
                max_tokens: Some(64),
                temperature: None,
                system: None,
                token: None,
            };
            let fut = async {
                let mut replies =
                    req.send(&seed, enc, async_nats::HeaderMap::new()).await.map_err(|e| e.to_string())?;
                loop {
                    match replies.next().await {
                        Some(Ok(r)) if r.kind == ReplyKind::Done => return Ok(()),
                        Some(Ok(r)) if r.kind == ReplyKind::Error => {
                            return Err(format!("error reply {:?}: {}", r.status, String::from_utf8_lossy(&r.payload)))
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(e.to_string()),
                        None => return Err("replies ended".into()),
                    }
                }
            };
            match tokio::time::timeout(o.timeout, fut).await {
                Ok(Ok(())) => {
                    load::record_latency(&rec, t0.elapsed());
                    Ok(())
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err("timeout".into()),
            }
        }
    })
    .await;
    log_outcome(label, o.rate, &out);
    tokio::time::sleep(Duration::from_millis(300)).await;
    out
}

/// Highest rate in `ladder` held (< 0.1% errors, answers keep pace), stopping at the first
/// rate that is not. Returns the held rate and its outcome.
async fn max_rate(label: &str, t: &Target, ladder: &[f64], phase: Duration) -> (f64, Option<Outcome>) {
    let mut best = (0.0, None);
    for &r in ladder {
        let o = rate_run(label, t, opts(r, phase)).await;
        if !o.held(r) {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            break;
        }
        best = (r, Some(o));
    }
    best
}

async fn start_stack(bin: &Path, mock_bin: &Path) -> Result<Stack, String> {
    let dir = std::env::temp_dir().join(format!("ailurus-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dir = TempDir(dir);
    let nats = ailurus::nats_server::NatsServer::spawn(ailurus::nats_server::SpawnOptions {
        config: "jetstream: {max_memory_store: 2GB}\nmax_payload: 40MB\n".into(),
        store_dir: Some(dir.0.join("nats")),
        ..Default::default()
    })
    .map_err(|e| format!("nats-server: {e}"))?;
    let nats_url = nats.url.clone();
    let client = ailurus::bus::connect(&nats_url, "bench-setup").await.map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client.clone());
    let mut decls = ailurus::streams::load(None).map_err(|e| e.to_string())?;
    if std::env::var("BENCH_AUDIT").as_deref() == Ok("memory") {
        // The audit trail as it was before it moved to file storage (issue 17 point 6): a
        // memory stream kept one hour, to measure what the move costs.
        for d in decls.iter_mut().filter(|d| d.config.name == ailurus::streams::AUDIT_STREAM) {
            d.config.storage = async_nats::jetstream::stream::StorageType::Memory;
            d.config.max_age = Duration::from_secs(3600);
            d.config.max_bytes = -1;
            if let serde_json::Value::Object(map) = &mut d.raw {
                map.insert("storage".into(), "memory".into());
                map.insert("max_age".into(), serde_json::Value::from(3_600_000_000_000i64));
                map.insert("max_bytes".into(), serde_json::Value::from(-1));
            }
        }
        eprintln!("audit trail: memory, 1 h (BENCH_AUDIT=memory)");
    }
    ailurus::streams::apply(&js, &decls).await.map_err(|e| e.to_string())?;

    let mock_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().map_err(|e| format!("{e}"))?;
    let mock = Proc::spawn(
        "mock-upstream",
        Command::new(mock_bin)
            .arg("--listen")
            .arg(mock_addr.to_string())
            .arg("--threads")
            .arg("2")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let bridge_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().map_err(|e| format!("{e}"))?;
    let config = dir.0.join("ailurus.toml");
    let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().map_err(|e| format!("{e}"))?;
    std::fs::write(&config, config_text(&nats_url, mock_addr, bridge_addr, metrics_addr)).map_err(|e| e.to_string())?;
    let worker = Proc::spawn("ailurus worker", ailurus_cmd(bin, &config, &nats_url, "open").arg("worker"))?;
    let bridge = Proc::spawn("ailurus bridge", ailurus_cmd(bin, &config, &nats_url, "open").arg("bridge"))?;
    let nats_pid = nats.pid();
    let stack = Stack {
        _nats: nats,
        nats_url,
        nats_pid,
        _mock: mock,
        mock_addr,
        worker: Some(worker),
        bridge: Some(bridge),
        bridge_addr,
        metrics_addr,
        config,
        bin: bin.to_path_buf(),
        _dir: dir,
    };
    wait_ready(&openai_target(stack.mock_addr, "bench", false, None), Duration::from_secs(10)).await?;
    wait_ready(&openai_target(stack.bridge_addr, "bench", false, None), Duration::from_secs(20)).await?;
    Ok(stack)
}

/// A funded token of user `bench` (the token-mode phases).
async fn bench_token(nats_url: &str) -> Result<String, String> {
    let client = ailurus::bus::connect(nats_url, "bench-admin").await.map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client.clone());
    let store = ailurus::quota::tokens::TokenStore::open(&js).await?;
    let (plain, _) = store.create("bench", "bench", None, Vec::new(), None).await?;
    let qs = ailurus::quota::account::QuotaStore::open(client).await?;
    let user = ailurus::bus::subjects::Token::new("user_id", "bench").map_err(|e| e.to_string())?;
    qs.topup(&user, 1_000_000_000_000).await.map_err(|e| e.message)?;
    Ok(plain)
}

/// The usage-statistics phases: `stats`, the CPU the rollups add per request (token mode at
/// 1,000 req/s with `stats_flush_ms` 0 and 1000, alternated twice); `stats1m`, a million
/// synthetic ledger records, their rebuild, and the management API's reads over them.
async fn stats_phases(st: &mut Stack, args: &Args, phase: Duration) -> Result<String, String> {
    let mut s = String::new();
    let token = bench_token(&st.nats_url).await?;
    if args.runs("stats") {
        eprintln!("usage statistics off / on (token mode, 1,000 req/s)");
        let gwt = openai_target(st.bridge_addr, "bench", false, Some(&token));
        let mut rows: Vec<(&str, Vec<f64>, Outcome)> = Vec::new();
        for flush in ["0", "1000", "0", "1000"] {
            st.restart_with("token", Some(&token), &[("AILURUS__WORKER__STATS_FLUSH_MS", flush)]).await?;
            rate_run("stats warm-up", &gwt, opts(1000.0, Duration::from_millis(1000))).await;
            let pids = [st.worker.as_ref().map_or(0, Proc::pid), st.nats_pid];
            let c0 = cpu_of(&pids);
            let o = rate_run(if flush == "0" { "statistics off" } else { "statistics on" }, &gwt, opts(1000.0, phase))
                .await;
            let c1 = cpu_of(&pids);
            rows.push((if flush == "0" { "off" } else { "on" }, cpu_us_per_req(&c0, &c1, o.ok), o));
        }
        let _ = writeln!(
            s,
            "**Usage statistics** (token mode, 1,000 req/s, `[worker] stats_flush_ms` 0 = off, 1000 = on)\n"
        );
        let _ = writeln!(
            s,
            "| run | statistics | p50 / p99 / p99.9 | errors | CPU µs/req worker | CPU µs/req nats-server |"
        );
        let _ = writeln!(s, "|---:|---|---|---|---:|---:|");
        for (i, (label, cpu, o)) in rows.iter().enumerate() {
            let c = |j: usize| cpu.get(j).map_or("–".into(), |v| format!("{v:.0}"));
            let _ = writeln!(s, "| {} | {label} | {} | {} | {} | {} |", i + 1, triple(&o.latency), errs(o), c(0), c(1));
        }
        let mean = |on: bool, j: usize| {
            let v: Vec<f64> = rows.iter().filter(|r| (r.0 == "on") == on).filter_map(|r| r.1.get(j).copied()).collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        let _ = writeln!(
            s,
            "\nStatistics add {:.1} µs of worker CPU and {:.1} µs of nats-server CPU per request (mean on − mean off).",
            mean(true, 0) - mean(false, 0),
            mean(true, 1) - mean(false, 1)
        );
        let (per, docs) = stats::aggregation_cost(200_000);
        let _ = writeln!(
            s,
            "Aggregation alone, in this process: {per:.2} µs per record (200,000 records into {docs} documents, each counted in four, every document encoded once).\n"
        );
    }
    if args.runs("stats1m") {
        let n: u64 = std::env::var("BENCH_STATS_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        eprintln!("{n} synthetic usage records over 30 days");
        st.restart("token", Some(&token)).await?;
        let client = ailurus::bus::connect(&st.nats_url, "bench-stats").await.map_err(|e| e.to_string())?;
        let js = async_nats::jetstream::new(client.clone());
        let published = stats::synthetic(&js, n, 30).await?;
        let started = Instant::now();
        let out = Command::new(&st.bin)
            .args(["--config"])
            .arg(&st.config)
            .args(["stats", "rebuild"])
            .env("NATS_URL", &st.nats_url)
            .output()
            .map_err(|e| e.to_string())?;
        let rebuilt = started.elapsed();
        if !out.status.success() {
            return Err(format!("stats rebuild: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let cred = stats::root_credential(&client).await?;
        let base = format!("http://{}", st.bridge_addr);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let month = now - 30 * 86_400;
        let week = now - 7 * 86_400;
        let reads = [
            (
                "`/api/data/stats`, 30 days (day documents)",
                format!("/api/data/stats?start_timestamp={month}&end_timestamp={now}"),
            ),
            ("`/api/data/`, 30 days (NEW-API rows)", format!("/api/data/?start_timestamp={month}&end_timestamp={now}")),
            (
                "`/api/data/stats`, 7 days (hour documents)",
                format!("/api/data/stats?start_timestamp={week}&end_timestamp={now}"),
            ),
            ("`/api/data/stats`, 24 hours", "/api/data/stats".to_string()),
            (
                "`/api/data/self/stats`-like: one user, 30 days",
                format!("/api/data/stats?username=user07&start_timestamp={month}&end_timestamp={now}"),
            ),
            ("`/api/log/`, first page (10)", "/api/log/?p=1&page_size=10".to_string()),
            ("`/api/log/?username=user07`, first page", "/api/log/?p=1&page_size=10&username=user07".to_string()),
        ];
        let _ = writeln!(
            s,
            "**Usage statistics over {n} ledger records** (30 days, 50 users, 100 tokens, 6 models, 3 channels, 3 platforms): published in {:.1} s, `ailurus stats rebuild` {:.1} s ({})\n",
            published.as_secs_f64(),
            rebuilt.as_secs_f64(),
            String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim()
        );
        let _ = writeln!(s, "| read, through the bridge (root access token) | p50 ms | p95 ms | max ms |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        for (label, path) in reads {
            let (p50, p95, max) = stats::time_get(&base, &cred, &path, 40).await?;
            let _ = writeln!(s, "| {label} | {p50:.1} | {p95:.1} | {max:.1} |");
        }
        let _ = writeln!(s);
        match console_load(&base, &cred) {
            Ok(line) => {
                let _ = writeln!(s, "The console's dashboard in Chromium over the same data (`bench/console_load.py`, five loads per range; 24h: navigation start to totals on the page; 7d, 30d: range change to totals): {line}\n");
            }
            Err(e) => {
                eprintln!("  console load not measured: {e}");
                let _ = writeln!(s, "The console's dashboard load was not measured: {e}\n");
            }
        }
    }
    Ok(s)
}

/// The dashboard's load times from `bench/console_load.py` (Chromium and Selenium, from
/// `.tools/venv` as `deploy/setup.sh` installs them).
fn console_load(base: &str, cred: &(String, String)) -> Result<String, String> {
    let python = Path::new(".tools/venv/bin/python3");
    if !python.exists() || !Path::new("/usr/bin/chromium").exists() {
        return Err("needs .tools/venv (selenium) and /usr/bin/chromium: run deploy/setup.sh".into());
    }
    let out = Command::new(python)
        .args(["bench/console_load.py", base, &cred.0, &cred.1])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("failed").to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The LiteLLM proxy on the same mock, if it is installed and starts.
async fn start_litellm(exe: &Path, mock: SocketAddr, dir: &Path) -> Result<(Proc, SocketAddr), String> {
    if !exe.exists() {
        return Err(format!("{} is not installed", exe.display()));
    }
    let port = free_port();
    let cfg = dir.join("litellm.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/bench\n      api_base: http://{mock}/v1\n      api_key: sk-bench\nlitellm_settings:\n  telemetry: false\n  drop_params: true\n  set_verbose: false\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("litellm.log")).map_err(|e| e.to_string())?;
    let proc = Proc::spawn(
        "litellm",
        Command::new(exe)
            .arg("--config")
            .arg(&cfg)
            .arg("--host")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(port.to_string())
            .arg("--num_workers")
            .arg("2")
            .env("LITELLM_LOG", "ERROR")
            .env("LITELLM_TELEMETRY", "False")
            .env("DISABLE_SCHEMA_UPDATE", "True")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log),
    )?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().map_err(|e| format!("{e}"))?;
    match wait_ready(&openai_target(addr, "bench", false, Some("sk-bench")), Duration::from_secs(120)).await {
        Ok(()) => Ok((proc, addr)),
        Err(e) => {
            let tail = std::fs::read_to_string(dir.join("litellm.log")).unwrap_or_default();
            let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            Err(format!("LiteLLM did not start: {e}; log: {tail}"))
        }
    }
}

fn version_of(exe: &Path) -> String {
    let pip = exe.with_file_name("pip");
    Command::new(pip)
        .args(["show", "litellm"])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.starts_with("Version:"))
                .map(|l| l[8..].trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

async fn bench(args: Args) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = args.ailurus.clone().unwrap_or_else(|| exe.with_file_name("ailurus"));
    if !bin.exists() {
        return Err(format!("{} not found: build with `cargo build --release --features bench`", bin.display()));
    }
    let began = Instant::now();
    let load_before = load_avg();
    eprintln!("machine: {}; load average {load_before}", machine());
    let mut st = start_stack(&bin, &exe.with_file_name("mock-upstream")).await?;
    let phase = args.phase;
    let rates = args.rates.clone();
    let direct = openai_target(st.mock_addr, "bench", false, None);
    let gw = openai_target(st.bridge_addr, "bench", false, None);

    eprintln!("warm-up");
    rate_run("direct warm-up", &direct, opts(1000.0, Duration::from_millis(1000))).await;
    rate_run("ailurus warm-up", &gw, opts(1000.0, Duration::from_millis(1000))).await;

    let mut fixed = Vec::new();
    if args.runs("fixed") {
        eprintln!("non-streaming, fixed rates");
    }
    let mut cpu = Vec::new();
    let mut overhead: Vec<(f64, f64)> = Vec::new();
    for &r in rates.iter().filter(|_| args.runs("fixed")) {
        let pids = [
            st.bridge.as_ref().map_or(0, Proc::pid),
            st.worker.as_ref().map_or(0, Proc::pid),
            st.nats_pid,
            st._mock.pid(),
            std::process::id(),
        ];
        let c0 = cpu_of(&pids);
        let d = rate_run("direct", &direct, opts(r, phase)).await;
        let c1 = cpu_of(&pids);
        let o0 = worker_overhead(st.metrics_addr).await;
        let g = rate_run("ailurus bridge", &gw, opts(r, phase)).await;
        let c2 = cpu_of(&pids);
        if let (Some(a), Some(b)) = (o0, worker_overhead(st.metrics_addr).await) {
            if b.1 > a.1 {
                overhead.push((r, (b.0 - a.0) / (b.1 - a.1) * 1e6));
            }
        }
        cpu.push((r, cpu_us_per_req(&c0, &c1, d.ok), cpu_us_per_req(&c1, &c2, g.ok)));
        fixed.push((r, d, g));
    }

    let mut shapes = Vec::new();
    let shape_targets = if args.runs("shapes") {
        eprintln!("other API shapes at 1,000 req/s");
        vec![
            ("Anthropic /v1/messages", anthropic_target(st.mock_addr), anthropic_target(st.bridge_addr)),
            ("Gemini :generateContent", gemini_target(st.mock_addr), gemini_target(st.bridge_addr)),
        ]
    } else {
        Vec::new()
    };
    for (name, d, g) in shape_targets {
        let od = rate_run(&format!("direct {name}"), &d, opts(1000.0, phase)).await;
        let og = rate_run(&format!("ailurus {name}"), &g, opts(1000.0, phase)).await;
        shapes.push((name, od, og));
    }

    let mut streaming = None;
    if args.runs("stream") {
        eprintln!("streaming");
        let stream_opts = |rate: f64| RateOpts {
            rate,
            duration: phase,
            stream: true,
            max_inflight: 4096,
            timeout: Duration::from_secs(20),
        };
        let paced_d =
            rate_run("direct 100x1ms", &openai_target(st.mock_addr, "bench-c100-i1000", true, None), stream_opts(20.0))
                .await;
        let paced_g = rate_run(
            "ailurus 100x1ms",
            &openai_target(st.bridge_addr, "bench-c100-i1000", true, None),
            stream_opts(20.0),
        )
        .await;
        let full_d = rate_run(
            "direct 100 full speed",
            &openai_target(st.mock_addr, "bench-c100", true, None),
            stream_opts(50.0),
        )
        .await;
        let full_g = rate_run(
            "ailurus 100 full speed",
            &openai_target(st.bridge_addr, "bench-c100", true, None),
            stream_opts(50.0),
        )
        .await;
        streaming = Some((paced_d, paced_g, full_d, full_g));
    }

    let client = ailurus::bus::connect(&st.nats_url, "bench-requester").await.map_err(|e| e.to_string())?;
    let requester = Requester::new(client);
    let mut native = Vec::new();
    if args.runs("native") {
        eprintln!("NATS-native (no bridge)");
    }
    for &r in [1000.0, 2000.0, 4000.0].iter().filter(|_| args.runs("native")) {
        let d = fixed.iter().find(|f| f.0 == r).map(|f| f.1.latency.clone());
        let j = nats_run("nats json", &requester, Encoding::Json, opts(r, phase)).await;
        let m = nats_run("nats msgpack", &requester, Encoding::MsgPack, opts(r, phase)).await;
        native.push((r, d, j, m));
    }

    let mut max = None;
    if !args.quick && args.runs("max") {
        eprintln!("highest rate held");
        let ladder = [4000.0, 6000.0, 8000.0, 10000.0, 12000.0, 14000.0, 16000.0, 20000.0];
        let (gmax, _) = max_rate("ailurus bridge", &gw, &ladder, phase.min(Duration::from_secs(3))).await;
        let (dmax, _) = max_rate("direct", &direct, &ladder, phase.min(Duration::from_secs(3))).await;
        max = Some((dmax, gmax));
    }

    let mut mem = Vec::new();
    let counts: &[usize] = if !args.runs("mem") {
        &[]
    } else if args.quick {
        &[1000]
    } else {
        &[1000, 10000]
    };
    if !counts.is_empty() {
        eprintln!("memory with idle streams (fresh worker and bridge for each count)");
    }
    for &n in counts {
        st.restart("open", None).await?;
        rate_run("warm-up", &gw, opts(200.0, Duration::from_millis(500))).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let wpid = st.worker.as_ref().map_or(0, Proc::pid);
        let bpid = st.bridge.as_ref().map_or(0, Proc::pid);
        let before = (rss_kb(wpid), rss_kb(bpid), rss_kb(st.nats_pid));
        let t = openai_target(st.bridge_addr, "bench-c3-h120000", true, None);
        let (ok, failed, during) = load::hold_streams(&t, n, 2000.0, || {
            mem_hook(wpid, bpid);
            (rss_kb(wpid), rss_kb(bpid), rss_kb(st.nats_pid))
        })
        .await;
        eprintln!(
            "  {n} streams: {ok} open, {failed} failed; worker {} → {} kB, bridge {} → {} kB, nats-server {} → {} kB",
            before.0, during.0, before.1, during.1, before.2, during.2
        );
        mem.push((n, ok, failed, before, during));
        // Let the cancels reach the worker and the upstream connections close.
        tokio::time::sleep(Duration::from_secs(4)).await;
    }

    let otel_rounds = 2;
    let mut otel = Vec::new();
    if args.runs("telemetry") {
        eprintln!("OpenTelemetry export off / on");
        otel = telemetry::run(&mut st, phase, otel_rounds).await?;
    }

    let mut js_rows = Vec::new();
    if args.runs("jetstream") {
        eprintln!("one JetStream write");
        js_rows = jetstream::run(&st.nats_url, st.nats_pid).await?;
    }
    let mut quota = Vec::new();
    let mut idle = None;
    if args.runs("quota") {
        eprintln!("quota accounting on (token mode)");
        let token = bench_token(&st.nats_url).await?;
        st.restart("token", Some(&token)).await?;
        let gwt = openai_target(st.bridge_addr, "bench", false, Some(&token));
        rate_run("token mode warm-up", &gwt, opts(1000.0, Duration::from_millis(1000))).await;
        for &r in &[1000.0, 2000.0] {
            let pids = [st.bridge.as_ref().map_or(0, Proc::pid), st.worker.as_ref().map_or(0, Proc::pid), st.nats_pid];
            let c0 = cpu_of(&pids);
            let o = rate_run("ailurus token mode", &gwt, opts(r, phase)).await;
            let c1 = cpu_of(&pids);
            let used = cpu_us_per_req(&c0, &c1, o.ok);
            quota.push((r, o, used));
        }
        if !st.worker.as_mut().is_some_and(Proc::alive) {
            return Err("the worker died".into());
        }
        idle = Some((rss_kb(st.worker.as_ref().map_or(0, Proc::pid)), rss_kb(st.bridge.as_ref().map_or(0, Proc::pid))));
    }
    let mut stats_report = String::new();
    if args.runs("stats") || args.runs("stats1m") {
        stats_report = stats_phases(&mut st, &args, phase).await?;
    }
    drop(st.worker.take());
    drop(st.bridge.take());

    // LiteLLM last, with the Ailurus worker stopped.
    let mut lite: Result<(String, Vec<LiteRow>), String> = Err("not run (--no-litellm)".into());
    let mut lite_cpu = Vec::new();
    if let Some(exe) = args.litellm.as_ref().filter(|_| args.runs("litellm")) {
        eprintln!("LiteLLM proxy");
        lite = match start_litellm(exe, st.mock_addr, &st._dir.0).await {
            Ok((proc, addr)) => {
                let t = openai_target(addr, "bench", false, Some("sk-bench"));
                rate_run("litellm warm-up", &t, opts(100.0, Duration::from_millis(2000))).await;
                let mut v = Vec::new();
                for &r in &[100.0, 200.0, 500.0, 1000.0, 2000.0, 4000.0] {
                    let mut o = opts(r, phase);
                    o.max_inflight = 2048;
                    let base = match fixed.iter().find(|f| f.0 == r) {
                        Some(f) => f.1.latency.clone(),
                        None => rate_run("direct", &direct, opts(r, phase)).await.latency,
                    };
                    let group = group_members(proc.pid());
                    let c0: u64 = cpu_of(&group).iter().sum();
                    let out = rate_run("litellm", &t, o).await;
                    let c1: u64 = cpu_of(&group).iter().sum();
                    lite_cpu.push((r, (c1 - c0) as f64 * 10_000.0 / out.ok.max(1) as f64));
                    let failed = !out.held(r);
                    v.push((r, base, out));
                    if failed {
                        // It is saturated: let its queue drain before the next rate.
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                }
                drop(proc);
                Ok((version_of(exe), v))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &lite {
            eprintln!("  {e}");
        }
    }
    let load_after = load_avg();

    // ---- the report ----
    let mut s = String::new();
    let _ = writeln!(s, "Machine: {}. Load average before {load_before}, after {load_after}.", machine());
    let _ = writeln!(
        s,
        "Each phase {} ms, fixed-rate open loop, {} driver thread(s); latencies in ms; \"added\" = Ailurus percentile minus the direct-to-mock percentile at the same rate. Run took {:.0} s.\n",
        phase.as_millis(),
        args.driver_threads,
        began.elapsed().as_secs_f64()
    );
    if !fixed.is_empty() {
        let _ = writeln!(s, "**Non-streaming, OpenAI Chat, client → bridge → NATS → worker → mock (auth open)**\n");
        let _ = writeln!(s, "| req/s | direct p50 / p99 / p99.9 | Ailurus p50 / p99 / p99.9 | added p50 / p99 / p99.9 | Ailurus errors |");
        let _ = writeln!(s, "|---:|---|---|---|---|");
        for (r, d, g) in &fixed {
            let _ = writeln!(
                s,
                "| {r:.0} | {} | {} | {} | {} |",
                triple(&d.latency),
                triple(&g.latency),
                added(&g.latency, &d.latency),
                errs(g)
            );
        }
        let _ = writeln!(s);
    }
    if !overhead.is_empty() {
        let _ = writeln!(s, "**Worker's own overhead** (mean of the worker's `gateway_overhead_seconds` over each phase: time from the request message to the final reply minus the upstream call)\n");
        let _ = writeln!(
            s,
            "| req/s | {} |",
            overhead.iter().map(|(r, _)| format!("{r:.0}")).collect::<Vec<_>>().join(" | ")
        );
        let _ = writeln!(s, "|---|{}", "---:|".repeat(overhead.len()));
        let _ = writeln!(
            s,
            "| mean µs | {} |\n",
            overhead.iter().map(|(_, us)| format!("{us:.0}")).collect::<Vec<_>>().join(" | ")
        );
    }
    if !fixed.is_empty() {
        // The peers' published figures beside this run's nearest ones (LiteLLM is measured
        // below, on this box).
        let added_ms = |rate: f64, q: f64| {
            fixed.iter().find(|(r, _, _)| (*r - rate).abs() < 0.5).and_then(|(_, d, g)| {
                (!g.latency.is_empty() && !d.latency.is_empty())
                    .then(|| ms(g.latency.value_at_quantile(q) as f64 - d.latency.value_at_quantile(q) as f64))
            })
        };
        let top = overhead.last().map(|(r, us)| format!("{us:.0} µs mean at {r:.0} req/s"));
        let _ = writeln!(
            s,
            "**Published peers beside this run** (their figures as published, on their hardware)
"
        );
        let _ = writeln!(s, "| peer: published figure | conditions | Ailurus, this run |");
        let _ = writeln!(s, "|---|---|---|");
        let _ = writeln!(
            s,
            "| TensorZero: 0.94 ms added p99 at 10,000 QPS | 4 vCPU, one process, no broker | added p99 {} ms at 2,000 req/s, {} ms at 1,000 (2 vCPU shared with mock and driver, NATS hop both ways) |",
            added_ms(2000.0, 0.99).unwrap_or_else(|| "–".into()),
            added_ms(1000.0, 0.99).unwrap_or_else(|| "–".into())
        );
        let _ = writeln!(
            s,
            "| Bifrost: ~11 µs overhead at 5,000 RPS | in-process overhead | worker's own overhead (`gateway_overhead_seconds`): {} |",
            top.unwrap_or_else(|| "–".into())
        );
        let _ = writeln!(
            s,
            "| LiteLLM: several ms added | Python proxy | measured on this box below; Ailurus added p50 {} ms at 100 req/s |\n",
            added_ms(100.0, 0.5).unwrap_or_else(|| "–".into())
        );
    }
    if !cpu.is_empty() {
        let _ = writeln!(s, "**CPU per request** (µs of CPU, user + system, per answered request, from /proc/<pid>/stat over each phase; 10 ms tick resolution)\n");
        let _ = writeln!(s, "| req/s | bridge | worker | nats-server | mock | load driver | Ailurus total (bridge + worker + nats) | direct: mock + driver | LiteLLM (all its processes) |");
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (r, d, g) in &cpu {
            let lc = lite_cpu.iter().find(|(lr, _)| lr == r).map_or("–".to_string(), |(_, c)| format!("{c:.0}"));
            let _ = writeln!(
                s,
                "| {r:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {lc} |",
                g[0],
                g[1],
                g[2],
                g[3],
                g[4],
                g[0] + g[1] + g[2],
                d[3] + d[4]
            );
        }
        let _ = writeln!(s);
    }
    if args.runs("litellm") {
        let _ = writeln!(s, "**LiteLLM proxy, same mock, same client, same rates**\n");
        match &lite {
            Ok((ver, v)) => {
                let _ = writeln!(s, "LiteLLM {ver} (`litellm[proxy]`, 2 uvicorn workers, no database).\n");
                let _ = writeln!(s, "| req/s | LiteLLM p50 / p99 / p99.9 | LiteLLM added p50 / p99 / p99.9 | LiteLLM errors | answered/s | added p50 / p99: LiteLLM ÷ Ailurus |");
                let _ = writeln!(s, "|---:|---|---|---|---:|---:|");
                for (r, d, o) in v {
                    let ratio = fixed.iter().find(|f| f.0 == *r).map_or("–".to_string(), |(_, fd, g)| {
                        let one = |q: f64| {
                            let la = o.latency.value_at_quantile(q) as f64 - d.value_at_quantile(q) as f64;
                            let ga = g.latency.value_at_quantile(q) as f64 - fd.latency.value_at_quantile(q) as f64;
                            if o.latency.is_empty() || ga <= 0.0 {
                                "–".to_string()
                            } else {
                                format!("{:.0}×", la / ga)
                            }
                        };
                        format!("{} / {}", one(0.5), one(0.99))
                    });
                    let _ = writeln!(
                        s,
                        "| {r:.0} | {} | {} | {} | {:.0} | {ratio} |",
                        triple(&o.latency),
                        added(&o.latency, d),
                        errs(o),
                        o.throughput()
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(s, "LiteLLM: **not measured** — {e}");
            }
        }
        let _ = writeln!(s);
    }
    if let Some((dmax, gmax)) = max {
        let lmax = lite
            .as_ref()
            .ok()
            .map(|(_, v)| v.iter().filter(|(r, _, o)| o.held(*r)).map(|(r, _, _)| *r).fold(0.0, f64::max));
        let _ = writeln!(s, "**Highest rate held** (< 0.1% errors and answers keeping pace; ladder 4k, 6k, 8k, 10k, 12k, 14k, 16k, 20k req/s)\n");
        let _ = writeln!(s, "| direct to mock | Ailurus (bridge → NATS → worker → mock) | LiteLLM (of 100 … 4k) |");
        let _ = writeln!(s, "|---:|---:|---:|");
        let _ = writeln!(
            s,
            "| {dmax:.0} req/s | {gmax:.0} req/s | {} |\n",
            lmax.map_or("–".into(), |m| if m > 0.0 { format!("{m:.0} req/s") } else { "< 100 req/s".into() })
        );
    }
    if !shapes.is_empty() {
        let _ = writeln!(s, "**Other API shapes at 1,000 req/s (pass-through)**\n");
        let _ = writeln!(
            s,
            "| API | direct p50 / p99 / p99.9 | Ailurus p50 / p99 / p99.9 | added p50 / p99 / p99.9 | errors |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|");
        for (name, d, g) in &shapes {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} |",
                triple(&d.latency),
                triple(&g.latency),
                added(&g.latency, &d.latency),
                errs(g)
            );
        }
        let _ = writeln!(s);
    }
    if let Some((paced_d, paced_g, full_d, full_g)) = &streaming {
        let _ = writeln!(s, "**Streaming, 100-chunk answers (OpenAI Chat SSE)**\n");
        let _ =
            writeln!(s, "| measure | direct p50 / p99 / p99.9 | Ailurus p50 / p99 / p99.9 | added p50 / p99 / p99.9 |");
        let _ = writeln!(s, "|---|---|---|---|");
        let _ = writeln!(
            s,
            "| time to first token (20 streams/s, chunks 1 ms apart) | {} | {} | {} |",
            triple(&paced_d.ttft),
            triple(&paced_g.ttft),
            added(&paced_g.ttft, &paced_d.ttft)
        );
        let _ = writeln!(
            s,
            "| one-way latency of each chunk (same run) | {} | {} | {} |",
            triple(&paced_d.chunk),
            triple(&paced_g.chunk),
            added(&paced_g.chunk, &paced_d.chunk)
        );
        let _ = writeln!(
            s,
            "| whole 100-chunk stream at full speed (50 streams/s) | {} | {} | {} |",
            triple(&full_d.latency),
            triple(&full_g.latency),
            added(&full_g.latency, &full_d.latency)
        );
        let per_chunk =
            (full_g.latency.value_at_quantile(0.5) as f64 - full_d.latency.value_at_quantile(0.5) as f64) / 100.0;
        let _ = writeln!(
            s,
            "\nFull speed, added time per chunk at p50: {:.1} µs. Stream errors: paced {}, full speed {}.\n",
            per_chunk / 1000.0,
            errs(paced_g),
            errs(full_g)
        );
    }
    if !mem.is_empty() {
        let _ = writeln!(s, "**Memory with idle in-flight streams** (fresh processes; each stream got its first chunk, then the upstream holds it open; VmRSS)\n");
        let _ = writeln!(s, "| streams | open | worker before → during | worker per stream | bridge before → during | bridge per stream | both per stream |");
        let _ = writeln!(s, "|---:|---:|---|---:|---|---:|---:|");
        for (n, ok, _failed, b, d) in &mem {
            let per = |x: u64, y: u64| (y as f64 - x as f64) / (*ok).max(1) as f64;
            let _ = writeln!(
                s,
                "| {n} | {ok} | {:.1} → {:.1} MB | {:.1} KB | {:.1} → {:.1} MB | {:.1} KB | {:.1} KB |",
                b.0 as f64 / 1024.0,
                d.0 as f64 / 1024.0,
                per(b.0, d.0),
                b.1 as f64 / 1024.0,
                d.1 as f64 / 1024.0,
                per(b.1, d.1),
                per(b.0, d.0) + per(b.1, d.1)
            );
        }
        let _ = writeln!(s);
    }
    if !native.is_empty() {
        let _ = writeln!(
            s,
            "**NATS-native, no bridge** (`ailurus::client::Requester`, seed `LLMNATSRequest`, non-streaming)\n"
        );
        let _ = writeln!(s, "| req/s | JSON p50 / p99 / p99.9 | JSON added | MessagePack p50 / p99 / p99.9 | MessagePack added | errors (JSON / MsgPack) |");
        let _ = writeln!(s, "|---:|---|---|---|---|---|");
        for (r, d, j, m) in &native {
            let (aj, am) = match d {
                Some(d) => (added(&j.latency, d), added(&m.latency, d)),
                None => ("–".into(), "–".into()),
            };
            let _ = writeln!(
                s,
                "| {r:.0} | {} | {aj} | {} | {am} | {} / {} |",
                triple(&j.latency),
                triple(&m.latency),
                errs(j),
                errs(m)
            );
        }
        let _ = writeln!(s);
    }
    jetstream::report(&mut s, &js_rows);
    s.push_str(&stats_report);
    telemetry::report(&mut s, &otel, otel_rounds);
    if !quota.is_empty() {
        let _ = writeln!(s, "**Quota accounting** (bridge, non-streaming): off = auth open; on = auth token (token lookup, reserve before, settle + ledger after)\n");
        let _ = writeln!(
            s,
            "| req/s | off: added p50 / p99 / p99.9 | on: added p50 / p99 / p99.9 | on: errors | CPU µs/req off → on: bridge, worker, nats-server |"
        );
        let _ = writeln!(s, "|---:|---|---|---|---|");
        for (r, o, on) in &quota {
            if let Some((_, d, g)) = fixed.iter().find(|f| f.0 == *r) {
                let off = cpu.iter().find(|c| c.0 == *r).map(|c| c.2.clone()).unwrap_or_default();
                let pair = |i: usize| match (off.get(i), on.get(i)) {
                    (Some(a), Some(b)) => format!("{a:.0} → {b:.0}"),
                    (None, Some(b)) => format!("– → {b:.0}"),
                    _ => "–".into(),
                };
                let _ = writeln!(
                    s,
                    "| {r:.0} | {} | {} | {} | {}, {}, {} |",
                    added(&g.latency, &d.latency),
                    added(&o.latency, &d.latency),
                    errs(o),
                    pair(0),
                    pair(1),
                    pair(2)
                );
            }
        }
        if let Some((w, b)) = idle {
            let _ = writeln!(
                s,
                "\nRSS after the token-mode phases: worker {:.1} MB, bridge {:.1} MB.",
                w as f64 / 1024.0,
                b as f64 / 1024.0
            );
        }
    }
    Ok(s)
}

fn main() {
    let args = parse_args();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.driver_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(1);
        }
    };
    let out = args.out.clone();
    match rt.block_on(bench(args)) {
        Ok(report) => {
            println!("{report}");
            if let Some(p) = out {
                if let Err(e) = std::fs::write(&p, &report) {
                    eprintln!("cannot write {}: {e}", p.display());
                }
            }
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            std::process::exit(1);
        }
    }
}
