//! Routing that coding agents feel (issue 19), end to end against a real nats-server and
//! scripted upstreams:
//!
//! - scenario routes over recorded Claude Code, Codex and Gemini CLI request shapes
//!   (`tests/fixtures/routing/scenarios.json`), and one through a worker;
//! - session affinity measured against upstreams that simulate a prompt cache per API key
//!   (2 channels × 3 keys, 50 sessions × 10 turns): the cache-read share and the cost with
//!   and without it, printed (`cargo test --test routing -- --nocapture affinity`);
//! - sessions shared by two workers stay on one (channel, key) and move together on a
//!   failover;
//! - `p2c_ewma` takes traffic off a slow channel and gives it back once it recovers.

mod common;

use ailurus::bus::headers::{self, ReplyKind};
use ailurus::bus::subjects::{self, Token};
use ailurus::config::Config;
use ailurus::formats::{Format, Op, ParseContext};
use ailurus::protocol::LLMNATSResponse;
use ailurus::router::scenario::Features;
use ailurus::router::{Router, RoutingConfig};
use async_nats::HeaderMap;
use common::upstream::{Api, Fault, Script, Upstream, Usage};
use common::{platform_of, Stack};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Longest any single wait may take.
const WAIT: Duration = Duration::from_secs(20);

fn fixture(rel: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel);
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Set `value` at a JSON pointer whose parent exists.
fn set(body: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let obj = body.pointer_mut(parent).and_then(Value::as_object_mut).unwrap_or_else(|| panic!("no {parent}"));
    if value.is_null() {
        obj.remove(key);
    } else {
        obj.insert(key.to_string(), value);
    }
}

/// Add a user turn of about `tokens` estimated tokens (a long tool output, say).
fn pad(format: Format, body: &mut Value, tokens: u64) {
    let text = "fn long_context() { let x = 1; }\n".repeat((tokens * 4 / 33 + 1) as usize);
    let (list, turn) = match format {
        Format::AnthropicMessages => ("messages", json!({"role": "user", "content": [{"type": "text", "text": text}]})),
        Format::OpenAiResponses => {
            ("input", json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}))
        }
        Format::GeminiGenerate => ("contents", json!({"role": "user", "parts": [{"text": text}]})),
        Format::OpenAiChat => ("messages", json!({"role": "user", "content": text})),
    };
    body[list].as_array_mut().expect("a turn list").push(turn);
}

#[test]
fn scenario_rules_route_recorded_cli_requests() {
    let table = fixture("routing/scenarios.json");
    let routing: RoutingConfig = toml::from_str(table["rules"].as_str().expect("rules")).expect("rules parse");
    routing.validate().expect("rules are valid");
    let router = Router::new(&routing, &[]).expect("router");
    let cases = table["cases"].as_array().expect("cases");
    assert!(cases.len() >= 12);
    let mut seen_rules = HashSet::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let format = Format::parse(case["format"].as_str().expect("format")).expect("a format");
        let mut body = fixture(case["file"].as_str().expect("file"));
        for (pointer, value) in case["set"].as_object().into_iter().flatten() {
            set(&mut body, pointer, value.clone());
        }
        if let Some(t) = case["pad_tokens"].as_u64() {
            pad(format, &mut body, t);
        }
        let raw = serde_json::to_vec(&body).expect("body");
        let url_model = case["url_model"].as_str().map(str::to_string);
        let ctx = ParseContext { model: url_model, op: Op::Generate };
        // As the worker does: a body the strict parser refuses (a server tool) still routes
        // on what it can read.
        let chat = format
            .parse_request(&raw, &ctx)
            .ok()
            .or_else(|| ailurus::formats::passthrough::minimal_request(format, &raw, &ctx))
            .unwrap_or_else(|| panic!("{name}: unreadable"));
        let headers: BTreeMap<String, String> = case["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let header = |h: &str| headers.get(&h.to_ascii_lowercase()).cloned();
        let platform = platform_of(format);
        let f = Features::new(&chat.model, platform.as_str(), &chat, &header, Some(&raw));
        let got = router.scenario(&f);
        let want = case["expect"].as_str();
        assert_eq!(got.as_ref().map(|d| d.rule.as_str()), want, "{name}");
        if let Some(m) = case["model"].as_str() {
            assert_eq!(got.as_ref().and_then(|d| d.model.as_deref()), Some(m), "{name}");
        }
        seen_rules.extend(want.map(str::to_string));
    }
    // Every rule of the table is exercised by some recorded shape.
    assert_eq!(seen_rules.len(), routing.scenarios.len(), "{seen_rules:?}");
}

