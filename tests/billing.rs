//! The money path's promises against a real nats-server and scripted upstreams of every kind:
//! every answer is bounded before it starts (the request's cap, else one the gateway writes
//! into the upstream request), a request is admitted only when the balance covers its worst
//! case, an upstream that ignores the cap is charged what it reports and recorded as an
//! overage, and a model without a price is refused before any upstream call.

mod common;

use ailurus::bus::headers::{self, ReplyKind};
use ailurus::bus::subjects::{self, Token};
use ailurus::config::Config;
use ailurus::formats::Format;
use ailurus::protocol::Platform;
use ailurus::quota::account::QuotaStore;
use ailurus::quota::tokens::TokenStore;
use async_nats::HeaderMap;
use common::upstream::{Api, Upstream, Usage};
use common::{funded, platform_of, usage_records, Stack};
use serde_json::{json, Value};
use std::time::Duration;

/// Longest any single wait may take.
const WAIT: Duration = Duration::from_secs(30);

/// A gateway in token mode whose one channel is `up`'s `api`, serving `billed-*` (priced at
/// $1 / $5 per 1M tokens) and `free-*` (no price), with `extra` config appended.
async fn gateway(up: &Upstream, api: Api, extra: &str) -> (Stack, TokenStore, QuotaStore) {
    let var = format!("BILLING_KEY_{}", api.kind().to_uppercase());
    std::env::set_var(&var, "sk-upstream-secret");
    let toml = format!(
        "[worker]\nrequest_timeout_ms = 20000\n[routing]\nbuiltin_mock = false\n\
         [[pricing.models]]\npattern = \"billed-*\"\ninput = 1.0\noutput = 5.0\n{extra}\n\
         [[channels]]\nname = \"up\"\nkind = \"{}\"\nbase_url = \"{}\"\napi_key_env = [\"{var}\"]\n\
         models = [\"billed-*\", \"free-*\"]\n",
        api.kind(),
        up.base_url(api)
    );
    billing_stack(&toml).await
}

