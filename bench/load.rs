//! A fixed-rate, open-loop HTTP/1.1 load driver: requests are started on a schedule
//! whatever the answers do (no coordinated omission: a slow answer never delays the next
//! send), over a pool of keep-alive connections, with latencies in HDR histograms.
//!
//! Streamed answers are read frame by frame: the time to the first token is the time to the
//! first `@<ns>;` marker the mock upstream writes into each text piece, and every marker gives
//! one chunk's one-way latency (receive instant minus the instant the mock wrote it; both on
//! this machine's clock).

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where and what to send.
#[derive(Debug, Clone)]
pub struct Target {
    /// Server address.
    pub addr: SocketAddr,
    /// Request path (with query).
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Bytes,
}

/// What a run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Requests scheduled.
    pub scheduled: u64,
    /// Answered 2xx with a complete body.
    pub ok: u64,
    /// Everything else (status, I/O, timeout, over the in-flight cap).
    pub errors: u64,
    /// First error seen, for the report.
    pub first_error: Option<String>,
    /// Whole-request latency, ns.
    pub latency: Histogram<u64>,
    /// Time to the first text piece, ns (streams).
    pub ttft: Histogram<u64>,
    /// One-way latency of each text piece, ns (streams).
    pub chunk: Histogram<u64>,
    /// From the first send to the last answer.
    pub wall: Duration,
}

impl Outcome {
    /// Answers per second over the wall time.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Error share.
    pub fn error_rate(&self) -> f64 {
        if self.scheduled == 0 {
            0.0
        } else {
            self.errors as f64 / self.scheduled as f64
        }
    }

    /// Whether the rate was held: under 0.1% errors and the answers kept pace with the sends.
    pub fn held(&self, rate: f64) -> bool {
        self.error_rate() < 0.001 && self.throughput() >= rate * 0.97
    }
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 120_000_000_000, 3).unwrap_or_else(|_| Histogram::new(3).expect("histogram"))
}

/// Shared recording state of one run.
pub struct Rec {
    latency: Histogram<u64>,
    ttft: Histogram<u64>,
    chunk: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

type Conn = SendRequest<Full<Bytes>>;

/// Keep-alive connections not in use; at most `limit` in use at once (a request waits for
/// one, and the wait counts in its latency).
struct Pool {
    idle: Mutex<Vec<Conn>>,
    in_use: tokio::sync::Semaphore,
    target: Target,
    next_ip: AtomicUsize,
    /// Source addresses 127.0.0.1..=127.0.0.N, so that 10,000 sockets do not exhaust one
    /// address's ephemeral ports.
    sources: usize,
}

impl Pool {
    fn take(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if !c.is_closed() {
                return Some(c);
            }
        }
        None
    }

    fn put(&self, c: Conn) {
        if !c.is_closed() {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(c);
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let n = self.next_ip.fetch_add(1, Ordering::Relaxed) % self.sources.max(1);
        let socket = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        if self.sources > 1 {
            let ip = Ipv4Addr::new(127, 0, (n / 250) as u8, (n % 250 + 1) as u8);
            socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).map_err(|e| format!("bind: {e}"))?;
        }
        let stream = socket.connect(self.target.addr).await.map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// Find `@<digits>;` markers in `buf`, calling `f` with each; keeps an unfinished tail.
fn scan_markers(buf: &mut Vec<u8>, mut f: impl FnMut(u128)) {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'@' {
            let start = i + 1;
            let mut j = start;
            while j < buf.len() && buf[j].is_ascii_digit() {
                j += 1;
            }
            if j == buf.len() {
                // Maybe cut in the middle: keep from the '@'.
                buf.drain(..i);
                return;
            }
            if buf[j] == b';' && j > start {
                if let Some(v) = std::str::from_utf8(&buf[start..j]).ok().and_then(|s| s.parse().ok()) {
                    f(v);
                }
            }
            i = j;
        } else {
            i += 1;
        }
    }
    buf.clear();
}

/// One request on a pooled connection.
async fn one(pool: &Pool, rec: &Mutex<Rec>, stream: bool) -> Result<(), String> {
    let t0 = Instant::now();
    let _permit = pool.in_use.acquire().await.map_err(|e| e.to_string())?;
    let mut conn = match pool.take() {
        Some(c) => c,
        None => pool.connect().await?,
    };
    let t = &pool.target;
    let mut b =
        hyper::Request::post(t.path.as_str()).header("host", "127.0.0.1").header("content-type", "application/json");
    for (k, v) in &t.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let req = b.body(Full::new(t.body.clone())).map_err(|e| format!("request: {e}"))?;
    conn.ready().await.map_err(|e| format!("ready: {e}"))?;
    let resp = conn.send_request(req).await.map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut ttft = None;
    let mut chunk_lat: Vec<u64> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut err_body = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if status != 200 {
                err_body.extend_from_slice(&data);
                continue;
            }
            if stream {
                buf.extend_from_slice(&data);
                let now = now_ns();
                scan_markers(&mut buf, |sent| {
                    if ttft.is_none() {
                        ttft = Some(t0.elapsed());
                    }
                    chunk_lat.push(now.saturating_sub(sent) as u64);
                });
            }
        }
    }
    let elapsed = t0.elapsed();
    pool.put(conn);
    if status != 200 {
        return Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&err_body).chars().take(200).collect::<String>()
        ));
    }
    if stream && ttft.is_none() {
        return Err("stream without a text piece".into());
    }
    let mut r = rec.lock().unwrap_or_else(|p| p.into_inner());
    let _ = r.latency.record(elapsed.as_nanos().max(1) as u64);
    if let Some(t) = ttft {
        let _ = r.ttft.record(t.as_nanos().max(1) as u64);
    }
    for c in chunk_lat {
        let _ = r.chunk.record(c.max(1));
    }
    Ok(())
}