/// Set `count` API key variables for a channel; returns their names as a TOML list.
fn keys(channel: &str, count: usize) -> String {
    let names: Vec<String> = (0..count)
        .map(|i| {
            let var = format!("AILURUS_ROUTING_TEST_{}_{i}", channel.to_uppercase().replace('-', "_"));
            std::env::set_var(&var, format!("sk-{channel}-{i}"));
            format!("\"{var}\"")
        })
        .collect();
    format!("[{}]", names.join(", "))
}

fn channel(name: &str, up: &Upstream, key_count: usize, extra: &str) -> String {
    format!(
        "\n[[channels]]\nname = \"{name}\"\nkind = \"anthropic\"\nbase_url = \"{}\"\napi_key_env = {}\n{extra}\n",
        up.base_url(Api::Anthropic),
        keys(name, key_count)
    )
}

/// Open mode, a Sonnet-class price (USD per 1M: input 3, output 15, cache read 0.30), no mock.
const BASE: &str = "[auth]\nmode = \"open\"\n[worker]\nrequest_timeout_ms = 20000\n\
    [[pricing.models]]\npattern = \"claude-*\"\ninput = 3.0\noutput = 15.0\ncache_read = 0.3\ncache_write = 3.75\n";

/// A server with the streams applied and `workers` workers on `toml`.
async fn gateway(toml_text: &str, workers: usize) -> (Stack, Arc<Router>) {
    let config: Config = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    config.validate().unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    let mut stack = Stack::server_only().await;
    stack.apply_streams().await;
    let router = Arc::new(Router::new(&config.routing, &config.channels).expect("router"));
    stack.add_routed_worker(config.clone(), router.clone()).await;
    for _ in 1..workers {
        stack.add_worker(config.clone()).await;
    }
    (stack, router)
}

/// Send a native body; the final reply's kind and summary.
async fn send(stack: &Stack, format: Format, body: &Value, extra: &[(&str, &str)]) -> (ReplyKind, LLMNATSResponse) {
    let trace = Token::random();
    let mut h = HeaderMap::new();
    h.insert(headers::FORMAT, format.as_str());
    h.insert(headers::TRACE, trace.as_str());
    for (k, v) in extra {
        h.insert(*k, *v);
    }
    let payload = serde_json::to_vec(body).expect("body").into();
    let mut replies = stack
        .requester()
        .send_raw(subjects::request(platform_of(format)), h, payload, Some(trace))
        .await
        .expect("send");
    loop {
        let r = tokio::time::timeout(WAIT, replies.next()).await.expect("reply in time").expect("a final reply");
        let r = r.expect("reply");
        if matches!(r.kind, ReplyKind::Done | ReplyKind::Error) {
            let resp = serde_json::from_slice(&r.payload).unwrap_or_default();
            return (r.kind, resp);
        }
    }
}

