//! The hostile-input corpus (`tests/fixtures/hostile/*.json`): malformed and truncated
//! JSON, wrong types, huge numbers, 100k-deep nesting, invalid UTF-8, empty and over-limit
//! bodies, duplicate and wrong headers, subject tokens with `.`, `*` and `>`, unknown models,
//! empty messages, broken tool schemas, and missing, unknown, forged, revoked and expired
//! tokens — over every HTTP route of the bridge and over the NATS subjects.
//!
//! One data-driven [`check`] runs every case against a real nats-server, worker and bridge
//! (token mode, a funded user) and requires: a 4xx status, an error body in the caller's own
//! shape (Anthropic, OpenAI, Gemini, the seed `LLMNATSResponse`, the user API's, or the
//! bridge's neutral one), an answer within a bound (no hang, no panic), and no state change:
//! the user's balance, the ledger and the quota holds are exactly as before.

mod common;

use ailurus::bridge::BridgeConfig;
use ailurus::bus::headers;
use ailurus::bus::proof::Signer;
use ailurus::bus::subjects::Token;
use ailurus::credential::hash;
use ailurus::formats::Format;
use ailurus::protocol::LLMNATSResponse;
use ailurus::quota::account::QuotaStore;
use ailurus::quota::tokens::TokenStore;
use common::{http, Stack};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest any one case may take.
const CASE_LIMIT: Duration = Duration::from_secs(10);
/// The bridge's body limit in this test (the corpus' over-limit bodies exceed it).
const MAX_BODY: usize = 1024 * 1024;

/// One case of the corpus.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// `http` (through the bridge) or `nats` (straight to the workers).
    via: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    /// Extra headers, in order (duplicates allowed); `$TOKEN`, `$REVOKED`, `$EXPIRED`,
    /// `$REVOKED_HASH` are replaced.
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// The body as text.
    #[serde(default)]
    body: Option<String>,
    /// The body as JSON.
    #[serde(default)]
    json: Option<Value>,
    /// The body as hex bytes.
    #[serde(default)]
    hex: Option<String>,
    /// A generated body: `{"kind":"deep","depth":N,"format":F}` or `{"kind":"big","bytes":N}`.
    #[serde(default)]
    gen: Option<Value>,
    /// Which credential to send: `valid` (default), `none`, `unknown`, `forged`, `revoked`,
    /// `expired`.
    #[serde(default)]
    auth: Option<String>,
    /// Expected status.
    status: u16,
    /// Expected error shape: `anthropic`, `openai`, `gemini`, `seed`, `api`, `neutral`,
    /// `gemini_or_neutral`.
    shape: String,
    /// A piece the error message must contain (case-insensitive).
    #[serde(default)]
    contains: Option<String>,
}

/// The tokens the corpus refers to.
struct Tokens {
    valid: String,
    revoked: String,
    expired: String,
}

impl Tokens {
    fn subst(&self, s: &str) -> String {
        s.replace("$REVOKED_HASH", &hash(&self.revoked))
            .replace("$TOKEN_HASH", &hash(&self.valid))
            .replace("$TOKEN", &self.valid)
            .replace("$REVOKED", &self.revoked)
            .replace("$EXPIRED", &self.expired)
    }

    /// The token a case's `auth` names (`None`: send none).
    fn pick(&self, auth: Option<&str>) -> Option<String> {
        match auth.unwrap_or("valid") {
            "valid" => Some(self.valid.clone()),
            "none" => None,
            "unknown" | "forged" => Some("sk-ail-thisisnotarealtokenatallxxxxxxxxxxxxxxxxx".into()),
            "revoked" => Some(self.revoked.clone()),
            "expired" => Some(self.expired.clone()),
            other => panic!("unknown auth {other:?}"),
        }
    }
}