/// Options of a fixed-rate run.
#[derive(Debug, Clone, Copy)]
pub struct RateOpts {
    /// Requests per second.
    pub rate: f64,
    /// How long to send.
    pub duration: Duration,
    /// Read answers as streams (markers).
    pub stream: bool,
    /// Requests allowed in flight; beyond that a scheduled request counts as an error.
    pub max_inflight: usize,
    /// Per-request bound.
    pub timeout: Duration,
}

/// Connections kept per target across runs, at most this many in use at once.
const POOL_LIMIT: usize = 1024;
/// Connections opened before a first run to a target (so a run starts without a burst of
/// connects, which overflows the listen queue and costs 1 s SYN retransmits).
const POOL_WARM: usize = 128;

type PoolKey = (SocketAddr, String, Vec<(String, String)>, Bytes);

/// The pool for `target`, made (and warmed) on first use.
async fn pool_for(target: &Target) -> Arc<Pool> {
    static POOLS: std::sync::OnceLock<Mutex<std::collections::HashMap<PoolKey, Arc<Pool>>>> =
        std::sync::OnceLock::new();
    let key = (target.addr, target.path.clone(), target.headers.clone(), target.body.clone());
    let pools = POOLS.get_or_init(Default::default);
    if let Some(p) = pools.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return p.clone();
    }
    let pool = Arc::new(Pool {
        idle: Mutex::new(Vec::new()),
        in_use: tokio::sync::Semaphore::new(POOL_LIMIT),
        target: target.clone(),
        next_ip: AtomicUsize::new(0),
        sources: 1,
    });
    for _ in 0..POOL_WARM {
        match pool.connect().await {
            Ok(c) => pool.put(c),
            Err(_) => break,
        }
    }
    pools.lock().unwrap_or_else(|p| p.into_inner()).insert(key, pool.clone());
    pool
}

/// Send at a fixed rate and measure.
pub async fn run_rate(target: &Target, o: RateOpts) -> Outcome {
    let pool = pool_for(target).await;
    run_generic(o, move |rec| {
        let pool = pool.clone();
        async move {
            let r = tokio::time::timeout(o.timeout, one(&pool, &rec, o.stream)).await;
            match r {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} ms", o.timeout.as_millis())),
            }
        }
    })
    .await
}