#[tokio::test]
async fn a_scenario_route_serves_background_requests_on_the_cheap_channel() {
    let (main, cheap) = (Upstream::start().await, Upstream::start().await);
    let rules = "[[routing.scenarios]]\nname = \"background\"\nmodel = \"claude-*haiku*\"\n\
        to_model = \"deepseek-chat\"\nto_channels = [\"cheap\"]\n";
    let cfg = format!(
        "{BASE}[[pricing.models]]\npattern = \"deepseek-*\"\ninput = 0.27\noutput = 1.1\n{rules}{}{}",
        channel("main", &main, 1, "models = [\"claude-*\"]\npriority = 10"),
        channel("cheap", &cheap, 1, "models = [\"deepseek-*\", \"claude-*\"]")
    );
    let (stack, _) = gateway(&cfg, 1).await;
    let background = fixture("routing/claude_code_haiku.json");
    let (kind, resp) = send(&stack, Format::AnthropicMessages, &background, &[]).await;
    assert_eq!(kind, ReplyKind::Done, "{resp:?}");
    assert_eq!((main.count(), cheap.count()), (0, 1), "the background request went to the cheap channel");
    assert_eq!(cheap.requests()[0].model().as_deref(), Some("deepseek-chat"));
    assert_eq!(resp.model, "deepseek-chat", "served and billed as the target model");
    // A main turn is not a background one: the first tier serves it.
    let turn = fixture("anthropic/claude_code_request.json");
    let (kind, _) = send(&stack, Format::AnthropicMessages, &turn, &[]).await;
    assert_eq!(kind, ReplyKind::Done);
    assert_eq!((main.count(), cheap.count()), (1, 1));
}

/// Turn `turn` (0-based) of coding session `session`: a system prompt naming the session's
/// project, then every earlier turn (a ~2 KB tool output and the answer to it), then this one.
fn session_turn(session: usize, turn: usize) -> Value {
    let system = format!("You are a coding agent working in /home/dev/project-{session}.\n{}", "Rules. ".repeat(800));
    let mut messages = Vec::new();
    for t in 0..=turn {
        let output = format!("session {session} turn {t}: {}", "tool output line\n".repeat(120));
        messages.push(json!({"role": "user", "content": [{"type": "text", "text": output}]}));
        if t < turn {
            messages.push(json!({"role": "assistant", "content": [{"type": "text", "text": format!("answer {t}")}]}));
        }
    }
    json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": true, "system": system, "messages": messages})
}

/// What one run of [`cache_run`] measured.
struct CacheRun {
    /// Share of prompt tokens read from the cache.
    share: f64,
    /// Share of turns after the first that found the previous turn's whole prompt cached.
    warm: f64,
    /// Total cost, USD.
    cost: f64,
    /// Prompt tokens sent.
    prompt: u64,
}

/// 50 sessions × 10 turns on 2 channels × 3 keys, with or without affinity.
async fn cache_run(affinity: bool) -> CacheRun {
    let script =
        || Script { prompt_cache: true, usage: Usage { output: 200, ..Usage::default() }, ..Default::default() };
    let (a, b) = (Upstream::with(script()).await, Upstream::with(script()).await);
    let cfg = format!(
        "{BASE}[routing]\nbuiltin_mock = false\naffinity = {affinity}\n{}{}",
        channel(&format!("cache-a-{affinity}"), &a, 3, ""),
        channel(&format!("cache-b-{affinity}"), &b, 3, "")
    );
    let (stack, _) = gateway(&cfg, 1).await;
    let stack = Arc::new(stack);
    let sessions = 50;
    let turns = 10;
    let mut cost = 0.0;
    // Ten sessions at a time, each turn after the previous one's answer.
    for batch in 0..sessions / 10 {
        let tasks: Vec<_> = (batch * 10..batch * 10 + 10)
            .map(|s| {
                let stack = stack.clone();
                tokio::spawn(async move {
                    let id = format!("sess-{s}-{}", Token::random());
                    let mut cost = 0.0;
                    for t in 0..turns {
                        let header = [("x-claude-code-session-id", id.as_str())];
                        let (kind, resp) = send(&stack, Format::AnthropicMessages, &session_turn(s, t), &header).await;
                        assert_eq!(kind, ReplyKind::Done, "{resp:?}");
                        cost += resp.cost;
                    }
                    cost
                })
            })
            .collect();
        for t in tasks {
            cost += t.await.expect("session");
        }
    }
    let (ta, tb) = (a.cache_totals(), b.cache_totals());
    let (prompt, read, later, warm) = (ta.0 + tb.0, ta.1 + tb.1, ta.2 + tb.2, ta.3 + tb.3);
    CacheRun { share: read as f64 / prompt as f64, warm: warm as f64 / later as f64, cost, prompt }
}