/// The case's body bytes.
fn body_of(case: &Case, n: usize) -> Vec<u8> {
    let unique = |s: String| s.replace("$N", &n.to_string());
    if let Some(b) = &case.body {
        return unique(b.clone()).into_bytes();
    }
    if let Some(j) = &case.json {
        return unique(j.to_string()).into_bytes();
    }
    if let Some(h) = &case.hex {
        return (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex")).collect();
    }
    let Some(g) = &case.gen else { return Vec::new() };
    match g["kind"].as_str() {
        Some("deep") => {
            let depth = g["depth"].as_u64().unwrap() as usize;
            let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let f = g["format"].as_str().unwrap();
            match f {
                "anthropic" => {
                    format!(r#"{{"model":"mock","max_tokens":5,"messages":[{{"role":"user","content":{deep}}}]}}"#)
                }
                "openai" => format!(r#"{{"model":"mock","messages":[{{"role":"user","content":{deep}}}]}}"#),
                "responses" => format!(r#"{{"model":"mock","input":{deep}}}"#),
                "gemini" => format!(r#"{{"contents":{deep}}}"#),
                "seed" => format!(
                    r#"{{"trace_id":"t-{n}","user_id":"hostile","platform":"claude","model":"mock","messages":{deep}}}"#
                ),
                other => panic!("deep: unknown format {other}"),
            }
            .into_bytes()
        }
        Some("big") => {
            let n = g["bytes"].as_u64().unwrap() as usize;
            let mut s = String::from(r#"{"model":"mock","messages":[{"role":"user","content":""#);
            s.push_str(&"a".repeat(n));
            s.push_str(r#""}]}"#);
            s.into_bytes()
        }
        other => panic!("unknown gen {other:?}"),
    }
}

/// A response as read off the wire.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// Send raw HTTP/1.1 (the path and headers exactly as given: no URL normalisation, duplicate
/// headers kept) and read the response to the end.
async fn raw_http(addr: &str, method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> Answer {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect bridge");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(format!("{k}: ").as_bytes());
        req.extend_from_slice(v.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    if method != "GET" || !body.is_empty() {
        req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    // The server may answer (413, 415) and close before the whole body is written.
    let _ = s.write_all(&req).await;
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut body = raw.get(split + 4..).unwrap_or_default().to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Answer { status, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

/// Publish on a NATS subject with a reply inbox and read up to the final reply.
async fn nats_call(client: &async_nats::Client, subject: &str, h: async_nats::HeaderMap, body: Vec<u8>) -> Answer {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client.publish_with_reply_and_headers(subject.to_string(), inbox, h, body.into()).await.unwrap();
    loop {
        let msg = sub.next().await.expect("reply subscription");
        if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return Answer { status: 503, body: b"no responders".to_vec() };
        }
        let hs = msg.headers.clone().unwrap_or_default();
        let kind = hs.get(headers::KIND).map(|v| v.as_str().to_string());
        if matches!(kind.as_deref(), Some("heartbeat") | Some("chunk")) {
            if kind.as_deref() == Some("chunk") {
                // A first chunk means the request was accepted: the case failed.
                return Answer {
                    status: hs.get(headers::STATUS).and_then(|v| v.as_str().parse().ok()).unwrap_or(200),
                    body: msg.payload.to_vec(),
                };
            }
            continue;
        }
        let status = hs.get(headers::STATUS).and_then(|v| v.as_str().parse().ok()).unwrap_or(0);
        return Answer { status, body: msg.payload.to_vec() };
    }
}

/// The error message of `body` in `shape`, or why it is not that shape.
fn shaped(shape: &str, body: &[u8]) -> Result<String, String> {
    match shape {
        "anthropic" => http::error_message(Some(Format::AnthropicMessages), body),
        "openai" => http::error_message(Some(Format::OpenAiChat), body),
        "gemini" => http::error_message(Some(Format::GeminiGenerate), body),
        "neutral" => http::error_message(None, body),
        "gemini_or_neutral" => {
            http::error_message(Some(Format::GeminiGenerate), body).or_else(|_| http::error_message(None, body))
        }
        "seed" => {
            // In the request's own encoding: JSON, or MessagePack when it declared that.
            let r: LLMNATSResponse = serde_json::from_slice(body)
                .or_else(|_| rmp_serde::from_slice(body))
                .map_err(|e| format!("not an LLMNATSResponse ({e}): {}", String::from_utf8_lossy(body)))?;
            match (r.success, r.error) {
                (false, Some(e)) => Ok(e),
                _ => Err(format!("not a seed error: {}", String::from_utf8_lossy(body))),
            }
        }
        "api" => {
            let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
            match (&v["success"], v["message"].as_str()) {
                (Value::Bool(false), Some(m)) => Ok(m.to_string()),
                _ => Err(format!("not a user-API error: {v}")),
            }
        }
        other => Err(format!("unknown shape {other}")),
    }
}

/// What must not change.
#[derive(Debug, PartialEq, Eq)]
struct State {
    used: i64,
    total: i64,
    requests: i64,
    ledger: u64,
    holds: u64,
    /// Writes to the token records and the user directory (the management API).
    tokens: u64,
    users: u64,
    redemptions: u64,
}

async fn state(js: &async_nats::jetstream::Context, quota: &QuotaStore) -> State {
    let b = quota.balance(&Token::new("user_id", "hostile").unwrap()).await.unwrap();
    let count = |name: &'static str| async move {
        let mut s = js.get_stream(name).await.unwrap();
        s.info().await.unwrap().state.last_sequence
    };
    State {
        used: b.used,
        total: b.total,
        requests: b.request_count,
        ledger: count("LLM_USAGE").await,
        holds: count("QUOTA_HOLDS").await,
        tokens: count("KV_TOKENS").await,
        users: count("KV_USERS").await,
        redemptions: count("KV_REDEMPTIONS").await,
    }
}

/// Run one case; `Err` says what was wrong.
async fn check(case: &Case, n: usize, tokens: &Tokens, addr: &str, client: &async_nats::Client) -> Result<(), String> {
    let body = body_of(case, n);
    let extra: Vec<(String, String)> = case.headers.iter().map(|(k, v)| (k.clone(), tokens.subst(v))).collect();
    let token = tokens.pick(case.auth.as_deref());
    let started = Instant::now();
    let answer = match case.via.as_str() {
        "http" => {
            let mut hs = vec![];
            if !extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                && case.method.as_deref() != Some("GET")
            {
                hs.push(("Content-Type".to_string(), "application/json".to_string()));
            }
            if let Some(t) = &token {
                match case.shape.as_str() {
                    "anthropic" => hs.push(("x-api-key".into(), t.clone())),
                    "gemini" | "gemini_or_neutral" => hs.push(("x-goog-api-key".into(), t.clone())),
                    _ => hs.push(("Authorization".into(), format!("Bearer {t}"))),
                }
            }
            hs.extend(extra);
            let path = tokens.subst(case.path.as_deref().ok_or("http case without path")?);
            let method = case.method.as_deref().unwrap_or("POST");
            tokio::time::timeout(CASE_LIMIT, raw_http(addr, method, &path, &hs, &body))
                .await
                .map_err(|_| format!("no answer within {CASE_LIMIT:?}"))?
        }
        "nats" => {
            let mut h = async_nats::HeaderMap::new();
            for (k, v) in &extra {
                h.append(k.as_str(), v.as_str());
            }
            let subject = case.subject.as_deref().ok_or("nats case without subject")?;
            // A token is sent as a client sends it: a proof bound to this request (its trace
            // id: the header, else the seed body's, else a new header). `forged`: the valid
            // token's id with a proof from another key.
            if let Some(t) = &token {
                let seed_trace = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("trace_id").and_then(|t| t.as_str()).map(str::to_string));
                let trace = match (h.get(headers::TRACE).map(|v| v.as_str().to_string()), seed_trace) {
                    (Some(t), _) | (None, Some(t)) => t,
                    (None, None) => {
                        let t = format!("hostile-{n}");
                        h.insert(headers::TRACE, t.as_str());
                        t
                    }
                };
                Signer::new(t).sign(subject, &trace, ailurus::bus::proof::now_secs(), &mut h, &body);
                if case.auth.as_deref() == Some("forged") {
                    h.insert(headers::TOKEN_ID, hash(&tokens.valid).as_str());
                }
            }
            tokio::time::timeout(CASE_LIMIT, nats_call(client, subject, h, body))
                .await
                .map_err(|_| format!("no final reply within {CASE_LIMIT:?}"))?
        }
        other => return Err(format!("unknown via {other}")),
    };
    let text = String::from_utf8_lossy(&answer.body).chars().take(300).collect::<String>();
    if answer.status != case.status {
        return Err(format!("status {} (want {}): {text}", answer.status, case.status));
    }
    if !(400..500).contains(&answer.status) {
        return Err(format!("status {} is not a 4xx", answer.status));
    }
    let message = shaped(&case.shape, &answer.body)?;
    if let Some(want) = &case.contains {
        if !message.to_lowercase().contains(&want.to_lowercase()) {
            return Err(format!("message {message:?} lacks {want:?}"));
        }
    }
    if started.elapsed() > Duration::from_secs(5) {
        return Err(format!("took {:?}", started.elapsed()));
    }
    Ok(())
}

fn corpus() -> Vec<Case> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut all = Vec::new();
    for f in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        all.extend(cases);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_corpus_gets_clear_4xx_in_the_callers_format_without_state_change() {
    let cases = corpus();
    assert!(cases.len() >= 200, "{} cases", cases.len());
    let routes: std::collections::BTreeSet<_> =
        cases.iter().filter_map(|c| c.path.clone().or(c.subject.clone())).collect();
    let run = async {
        let mut stack = Stack::server_only().await;
        stack.apply_streams().await;
        // `mock*` only, so an unknown model is one (with no channels the mock answers every name).
        stack.add_worker(common::mock_names_only(ailurus::config::Config::default())).await;
        let js = async_nats::jetstream::new(stack.client.clone());
        let store = TokenStore::open(&js).await.unwrap();
        let quota = QuotaStore::open(stack.client.clone()).await.unwrap();
        quota.topup(&Token::new("user_id", "hostile").unwrap(), 10_000_000).await.unwrap();
        let (valid, _) = store.create("hostile", "valid", None, vec![], None).await.unwrap();
        let (revoked, rec) = store.create("hostile", "revoked", None, vec![], None).await.unwrap();
        store.revoke(&rec.id).await.unwrap();
        let (expired, _) = store.create("hostile", "expired", Some(1), vec![], None).await.unwrap();
        let tokens = Tokens { valid, revoked, expired };
        let cfg = BridgeConfig { max_body_bytes: MAX_BODY, ..Default::default() };
        let base = http::bridge(stack.client.clone(), cfg, stack.shutdown.clone()).await;
        let addr = base.trim_start_matches("http://").to_string();
        tokio::time::sleep(Duration::from_millis(1200)).await; // the short token expires
        let web = reqwest::Client::new();
        let alive = || async {
            let got = web
                .post(format!("{base}/v1/messages"))
                .header("x-api-key", &tokens.valid)
                .body(r#"{"model":"mock","max_tokens":8,"messages":[{"role":"user","content":"alive?"}]}"#)
                .send()
                .await
                .unwrap();
            assert_eq!(got.status(), 200, "the gateway stopped serving");
            let _ = got.bytes().await;
        };
        alive().await;
        // That request's quota lease goes back when idle: wait for it, so only the corpus
        // could move anything below.
        common::quiet_balance(&quota, &Token::new("user_id", "hostile").unwrap()).await;
        let before = state(&js, &quota).await;
        let mut failures = Vec::new();
        let mut holds = before.holds;
        for (n, case) in cases.iter().enumerate() {
            if let Err(e) = check(case, n, &tokens, &addr, &stack.client).await {
                failures.push(format!("{}: {e}", case.name));
            }
            let now = state(&js, &quota).await.holds;
            if now != holds {
                failures.push(format!("{}: a quota hold was written", case.name));
                holds = now;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = state(&js, &quota).await;
        assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
        assert_eq!(after, before, "the corpus changed quota or ledger state");
        alive().await;
        println!(
            "{} hostile cases over {} routes and subjects: all 4xx in the caller's shape, no state change",
            cases.len(),
            routes.len()
        );
    };
    tokio::time::timeout(Duration::from_secs(240), run).await.expect("the corpus exceeded its time bound");
}