/// A nats-server with the streams, one worker on `toml`, and the token and quota stores.
async fn billing_stack(toml: &str) -> (Stack, TokenStore, QuotaStore) {
    let config: Config = toml::from_str(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    config.validate().unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let mut stack = Stack::server_only().await;
    stack.apply_streams().await;
    stack.add_worker(config).await;
    let js = async_nats::jetstream::new(stack.client.clone());
    let tokens = TokenStore::open(&js).await.expect("tokens");
    let quota = QuotaStore::open(stack.client.clone()).await.expect("quota");
    (stack, tokens, quota)
}

/// The client format that speaks `api` natively (pass-through) — billing must hold there too.
fn format_of(api: Api) -> Format {
    match api {
        Api::OpenAi => Format::OpenAiChat,
        Api::Anthropic => Format::AnthropicMessages,
        Api::Responses => Format::OpenAiResponses,
        Api::Gemini => Format::GeminiGenerate,
    }
}

/// A request body in `format` for `model`, with the output cap `cap` when given.
fn body(format: Format, model: &str, stream: bool, cap: Option<u32>) -> Vec<u8> {
    let mut v = match format {
        Format::AnthropicMessages => json!({"model": model, "stream": stream,
            "messages": [{"role": "user", "content": "how much?"}]}),
        Format::OpenAiChat => json!({"model": model, "stream": stream,
            "messages": [{"role": "user", "content": "how much?"}]}),
        Format::OpenAiResponses => json!({"model": model, "stream": stream, "input": "how much?"}),
        Format::GeminiGenerate => json!({"contents": [{"role": "user", "parts": [{"text": "how much?"}]}]}),
    };
    if let Some(c) = cap {
        match format {
            Format::AnthropicMessages | Format::OpenAiChat => v["max_tokens"] = c.into(),
            Format::OpenAiResponses => v["max_output_tokens"] = c.into(),
            Format::GeminiGenerate => v["generationConfig"] = json!({"maxOutputTokens": c}),
        }
    } else if format == Format::AnthropicMessages {
        // Anthropic requires max_tokens; the "no cap" case is covered by the other formats.
        v["max_tokens"] = 64.into();
    }
    v.to_string().into_bytes()
}

/// What one request got: the final reply's kind and status, and its last payload.
struct Got {
    kind: ReplyKind,
    status: Option<u16>,
    text: String,
}

async fn send(stack: &Stack, token: &str, format: Format, model: &str, stream: bool, cap: Option<u32>) -> Got {
    let trace = Token::random();
    let mut h = HeaderMap::new();
    h.insert(headers::FORMAT, format.as_str());
    h.insert(headers::TRACE, trace.as_str());
    if format == Format::GeminiGenerate {
        h.insert(headers::MODEL, model);
        h.insert(headers::OP, if stream { "stream" } else { "generate" });
    }
    let payload = body(format, model, stream, cap);
    let mut replies = stack
        .requester()
        .signed_by(token)
        .send_raw(subjects::request(platform_of(format)), h, payload.into(), Some(trace))
        .await
        .expect("send");
    let mut text = String::new();
    loop {
        let r = tokio::time::timeout(WAIT, replies.next()).await.expect("reply in time").expect("a reply").expect("ok");
        match r.kind {
            ReplyKind::Heartbeat => {}
            ReplyKind::Chunk => text.push_str(&String::from_utf8_lossy(&r.payload)),
            kind => {
                text.push_str(&String::from_utf8_lossy(&r.payload));
                return Got { kind, status: r.status, text };
            }
        }
    }
}

/// The output cap an upstream request carried, in its own API's field.
fn cap_sent(api: Api, req: &Value) -> Option<u64> {
    match api {
        Api::OpenAi => req.get("max_completion_tokens").or_else(|| req.get("max_tokens")),
        Api::Anthropic => req.get("max_tokens"),
        Api::Responses => req.get("max_output_tokens"),
        Api::Gemini => req.pointer("/generationConfig/maxOutputTokens"),
    }
    .and_then(Value::as_u64)
}

/// One row of the cap table: what the client sends, what the upstream reports, and what
/// must follow.
struct CapCase {
    /// The client's own output cap.
    client_cap: Option<u32>,
    /// Output tokens the upstream reports.
    reported_output: u64,
    /// The cap the upstream must have received: exactly, or at most (the gateway's cap is
    /// what the balance pays for).
    cap: CapWant,
    /// Whether the answer is billed above its hold.
    overage: bool,
}

enum CapWant {
    Exactly(u64),
    AtMost(u64),
}

#[tokio::test]
async fn every_answer_is_bounded_and_an_ignored_cap_is_an_overage() {
    // $0.01 of quota; $5 per 1M output tokens: the balance pays for ~2,000 output tokens.
    let cases = [
        // The gateway writes the cap (what 5,000 units pay for); the upstream ignores it and
        // reports 200,000 output tokens: charged, and recorded as an overage.
        CapCase { client_cap: None, reported_output: 200_000, cap: CapWant::AtMost(2_000), overage: true },
        // The gateway's cap is honoured: no overage.
        CapCase { client_cap: None, reported_output: 1_000, cap: CapWant::AtMost(2_000), overage: false },
        // The client's own cap goes through untouched and is honoured.
        CapCase { client_cap: Some(300), reported_output: 300, cap: CapWant::Exactly(300), overage: false },
    ];
    for api in Api::ALL {
        for stream in [false, true] {
            for (i, case) in cases.iter().enumerate() {
                let format = format_of(api);
                if format == Format::AnthropicMessages && case.client_cap.is_none() {
                    continue; // Anthropic clients always send max_tokens.
                }
                let what = format!("{api:?} stream={stream} case {i}");
                let up = Upstream::start().await;
                up.script(|s| {
                    s.usage = Usage { input: 12, output: case.reported_output, cache_read: 0, cache_write: 0 }
                });
                let (stack, tokens, quota) = gateway(&up, api, "").await;
                let (user, token) = funded(&tokens, &quota, "payer", 5_000).await;
                let got = send(&stack, &token, format, "billed-1", stream, case.client_cap).await;
                assert_eq!(got.kind, ReplyKind::Done, "{what}: {}", got.text);
                let sent = up.requests().last().map(|r| r.json()).expect("the upstream got the request");
                let cap = cap_sent(api, &sent).unwrap_or_else(|| panic!("{what}: no cap in {sent}"));
                match case.cap {
                    CapWant::Exactly(n) => assert_eq!(cap, n, "{what}"),
                    CapWant::AtMost(n) => assert!(cap > 0 && cap <= n, "{what}: cap {cap}"),
                }
                let recs = usage_records(&stack.client, &user, 1, WAIT).await;
                assert_eq!(recs.len(), 1, "{what}");
                let charged = recs[0].quota;
                let want = ((12.0 * 1.0 + case.reported_output as f64 * 5.0) / 1_000_000.0 * 500_000.0).ceil() as i64;
                assert_eq!(charged, want, "{what}: charged what the upstream reported");
                assert_eq!(recs[0].overage > 0, case.overage, "{what}: overage {}", recs[0].overage);
                let bal = common::quiet_balance(&quota, &user).await;
                assert_eq!(bal.used, charged, "{what}");
                assert!(bal.used - recs[0].overage <= bal.total, "{what}: below zero without a recorded overage");
                if case.overage {
                    // The balance is gone: the next request is refused before the upstream.
                    let n = up.count();
                    let again = send(&stack, &token, format, "billed-1", stream, case.client_cap).await;
                    assert_eq!((again.kind, again.status), (ReplyKind::Error, Some(402)), "{what}: {}", again.text);
                    assert_eq!(up.count(), n, "{what}: a refused request reached the upstream");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_user_funded_for_a_few_requests_never_goes_below_zero_under_load() {
    let up = Upstream::start().await;
    // The upstream reports all the output the cap allows.
    up.script(|s| s.usage = Usage { input: 20, output: 100, cache_read: 0, cache_write: 0 });
    let (stack, tokens, quota) = gateway(&up, Api::OpenAi, "").await;
    // One answer costs (20 × $1 + 100 × $5) / 1M = $0.00052 = 260 units; fund about six.
    let (user, token) = funded(&tokens, &quota, "crowd", 1_800).await;
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let client = stack.client.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let trace = Token::random();
            let mut h = HeaderMap::new();
            h.insert(headers::FORMAT, Format::OpenAiChat.as_str());
            h.insert(headers::TRACE, trace.as_str());
            let payload = body(Format::OpenAiChat, "billed-1", false, Some(100));
            // A thousand at once on a debug build: more than a second may pass before the
            // worker takes a request, so the "no worker" bound is widened.
            let mut requester = ailurus::client::Requester::new(client).signed_by(&token);
            requester.first_reply = Duration::from_secs(60);
            let mut replies = requester
                .send_raw(subjects::request(Platform::Openai), h, payload.into(), Some(trace))
                .await
                .expect("send");
            loop {
                let r = tokio::time::timeout(Duration::from_secs(60), replies.next())
                    .await
                    .expect("reply in time")
                    .expect("a reply")
                    .expect("ok");
                if matches!(r.kind, ReplyKind::Done | ReplyKind::Error) {
                    return (r.kind, r.status);
                }
            }
        }));
    }
    let (mut ok, mut refused) = (0usize, 0usize);
    for t in tasks {
        match t.await.expect("task") {
            (ReplyKind::Done, _) => ok += 1,
            (ReplyKind::Error, Some(402)) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(ok >= 1 && refused >= 900, "ok {ok}, refused {refused}");
    let recs = usage_records(&stack.client, &user, ok, WAIT).await;
    let bal = common::quiet_balance(&quota, &user).await;
    let overage: i64 = recs.iter().map(|r| r.overage).sum();
    assert_eq!(overage, 0, "an upstream within the bounds makes no overage");
    assert!(bal.used <= bal.total, "spent {} of {}", bal.used, bal.total);
    assert_eq!(recs.iter().map(|r| r.quota).sum::<i64>(), bal.used, "the ledger adds up to what was spent");
    println!("1000 concurrent: {ok} answered, {refused} refused (402); used {} of {}", bal.used, bal.total);
}

#[tokio::test]
async fn unpriced_models_are_refused_before_the_upstream_unless_free() {
    for api in Api::ALL {
        let format = format_of(api);
        let up = Upstream::start().await;
        let (stack, tokens, quota) = gateway(&up, api, "").await;
        let (_, token) = funded(&tokens, &quota, "pat", 1_000_000).await;
        let got = send(&stack, &token, format, "free-1", false, Some(50)).await;
        assert_eq!((got.kind, got.status), (ReplyKind::Error, Some(403)), "{api:?}: {}", got.text);
        let message = common::http::error_message(Some(format), got.text.as_bytes())
            .unwrap_or_else(|e| panic!("{api:?}: not the caller's error shape ({e}): {}", got.text));
        assert!(
            message.contains("\"free-1\"") && message.contains("[[pricing.models]]") && message.contains("unpriced"),
            "{api:?}: {message}"
        );
        assert_eq!(up.count(), 0, "{api:?}: the upstream was called");
    }
    // The operator's explicit opt-in: served, at no charge.
    let up = Upstream::start().await;
    let (stack, tokens, quota) = gateway(&up, Api::OpenAi, "[pricing]\nunpriced = \"free\"\n").await;
    let (user, token) = funded(&tokens, &quota, "pat", 10).await;
    let got = send(&stack, &token, Format::OpenAiChat, "free-1", false, Some(50)).await;
    assert_eq!(got.kind, ReplyKind::Done, "{}", got.text);
    assert_eq!(quota.balance(&user).await.expect("balance").used, 0);
}

#[tokio::test]
async fn cache_tokens_are_billed_right_on_every_pair() {
    // One upstream, four channels (one per API), each serving `billed-<api>`: every client
    // format reaches every upstream kind, by pass-through or conversion.
    let up = Upstream::start().await;
    up.script(|s| s.usage = Usage { input: 100, output: 10, cache_read: 1_000, cache_write: 50 });
    let mut toml = String::from(
        "[worker]\nrequest_timeout_ms = 20000\n[routing]\nbuiltin_mock = false\n\
         [[pricing.models]]\npattern = \"billed-*\"\ninput = 1.0\noutput = 5.0\ncache_read = 0.1\ncache_write = 1.25\n",
    );
    std::env::set_var("BILLING_CACHE_KEY", "sk-upstream-secret");
    for api in Api::ALL {
        toml.push_str(&format!(
            "[[channels]]\nname = \"{k}\"\nkind = \"{k}\"\nbase_url = \"{}\"\napi_key_env = [\"BILLING_CACHE_KEY\"]\n\
             models = [\"billed-{k}\"]\n",
            up.base_url(api),
            k = api.kind()
        ));
    }
    let (stack, tokens, quota) = billing_stack(&toml).await;
    let (user, token) = funded(&tokens, &quota, "cachey", 10_000_000).await;
    let mut failures = Vec::new();
    let mut n = 0;
    for client in [Format::AnthropicMessages, Format::OpenAiChat, Format::OpenAiResponses, Format::GeminiGenerate] {
        for api in Api::ALL {
            for stream in [false, true] {
                let model = format!("billed-{}", api.kind());
                let got = send(&stack, &token, client, &model, stream, Some(64)).await;
                n += 1;
                let what = format!("{client} → {api:?} stream={stream}");
                if got.kind != ReplyKind::Done {
                    failures.push(format!("{what}: {:?} {}", got.status, got.text));
                    continue;
                }
                let recs = usage_records(&stack.client, &user, n, WAIT).await;
                // Records arrive in order: this request's is the newest.
                let Some(rec) = recs.last().filter(|r| r.model == model && recs.len() == n) else {
                    failures.push(format!("{what}: no ledger record"));
                    continue;
                };
                // Only Anthropic reports cache writes; the others count cached tokens inside
                // the prompt, so the uncached input is the prompt minus the cache reads.
                let writes = if api == Api::Anthropic { 50 } else { 0 };
                let want = (100, 10, 1_000, writes);
                let got_classes = (rec.input_tokens, rec.output_tokens, rec.cache_read_tokens, rec.cache_write_tokens);
                if got_classes != want {
                    failures.push(format!(
                        "{what}: (input, output, cache read, cache write) {got_classes:?}, want {want:?}"
                    ));
                }
                let usd = (100.0 * 1.0 + 10.0 * 5.0 + 1_000.0 * 0.1 + writes as f64 * 1.25) / 1_000_000.0;
                let units = (usd * 500_000.0).ceil() as i64;
                if rec.quota != units || (rec.cost_usd - usd).abs() > 1e-12 {
                    failures.push(format!(
                        "{what}: charged {} units (${}), want {units} (${usd})",
                        rec.quota, rec.cost_usd
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {n} pairs billed wrong:\n{}", failures.len(), failures.join("\n"));
}

/// The quota holds written so far: (hold subjects, of which leases).
async fn hold_subjects(stack: &Stack) -> (usize, usize) {
    let js = async_nats::jetstream::new(stack.client.clone());
    let mut subjects = std::collections::BTreeMap::new();
    let mut seq = 1;
    let stream = js.get_stream("QUOTA_HOLDS").await.expect("holds stream");
    while let Ok(m) = stream.direct_get_next_for_subject("quota.hold.>", Some(seq)).await {
        seq = m.sequence + 1;
        let v: Value = serde_json::from_slice(&m.payload).expect("a hold");
        subjects.insert(m.subject.to_string(), v["lease"].as_bool().unwrap_or(false));
    }
    (subjects.len(), subjects.values().filter(|l| **l).count())
}

#[tokio::test]
async fn many_requests_draw_on_one_lease_and_the_counters_follow_the_ledger() {
    let up = Upstream::start().await;
    up.script(|s| s.usage = Usage { input: 12, output: 20, cache_read: 0, cache_write: 0 });
    let (stack, tokens, quota) = gateway(&up, Api::OpenAi, "").await;
    let (user, token) = funded(&tokens, &quota, "leaser", 1_000_000).await;
    let n = 30;
    for i in 0..n {
        let got = send(&stack, &token, Format::OpenAiChat, "billed-1", i % 2 == 0, Some(100)).await;
        assert_eq!(got.kind, ReplyKind::Done, "request {i}: {}", got.text);
    }
    let recs = usage_records(&stack.client, &user, n, WAIT).await;
    assert_eq!(recs.len(), n);
    let bal = common::quiet_balance(&quota, &user).await;
    let (holds, leases) = hold_subjects(&stack).await;
    // Sequential requests inside a lease's life share it: far fewer holds than requests.
    assert!(holds <= 3 && leases == holds, "{holds} holds ({leases} leases) for {n} requests");
    let mut ids: Vec<_> = recs.iter().map(|r| r.hold_id.clone().expect("a record id")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "one record id per request");
    assert!(recs.iter().all(|r| r.lease_id.is_some()), "every record names its lease");
    assert_eq!(bal.used, recs.iter().map(|r| r.quota).sum::<i64>(), "the counter holds the ledger's sum");
    assert_eq!(bal.request_count, n as i64, "every request counted once");
    println!("{n} requests: {holds} lease holds, used {} of {}", bal.used, bal.total);
}

#[tokio::test]
async fn unconfirmed_records_pause_the_user_past_the_stall_and_nothing_is_lost() {
    let up = Upstream::start().await;
    up.script(|s| s.usage = Usage { input: 12, output: 20, cache_read: 0, cache_write: 0 });
    std::env::set_var("BILLING_KEY_STALL", "sk-upstream-secret");
    let toml = format!(
        "[worker]\nrequest_timeout_ms = 20000\nbilling_stall_ms = 1000\nlease_requests = 64\n\
         [routing]\nbuiltin_mock = false\n\
         [[pricing.models]]\npattern = \"billed-*\"\ninput = 1.0\noutput = 5.0\n\
         [[channels]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = [\"BILLING_KEY_STALL\"]\n\
         models = [\"billed-*\"]\n",
        up.base_url(Api::OpenAi)
    );
    let (stack, tokens, quota) = billing_stack(&toml).await;
    let (user, token) = funded(&tokens, &quota, "staller", 1_000_000).await;
    let ask = || send(&stack, &token, Format::OpenAiChat, "billed-1", false, Some(100));
    assert_eq!(ask().await.kind, ReplyKind::Done, "the first request takes a lease");
    usage_records(&stack.client, &user, 1, WAIT).await;

    // The ledger stream goes away: appends fail, records queue on the worker.
    let js = async_nats::jetstream::new(stack.client.clone());
    js.delete_stream("LLM_USAGE").await.expect("delete LLM_USAGE");
    let gone = std::time::Instant::now();
    let (mut answered, mut paused) = (1usize, None);
    while gone.elapsed() < Duration::from_secs(10) {
        let before = up.count();
        let got = ask().await;
        match (got.kind, got.status) {
            (ReplyKind::Done, _) => answered += 1,
            (ReplyKind::Error, Some(503)) => {
                assert!(got.text.contains("billing is paused"), "{}", got.text);
                assert_eq!(up.count(), before, "a paused request reached the upstream");
                paused = Some(gone.elapsed());
                break;
            }
            other => panic!("unexpected {other:?}: {}", got.text),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let paused = paused.expect("the user was paused once records waited past billing_stall_ms");
    assert!(answered > 1, "the lease kept serving before the stall bound");
    assert!(paused >= Duration::from_millis(900), "paused after {paused:?}, before the 1 s bound");

    // The stream comes back: the queued records land, the user is served again.
    let decls = ailurus::streams::load(None).expect("streams");
    ailurus::streams::apply(&js, &decls).await.expect("streams apply");
    let back = std::time::Instant::now();
    loop {
        let got = ask().await;
        if got.kind == ReplyKind::Done {
            answered += 1;
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(15), "still refused after the ledger came back: {}", got.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every answered request once in the ledger (the first one's record went with the old
    // stream), and the counter agrees once the lease is back.
    let recs = usage_records(&stack.client, &user, answered - 1, WAIT).await;
    assert_eq!(recs.len(), answered - 1, "every answer since the stream was recreated, once");
    let bal = common::quiet_balance(&quota, &user).await;
    let first = recs.iter().map(|r| r.quota).min().unwrap_or(0);
    assert_eq!(bal.used, recs.iter().map(|r| r.quota).sum::<i64>() + first, "counter = ledger + the lost first record");
    println!(
        "paused after {paused:?}; {answered} answered; served again {:?} after the ledger returned",
        back.elapsed()
    );
}