#[tokio::test]
async fn affinity_keeps_the_prompt_cache_warm() {
    let with = cache_run(true).await;
    let without = cache_run(false).await;
    println!("session affinity, 2 channels x 3 keys, 50 sessions x 10 turns ({} prompt tokens per run):", with.prompt);
    println!("| routing | turns 2-10 finding the previous turn cached | cache-read share of prompt tokens | cost (USD, Sonnet prices) |");
    println!("|---|---|---|---|");
    for (name, r) in [("with affinity", &with), ("without (weighted random, keys round robin)", &without)] {
        println!("| {name} | {:.1} % | {:.1} % | {:.4} |", r.warm * 100.0, r.share * 100.0, r.cost);
    }
    println!("cost saved by affinity: {:.1} %", (1.0 - with.cost / without.cost) * 100.0);
    // Every turn after the first reads the whole earlier conversation from the cache.
    assert!(with.warm > 0.95 && with.share > 0.75, "with affinity {:.3} / {:.3}", with.warm, with.share);
    // Without, a turn lands on the key of the turn before about one time in six (an older
    // turn's shorter prefix may still be there, hence the larger token share).
    assert!(without.warm < 0.3, "without affinity {:.3}", without.warm);
    assert!(with.cost < without.cost * 0.7, "{} vs {}", with.cost, without.cost);
}

/// Which (upstream, key) served each session's turns, in order, from the upstreams' records.
fn served(ups: &[(&str, &Upstream)]) -> HashMap<String, Vec<(String, String)>> {
    let mut out: HashMap<String, Vec<(String, String, std::time::Instant)>> = HashMap::new();
    for (name, up) in ups {
        for r in up.requests() {
            let body = r.json();
            let first = body.pointer("/messages/0/content/0/text").and_then(Value::as_str).unwrap_or_default();
            let session = first.split(" turn").next().unwrap_or_default().to_string();
            let key = r.header("x-api-key").unwrap_or_default().to_string();
            out.entry(session).or_default().push((name.to_string(), key, r.at));
        }
    }
    out.into_iter()
        .map(|(s, mut v)| {
            v.sort_by_key(|x| x.2);
            (s, v.into_iter().map(|(n, k, _)| (n, k)).collect())
        })
        .collect()
}