/// The open-loop scheduler shared by HTTP and NATS runs: `send` performs one request and
/// records its own success figures into the `Rec` it is given (latency is recorded by the
/// caller for NATS, by `one` for HTTP).
pub async fn run_generic<F, Fut>(o: RateOpts, send: F) -> Outcome
where
    F: Fn(Arc<Mutex<Rec>>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let rec = Arc::new(Mutex::new(Rec {
        latency: histogram(),
        ttft: histogram(),
        chunk: histogram(),
        ok: 0,
        errors: 0,
        first_error: None,
        last_done: None,
    }));
    let inflight = Arc::new(AtomicUsize::new(0));
    let scheduled = (o.rate * o.duration.as_secs_f64()).round() as u64;
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / o.rate);
    let over_cap = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..scheduled {
        let at = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at.into()).await;
        if inflight.load(Ordering::Relaxed) >= o.max_inflight {
            over_cap.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        inflight.fetch_add(1, Ordering::Relaxed);
        let fut = send(rec.clone());
        let rec = rec.clone();
        let inflight = inflight.clone();
        tasks.spawn(async move {
            let res = fut.await;
            inflight.fetch_sub(1, Ordering::Relaxed);
            let mut r = rec.lock().unwrap_or_else(|p| p.into_inner());
            match res {
                Ok(()) => r.ok += 1,
                Err(e) => {
                    r.errors += 1;
                    if r.first_error.is_none() {
                        r.first_error = Some(e);
                    }
                }
            }
            r.last_done = Some(Instant::now());
        });
        // Reap finished tasks now and then so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let mut r = rec.lock().unwrap_or_else(|p| p.into_inner());
    let capped = over_cap.load(Ordering::Relaxed);
    if capped > 0 && r.first_error.is_none() {
        r.first_error = Some(format!("{capped} requests over the in-flight cap of {}", o.max_inflight));
    }
    let wall = r.last_done.map_or(o.duration, |d| d.duration_since(start)).max(o.duration);
    Outcome {
        scheduled,
        ok: r.ok,
        errors: r.errors + capped,
        first_error: r.first_error.take(),
        latency: std::mem::replace(&mut r.latency, histogram()),
        ttft: std::mem::replace(&mut r.ttft, histogram()),
        chunk: std::mem::replace(&mut r.chunk, histogram()),
        wall,
    }
}

/// Record one latency (NATS runs).
pub fn record_latency(rec: &Mutex<Rec>, d: Duration) {
    let mut r = rec.lock().unwrap_or_else(|p| p.into_inner());
    let _ = r.latency.record(d.as_nanos().max(1) as u64);
}

/// Open `n` streams that stay open (each on its own connection), wait until every one has
/// delivered its first text piece, call `measure`, then close them all. Returns how many
/// opened and the measurement.
pub async fn hold_streams<T>(
    target: &Target,
    n: usize,
    open_rate: f64,
    measure: impl FnOnce() -> T,
) -> (usize, usize, T) {
    let pool = Arc::new(Pool {
        idle: Mutex::new(Vec::new()),
        in_use: tokio::sync::Semaphore::new(n.max(1)),
        target: target.clone(),
        next_ip: AtomicUsize::new(0),
        sources: (n / 2000).max(1) + 1,
    });
    let ready = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / open_rate);
    for i in 0..n {
        tokio::time::sleep_until((start + interval.mul_f64(i as f64)).into()).await;
        let (pool, ready, failed, stop) = (pool.clone(), ready.clone(), failed.clone(), stop.clone());
        tasks.spawn(async move {
            let res = async {
                let mut conn = pool.connect().await?;
                let t = &pool.target;
                let mut b = hyper::Request::post(t.path.as_str())
                    .header("host", "127.0.0.1")
                    .header("content-type", "application/json");
                for (k, v) in &t.headers {
                    b = b.header(k.as_str(), v.as_str());
                }
                let req = b.body(Full::new(t.body.clone())).map_err(|e| e.to_string())?;
                conn.ready().await.map_err(|e| e.to_string())?;
                let resp = conn.send_request(req).await.map_err(|e| e.to_string())?;
                if resp.status() != 200 {
                    return Err(format!("HTTP {}", resp.status()));
                }
                let mut body = resp.into_body();
                let mut buf = Vec::new();
                let mut seen = false;
                while !seen {
                    match body.frame().await {
                        Some(Ok(f)) => {
                            if let Ok(d) = f.into_data() {
                                buf.extend_from_slice(&d);
                                scan_markers(&mut buf, |_| seen = true);
                            }
                        }
                        Some(Err(e)) => return Err(e.to_string()),
                        None => return Err("stream ended early".into()),
                    }
                }
                Ok::<_, String>((conn, body))
            };
            match tokio::time::timeout(Duration::from_secs(60), res).await {
                Ok(Ok(held)) => {
                    ready.fetch_add(1, Ordering::Relaxed);
                    stop.cancelled().await;
                    drop(held);
                }
                Ok(Err(e)) => {
                    if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                        eprintln!("  stream failed: {e}");
                    }
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the processes settle (heartbeats, allocator) before reading their memory.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = measure();
    let (r, f) = (ready.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    stop.cancel();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    (r, f, m)
}