#[tokio::test]
async fn sessions_stick_across_workers_and_move_together_on_failover() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let cfg = format!(
        "{BASE}[routing]\nbuiltin_mock = false\ncooldown_base_ms = 60000\n{}{}",
        channel("stick-a", &a, 3, ""),
        channel("stick-b", &b, 3, "")
    );
    // Two workers of one queue group: a session's turns reach both.
    let (stack, _) = gateway(&cfg, 2).await;
    let sessions = 12;
    let run = |from: usize, to: usize| {
        let stack = &stack;
        async move {
            for t in from..to {
                for s in 0..sessions {
                    let id = format!("stick-{s}");
                    let (kind, resp) = send(
                        stack,
                        Format::AnthropicMessages,
                        &session_turn(s, t),
                        &[("x-claude-code-session-id", &id)],
                    )
                    .await;
                    assert_eq!(kind, ReplyKind::Done, "{resp:?}");
                }
                // A person reads the answer before the next turn; the table's write is
                // under way meanwhile.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
    };
    run(0, 4).await;
    let before = served(&[("a", &a), ("b", &b)]);
    assert_eq!(before.len(), sessions);
    let mut on_a = 0;
    for (s, turns) in &before {
        assert!(turns.iter().all(|x| x == &turns[0]), "{s} stayed on one channel and key: {turns:?}");
        on_a += usize::from(turns[0].0 == "a");
    }
    assert!(on_a > 0 && on_a < sessions, "sessions spread over both channels ({on_a} on a)");
    // Channel a fails: its sessions move to b, each to one key, on both workers.
    a.fault(Fault::status(503));
    run(4, 8).await;
    let after = served(&[("b", &b)]);
    for (s, turns) in &before {
        let later: Vec<_> = after[s].iter().skip(if turns[0].0 == "b" { 4 } else { 0 }).collect();
        assert_eq!(later.len(), 4, "{s}: {later:?}");
        assert!(later.iter().all(|x| *x == later[0]), "{s} moved once and stayed: {later:?}");
        if turns[0].0 == "b" {
            assert_eq!(*later[0], turns[0], "{s} was on b and did not move");
        }
    }
}

#[tokio::test]
async fn p2c_ewma_takes_traffic_off_a_slow_channel_and_gives_it_back() {
    let (fast, slow) = (Upstream::start().await, Upstream::start().await);
    slow.fault(Fault::Delay(Duration::from_millis(400)));
    let cfg = format!(
        "{BASE}[routing]\nbuiltin_mock = false\naffinity = false\nstrategy = \"p2c_ewma\"\newma_tau_ms = 300\n{}{}",
        channel("p2c-fast", &fast, 1, ""),
        channel("p2c-slow", &slow, 1, "")
    );
    let (stack, _) = gateway(&cfg, 1).await;
    let stack = Arc::new(stack);
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "hello"}]});
    // Eight callers in a closed loop for `secs`; the share of requests each upstream got.
    let phase = |secs: u64| {
        let (stack, body) = (stack.clone(), body.clone());
        let (f0, s0) = (fast.count(), slow.count());
        async move {
            let end = tokio::time::Instant::now() + Duration::from_secs(secs);
            let callers: Vec<_> = (0..8)
                .map(|_| {
                    let (stack, body) = (stack.clone(), body.clone());
                    tokio::spawn(async move {
                        while tokio::time::Instant::now() < end {
                            let (kind, _) = send(&stack, Format::AnthropicMessages, &body, &[]).await;
                            assert_eq!(kind, ReplyKind::Done);
                        }
                    })
                })
                .collect();
            for c in callers {
                c.await.expect("caller");
            }
            (f0, s0)
        }
    };
    let (f0, s0) = phase(3).await;
    let (f1, s1) = (fast.count() - f0, slow.count() - s0);
    let slow_share = s1 as f64 / (f1 + s1) as f64;
    slow.fault(Fault::None);
    let _ = phase(1).await;
    let (f0, s0) = phase(3).await;
    let (f2, s2) = (fast.count() - f0, slow.count() - s0);
    let recovered_share = s2 as f64 / (f2 + s2) as f64;
    println!(
        "p2c_ewma: slow channel (+400 ms) got {s1} of {} requests ({:.1} %); recovered, {s2} of {} ({:.1} %)",
        f1 + s1,
        slow_share * 100.0,
        f2 + s2,
        recovered_share * 100.0
    );
    // Weighted random would give it half the picks; the bound leaves room for a loaded
    // machine, where the fast channel is slow too.
    assert!(slow_share < 0.3, "slow share {slow_share:.3}");
    assert!(recovered_share > 0.3, "recovered share {recovered_share:.3}");
}

#[test]
fn the_readme_config_for_a_claude_code_team_is_valid_and_routes_as_it_says() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README");
    let section = readme.split("### Routing for coding agents").nth(1).expect("the routing section");
    let toml_text = section.split("```toml\n").nth(1).and_then(|b| b.split("```").next()).expect("its config");
    let config = Config::from_toml(toml_text).unwrap_or_else(|e| panic!("README config: {e}"));
    assert_eq!(config.routing.strategy_of(10), ailurus::router::Strategy::P2cEwma);
    assert_eq!(config.routing.strategy_of(0), ailurus::router::Strategy::LeastBusy);
    let router = Router::new(&config.routing, &[]).expect("router");
    let route = |file: &str| {
        let raw = serde_json::to_vec(&fixture(file)).expect("body");
        let ctx = ParseContext { model: None, op: Op::Generate };
        let format = Format::AnthropicMessages;
        let chat = format
            .parse_request(&raw, &ctx)
            .ok()
            .or_else(|| ailurus::formats::passthrough::minimal_request(format, &raw, &ctx))
            .expect("readable");
        let none = |_: &str| None;
        router.scenario(&Features::new(&chat.model, "claude", &chat, &none, Some(&raw)))
    };
    let bg = route("routing/claude_code_haiku.json").expect("background");
    assert_eq!((bg.rule.as_str(), bg.model.as_deref()), ("background", Some("deepseek-chat")));
    assert_eq!(route("routing/claude_code_subagent.json").map(|d| d.model), Some(Some("deepseek-chat".into())));
    assert_eq!(route("routing/claude_code_web_search.json").map(|d| d.rule), Some("web-search".into()));
    assert_eq!(route("anthropic/claude_code_request.json"), None, "a main turn is routed as it came");
}

/// What affinity costs a request: naming its session (CPU) and the KV operations the table
/// does (a read the first time a worker sees a session, a write when it is new or moves).
/// Run with `cargo test --release --test routing affinity_cost -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement: prints figures"]
async fn affinity_cost() {
    use ailurus::router::affinity::{self, Evidence};
    let per = |n: u32, f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    };
    let ctx = ParseContext { model: None, op: Op::Generate };
    let claude = serde_json::to_vec(&fixture("anthropic/claude_code_request.json")).expect("body");
    let claude_chat = Format::AnthropicMessages.parse_request(&claude, &ctx).expect("parse");
    let codex = serde_json::to_vec(&fixture("clients/codex_request.json")).expect("body");
    let codex_chat = Format::OpenAiResponses.parse_request(&codex, &ctx).expect("parse");
    let mut long = session_turn(1, 9);
    pad(Format::AnthropicMessages, &mut long, 25_000);
    let long_raw = serde_json::to_vec(&long).expect("body");
    let long_chat = Format::AnthropicMessages.parse_request(&long_raw, &ctx).expect("parse");
    let header = |h: &str| (h == "x-claude-code-session-id").then(|| "0c1d2e3f-4a5b".to_string());
    let none = |_: &str| None;
    let cases: [(&str, Evidence<'_>, usize); 4] = [
        (
            "session header (Claude Code, Codex)",
            Evidence { header: &header, seed_session: None, chat: &claude_chat, body: Some(&claude) },
            claude.len(),
        ),
        (
            "Claude Code metadata.user_id",
            Evidence { header: &none, seed_session: None, chat: &claude_chat, body: Some(&claude) },
            claude.len(),
        ),
        (
            "Codex prompt_cache_key (body scanned)",
            Evidence { header: &none, seed_session: None, chat: &codex_chat, body: Some(&codex) },
            codex.len(),
        ),
        (
            "hash of the first messages (no id sent)",
            Evidence { header: &none, seed_session: None, chat: &long_chat, body: None },
            long_raw.len(),
        ),
    ];
    println!("| naming the session | body | CPU per request |");
    println!("|---|---:|---:|");
    for (name, ev, bytes) in &cases {
        let us = per(2_000, &mut || {
            let (s, _) = affinity::session(ev);
            std::hint::black_box(affinity::table_key("user", &s));
        });
        println!("| {name} | {} KB | {us:.2} µs |", bytes / 1024);
    }
    // The table's KV operations against a local nats-server.
    let stack = Stack::server_only().await;
    stack.apply_streams().await;
    let js = async_nats::jetstream::new(stack.client.clone());
    let kv = js.get_key_value("ROUTE_AFFINITY").await.expect("bucket");
    let value: bytes::Bytes = br#"{"c":"anthropic-a","k":2}"#.to_vec().into();
    let n = 500;
    let t = std::time::Instant::now();
    for i in 0..n {
        kv.put(format!("k{i}"), value.clone()).await.expect("put");
    }
    let put = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let t = std::time::Instant::now();
    for i in 0..n {
        assert!(kv.entry(format!("k{i}")).await.expect("get").is_some());
    }
    let get = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    println!("| KV write (a new or moved session; in its own task) | {put:.0} µs |");
    println!("| KV read (a session new to this worker; on the request's path) | {get:.0} µs |");
}
