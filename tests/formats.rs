//! Cross-format golden tests: every (client format, upstream format) pair, for request bodies,
//! whole response bodies and streams, plus tool-use and signature round trips and
//! pass-through.
//!
//! Inputs live in `tests/fixtures/golden/input/`; the expected outputs in
//! `tests/fixtures/golden/{request,response,stream}/<from>__<to>.*`. Generated ids and
//! timestamps are replaced by placeholders before comparing. `UPDATE_GOLDEN=1 cargo test
//! --test formats` rewrites the expected files; otherwise a mismatch fails with a line diff.

use ailurus::formats::{passthrough, Format, Op, ParseContext};
use ailurus::protocol::accumulate::Accumulator;
use ailurus::protocol::canonical::{ChatRequest, ChatResponse, FinishReason, Part, Role, StreamEvent, Usage};
use ailurus::sse;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
#[path = "support/grammar/mod.rs"]
mod grammar;
use grammar::ValidateStream;

const ANTHROPIC: Format = Format::AnthropicMessages;
const CHAT: Format = Format::OpenAiChat;
const RESPONSES: Format = Format::OpenAiResponses;
const GEMINI: Format = Format::GeminiGenerate;

const CLIENT_MODEL: &str = "client-model";
const UPSTREAM_MODEL: &str = "upstream-model";

// ---------------------------------------------------------------------------------------
// Fixtures and goldens

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn short(f: Format) -> &'static str {
    match f {
        Format::AnthropicMessages => "anthropic",
        Format::OpenAiChat => "openai_chat",
        Format::OpenAiResponses => "openai_responses",
        Format::GeminiGenerate => "gemini",
    }
}

fn read(rel: &str) -> Vec<u8> {
    let path = fixtures().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn client_request(f: Format) -> Vec<u8> {
    read(&format!("golden/input/request/{}.json", short(f)))
}

fn upstream_body(f: Format) -> Vec<u8> {
    read(&format!("golden/input/response/{}.json", short(f)))
}

/// Upstream streams with thinking (+ signature where the API has one), text, two parallel
/// tool calls and usage with cache tokens.
fn upstream_stream(f: Format) -> Vec<u8> {
    match f {
        Format::AnthropicMessages => read("anthropic/upstream_stream.sse"),
        Format::OpenAiResponses => read("openai_responses/upstream_stream.sse"),
        Format::OpenAiChat | Format::GeminiGenerate => read(&format!("golden/input/stream/{}.sse", short(f))),
    }
}

/// The context a bridge would pass: Gemini names the model in the URL.
fn ctx(f: Format, model: &str) -> ParseContext {
    match f {
        Format::GeminiGenerate => ParseContext { model: Some(model.into()), op: Op::Generate },
        _ => ParseContext::default(),
    }
}

fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Compare `actual` with the golden file `rel` (or rewrite it under `UPDATE_GOLDEN=1`).
fn golden(rel: &str, actual: &str) {
    let path = fixtures().join("golden").join(rel);
    if updating() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create golden dir");
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(actual) {
            std::fs::write(&path, actual).expect("write golden");
        }
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!("golden file {} is missing; run UPDATE_GOLDEN=1 cargo test --test formats", path.display())
    });
    if expected != actual {
        panic!(
            "golden mismatch for {rel} (- expected, + actual); run UPDATE_GOLDEN=1 cargo test --test formats to accept:\n{}",
            line_diff(&expected, actual)
        );
    }
}

/// A unified-style line diff with three lines of context.
fn line_diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // Longest common subsequence table, from the end.
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', b[j]));
            j += 1;
        } else {
            ops.push(('-', a[i]));
            i += 1;
        }
    }
    let changed: Vec<usize> = ops.iter().enumerate().filter(|(_, (c, _))| *c != ' ').map(|(k, _)| k).collect();
    let mut out = String::new();
    let mut last_shown: Option<usize> = None;
    for (k, (c, line)) in ops.iter().enumerate() {
        if changed.iter().any(|&x| x.abs_diff(k) <= 3) {
            if last_shown.is_some_and(|l| l + 1 != k) {
                out.push_str("   ...\n");
            }
            out.push_str(&format!("{c} {line}\n"));
            last_shown = Some(k);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Normalising generated ids and timestamps

const ID_PREFIXES: [&str; 9] = ["msg_", "resp_", "rs_", "fc_", "call_", "chatcmpl-", "toolu_", "gen_", ""];

/// A made-up id: an optional known prefix and a NUID (22 characters of [0-9A-Za-z]).
fn is_generated_id(s: &str) -> bool {
    ID_PREFIXES.iter().any(|p| {
        s.strip_prefix(p).is_some_and(|rest| rest.len() == 22 && rest.bytes().all(|c| c.is_ascii_alphanumeric()))
    })
}

/// Replace generated ids by `<id-N>` (the same id gets the same N, so references stay
/// visible) and timestamps by `<time>`.
fn normalize(v: &mut Value, ids: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if matches!(k.as_str(), "created" | "created_at") && val.is_number() {
                    *val = json!("<time>");
                } else {
                    normalize(val, ids);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| normalize(x, ids)),
        Value::String(s) if is_generated_id(s) => {
            let n = match ids.iter().position(|x| x == s) {
                Some(n) => n,
                None => {
                    ids.push(s.clone());
                    ids.len() - 1
                }
            };
            *s = format!("<id-{}>", n + 1);
        }
        _ => {}
    }
}

fn pretty_json(bytes: &[u8], what: &str) -> String {
    let mut v: Value = serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{what} is not JSON: {e}\n{}", String::from_utf8_lossy(bytes)));
    normalize(&mut v, &mut Vec::new());
    let mut s = serde_json::to_string_pretty(&v).expect("serialise");
    s.push('\n');
    s
}

fn normalized_sse(bytes: &[u8]) -> String {
    let mut ids = Vec::new();
    let mut out = String::new();
    for ev in sse::parse(bytes).expect("stream parses as SSE") {
        if let Some(name) = &ev.event {
            out.push_str(&format!("event: {name}\n"));
        }
        let data = match serde_json::from_str::<Value>(&ev.data) {
            Ok(mut v) => {
                normalize(&mut v, &mut ids);
                v.to_string()
            }
            Err(_) => ev.data.clone(),
        };
        out.push_str(&format!("data: {data}\n\n"));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Streams

fn decode(f: Format, bytes: &[u8]) -> Vec<StreamEvent> {
    let mut dec = f.decoder();
    let mut events = Vec::new();
    for ev in sse::parse(bytes).unwrap_or_else(|e| panic!("{f} stream is not SSE: {e}")) {
        events.extend(dec.feed(ev.event.as_deref(), &ev.data).unwrap_or_else(|e| panic!("{f} decoder: {e}")));
    }
    events.extend(dec.end().unwrap_or_else(|e| panic!("{f} decoder end: {e}")));
    events
}

fn encode(f: Format, events: &[StreamEvent]) -> Vec<u8> {
    let mut enc = f.encoder(CLIENT_MODEL);
    let mut out = Vec::new();
    for ev in events {
        enc.event(ev, &mut out);
    }
    enc.finish(&mut out);
    out
}

fn accumulate(events: &[StreamEvent]) -> ChatResponse {
    let mut acc = Accumulator::new();
    for ev in events {
        acc.push(ev);
    }
    acc.into_response("m", Usage::default())
}

// ---------------------------------------------------------------------------------------
// What must survive a conversion

#[derive(Debug, Clone, PartialEq)]
struct Call {
    id: String,
    name: String,
    args: Value,
}

#[derive(Debug)]
struct Summary {
    text: String,
    thinking: String,
    calls: Vec<Call>,
    /// Thinking and tool-call signatures, in order.
    signatures: Vec<String>,
    redacted: Vec<String>,
    /// Signatures and redacted data together, in order.
    opaque: Vec<String>,
    usage: Usage,
    finish: FinishReason,
}

fn args_value(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_string()))
}

fn summarize(resp: &ChatResponse) -> Summary {
    let mut s = Summary {
        text: String::new(),
        thinking: String::new(),
        calls: Vec::new(),
        signatures: Vec::new(),
        redacted: Vec::new(),
        opaque: Vec::new(),
        usage: resp.usage,
        finish: resp.finish,
    };
    for p in &resp.content {
        match p {
            // A Gemini client's block envelope: another API's reasoning, restored here as
            // the client's parser restores it (its text was also shown as thought parts).
            Part::ToolCall { signature: Some(sig), .. } | Part::Thinking { signature: Some(sig), .. }
                if sig.starts_with("ailurus.block.") =>
            {
                for inner in unblock(sig) {
                    match inner {
                        Part::Thinking { signature: Some(sig), .. } => {
                            s.signatures.push(sig.clone());
                            s.opaque.push(sig);
                        }
                        Part::RedactedThinking { data } => {
                            s.redacted.push(data.clone());
                            s.opaque.push(data);
                        }
                        other => panic!("a block holds only reasoning: {other:?}"),
                    }
                }
                if let Part::ToolCall { id, name, arguments, .. } = p {
                    s.calls.push(Call { id: id.clone(), name: name.clone(), args: args_value(arguments) });
                }
                if let Part::Thinking { text, .. } = p {
                    s.thinking.push_str(text);
                }
            }
            Part::Text { text } => s.text.push_str(text),
            Part::Thinking { text, signature } => {
                s.thinking.push_str(text);
                s.signatures.extend(signature.iter().filter(|x| !x.is_empty()).cloned());
                s.opaque.extend(signature.iter().filter(|x| !x.is_empty()).cloned());
            }
            Part::RedactedThinking { data } => {
                s.redacted.push(data.clone());
                s.opaque.push(data.clone());
            }
            Part::ToolCall { id, name, arguments, signature } => {
                s.signatures.extend(signature.iter().filter(|x| !x.is_empty()).cloned());
                s.opaque.extend(signature.iter().filter(|x| !x.is_empty()).cloned());
                s.calls.push(Call { id: id.clone(), name: name.clone(), args: args_value(arguments) });
            }
            Part::Image { .. } | Part::ToolResult { .. } => {}
        }
    }
    s
}

/// The parts of a Gemini block envelope (`ailurus.block.<base64url JSON>`).
fn unblock(sig: &str) -> Vec<Part> {
    use base64::Engine;
    let b64 = sig.strip_prefix("ailurus.block.").expect("a block envelope");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64).expect("base64url");
    serde_json::from_slice(&bytes).expect("canonical parts")
}

/// Whether the client format `via` has a slot for opaque reasoning (signatures, redacted).
fn keeps_signatures(via: Format) -> bool {
    via != CHAT
}

/// `out` (decoded from what the client of format `via` received) carries what `src` had,
/// up to the documented losses of `via`.
fn assert_survives(src: &Summary, out: &Summary, via: Format, what: &str) {
    assert_eq!(out.text, src.text, "{what}: text");
    assert_eq!(out.thinking, src.thinking, "{what}: thinking text");
    assert_eq!(out.calls, src.calls, "{what}: tool calls (ids, names, arguments)");
    if via == RESPONSES {
        // A signature without reasoning text travels as a reasoning item with only
        // `encrypted_content`, which reads back as redacted reasoning (documented).
        assert_eq!(out.opaque, src.opaque, "{what}: signatures and redacted thinking");
    } else if keeps_signatures(via) {
        assert_eq!(out.signatures, src.signatures, "{what}: signatures");
        assert_eq!(out.redacted, src.redacted, "{what}: redacted thinking");
    }
    let (s, o) = (&src.usage, &out.usage);
    assert_eq!(o.prompt_total(), s.prompt_total(), "{what}: prompt tokens in total");
    assert_eq!(o.output_tokens, s.output_tokens, "{what}: output tokens");
    assert_eq!(o.cache_read_tokens, s.cache_read_tokens, "{what}: cache read tokens");
    // Only Anthropic and OpenAI Chat (OpenRouter style) report cache writes.
    if matches!(via, Format::AnthropicMessages | Format::OpenAiChat) {
        assert_eq!(o.cache_write_tokens, s.cache_write_tokens, "{what}: cache write tokens");
        assert_eq!(o.input_tokens, s.input_tokens, "{what}: uncached input tokens");
    }
    // Anthropic has no reasoning-token count.
    if via != ANTHROPIC {
        assert_eq!(o.reasoning_tokens, s.reasoning_tokens, "{what}: reasoning tokens");
    }
    let expected_finish = match (via, src.finish) {
        (Format::AnthropicMessages, f) => f,
        (_, FinishReason::StopSequence) => FinishReason::Stop,
        (_, f) => f,
    };
    assert_eq!(out.finish, expected_finish, "{what}: finish reason");
}

// ---------------------------------------------------------------------------------------
// The one check per (kind, pair)

#[derive(Clone, Copy)]
enum Kind {
    Request,
    Response,
    Stream,
}

/// `a` is the client format, `b` the upstream format.
fn check(kind: Kind, a: Format, b: Format) {
    match kind {
        Kind::Request => check_request(a, b),
        Kind::Response => check_response(a, b),
        Kind::Stream => check_stream(a, b),
    }
}

fn tool_calls_of(req: &ChatRequest) -> Vec<(String, Value)> {
    req.messages
        .iter()
        .flat_map(|m| &m.content)
        .filter_map(|p| match p {
            Part::ToolCall { name, arguments, .. } => Some((name.clone(), args_value(arguments))),
            _ => None,
        })
        .collect()
}

fn tool_results_of(req: &ChatRequest) -> usize {
    req.messages.iter().flat_map(|m| &m.content).filter(|p| matches!(p, Part::ToolResult { .. })).count()
}

fn check_request(a: Format, b: Format) {
    let what = format!("request {a} → {b}");
    let req = a.parse_request(&client_request(a), &ctx(a, CLIENT_MODEL)).unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = match b.build_request(&req, UPSTREAM_MODEL) {
        Ok(body) => {
            // What we send an upstream of format B must be a request that B's own parser takes,
            // with the same tool calls and results.
            let again = b
                .parse_request(&body, &ctx(b, UPSTREAM_MODEL))
                .unwrap_or_else(|e| panic!("{what}: the built body does not parse as {b}: {e}"));
            assert_eq!(tool_calls_of(&again), tool_calls_of(&req), "{what}: tool calls");
            assert_eq!(tool_results_of(&again), tool_results_of(&req), "{what}: tool results");
            assert_eq!(again.tools.len(), req.tools.len(), "{what}: tools");
            pretty_json(&body, &what)
        }
        Err(e) => {
            let mut s = serde_json::to_string_pretty(&json!({"error": {"status": e.status, "message": e.message}}))
                .expect("serialise");
            s.push('\n');
            s
        }
    };
    golden(&format!("request/{}__{}.json", short(a), short(b)), &text);
}

fn check_response(a: Format, b: Format) {
    let what = format!("response {b} → {a}");
    let resp = b.parse_response(&upstream_body(b)).unwrap_or_else(|e| panic!("{what}: {e}"));
    let body = a.render_response(&resp, CLIENT_MODEL);
    // A client of format A reads the same answer back.
    let back = a.parse_response(&body).unwrap_or_else(|e| panic!("{what}: the rendered body does not parse: {e}"));
    assert_survives(&summarize(&resp), &summarize(&back), a, &what);
    golden(&format!("response/{}__{}.json", short(b), short(a)), &pretty_json(&body, &what));
}

fn check_stream(a: Format, b: Format) {
    let what = format!("stream {b} → {a}");
    let events = decode(b, &upstream_stream(b));
    let bytes = encode(a, &events);
    if let Err(e) = a.validate_stream(&bytes) {
        panic!("{what}: the client stream breaks the {a} grammar: {e}\n{}", String::from_utf8_lossy(&bytes));
    }
    let back = decode(a, &bytes);
    assert_survives(&summarize(&accumulate(&events)), &summarize(&accumulate(&back)), a, &what);
    golden(&format!("stream/{}__{}.sse", short(b), short(a)), &normalized_sse(&bytes));
}

macro_rules! pairs {
    ($($name:ident: $a:expr, $b:expr;)*) => {$(
        mod $name {
            use super::*;
            #[test]
            fn request() {
                check(Kind::Request, $a, $b);
            }
            #[test]
            fn response() {
                check(Kind::Response, $a, $b);
            }
            #[test]
            fn stream() {
                check(Kind::Stream, $a, $b);
            }
        }
    )*};
}

// Client format, then upstream format.
pairs! {
    anthropic_client_anthropic_upstream: ANTHROPIC, ANTHROPIC;
    anthropic_client_chat_upstream: ANTHROPIC, CHAT;
    anthropic_client_responses_upstream: ANTHROPIC, RESPONSES;
    anthropic_client_gemini_upstream: ANTHROPIC, GEMINI;
    chat_client_anthropic_upstream: CHAT, ANTHROPIC;
    chat_client_chat_upstream: CHAT, CHAT;
    chat_client_responses_upstream: CHAT, RESPONSES;
    chat_client_gemini_upstream: CHAT, GEMINI;
    responses_client_anthropic_upstream: RESPONSES, ANTHROPIC;
    responses_client_chat_upstream: RESPONSES, CHAT;
    responses_client_responses_upstream: RESPONSES, RESPONSES;
    responses_client_gemini_upstream: RESPONSES, GEMINI;
    gemini_client_anthropic_upstream: GEMINI, ANTHROPIC;
    gemini_client_chat_upstream: GEMINI, CHAT;
    gemini_client_responses_upstream: GEMINI, RESPONSES;
    gemini_client_gemini_upstream: GEMINI, GEMINI;
}

#[test]
fn every_pair_is_covered() {
    // The macro above lists 16 pairs; this fails when a fifth format is added.
    assert_eq!(Format::ALL.len(), 4);
}

#[test]
fn fixture_ids_are_not_mistaken_for_generated_ones() {
    // Normalising must only touch made-up ids: every id in the inputs survives unchanged.
    for f in Format::ALL {
        for bytes in [client_request(f), upstream_body(f)] {
            let mut v: Value = serde_json::from_slice(&bytes).expect("fixture is JSON");
            let mut ids = Vec::new();
            normalize(&mut v, &mut ids);
            assert!(ids.is_empty(), "{f}: fixture strings look generated: {ids:?}");
        }
    }
    assert!(is_generated_id("msg_ABCDEFGHIJKLMNOPQRSTUV"));
    assert!(is_generated_id("ABCDEFGHIJKLMNOPQRSTUV"));
    assert!(!is_generated_id("toolu_01T1x1fJ34qAmk2tNTrN7Up6"));
}

// ---------------------------------------------------------------------------------------
// What clients do with a stream: rebuild the assistant turn as their SDKs do.

fn sse_json(bytes: &[u8]) -> Vec<(Option<String>, Value)> {
    sse::parse(bytes)
        .expect("SSE")
        .into_iter()
        .filter_map(|ev| serde_json::from_str::<Value>(&ev.data).ok().map(|v| (ev.event, v)))
        .collect()
}

/// The Anthropic SDK's accumulation: content blocks with their deltas applied.
fn anthropic_client_content(bytes: &[u8]) -> Vec<Value> {
    let mut blocks: Vec<Value> = Vec::new();
    let mut partial: HashMap<usize, String> = HashMap::new();
    for (_, v) in sse_json(bytes) {
        let index = v["index"].as_u64().unwrap_or(0) as usize;
        match v["type"].as_str() {
            Some("content_block_start") => {
                assert_eq!(index, blocks.len());
                blocks.push(v["content_block"].clone());
            }
            Some("content_block_delta") => {
                let d = &v["delta"];
                let b = &mut blocks[index];
                match d["type"].as_str() {
                    Some("text_delta") => {
                        b["text"] = json!(format!("{}{}", b["text"].as_str().unwrap(), d["text"].as_str().unwrap()))
                    }
                    Some("thinking_delta") => {
                        b["thinking"] =
                            json!(format!("{}{}", b["thinking"].as_str().unwrap(), d["thinking"].as_str().unwrap()))
                    }
                    Some("signature_delta") => b["signature"] = d["signature"].clone(),
                    Some("input_json_delta") => {
                        partial.entry(index).or_default().push_str(d["partial_json"].as_str().unwrap())
                    }
                    other => panic!("unexpected delta {other:?}"),
                }
            }
            Some("content_block_stop") => {
                if let Some(json) = partial.remove(&index) {
                    blocks[index]["input"] = serde_json::from_str(&json).expect("tool input is JSON");
                }
            }
            _ => {}
        }
    }
    blocks
}

/// The OpenAI SDK's accumulation of chat chunks into one assistant message.
fn chat_client_message(bytes: &[u8]) -> Value {
    let mut content = String::new();
    let mut calls: Vec<Value> = Vec::new();
    for (_, v) in sse_json(bytes) {
        let Some(d) = v["choices"].get(0).map(|c| &c["delta"]) else { continue };
        if let Some(t) = d["content"].as_str() {
            content.push_str(t);
        }
        for tc in d["tool_calls"].as_array().into_iter().flatten() {
            let i = tc["index"].as_u64().unwrap() as usize;
            if i == calls.len() {
                calls.push(json!({"id": tc["id"], "type": "function", "function": {"name": tc["function"]["name"], "arguments": ""}}));
            }
            let args = &mut calls[i]["function"]["arguments"];
            *args = json!(format!("{}{}", args.as_str().unwrap(), tc["function"]["arguments"].as_str().unwrap_or("")));
        }
    }
    json!({"role": "assistant", "content": if content.is_empty() { Value::Null } else { json!(content) }, "tool_calls": calls})
}

/// What Codex keeps of a Responses stream: the items of `response.output_item.done`.
fn responses_client_items(bytes: &[u8]) -> Vec<Value> {
    sse_json(bytes)
        .into_iter()
        .filter(|(_, v)| v["type"] == "response.output_item.done")
        .map(|(_, v)| v["item"].clone())
        .collect()
}

fn body_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("built body is JSON")
}

fn stream_through(upstream: Format, client: Format) -> Vec<u8> {
    let bytes = encode(client, &decode(upstream, &upstream_stream(upstream)));
    if let Err(e) = client.validate_stream(&bytes) {
        panic!("{upstream} → {client}: invalid stream: {e}\n{}", String::from_utf8_lossy(&bytes));
    }
    bytes
}

const WEATHER_TOOL_ANTHROPIC: &str = r#"{"name": "get_weather", "description": "Current weather for a city.",
  "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}"#;

fn anthropic_next_request(assistant: Vec<Value>) -> Vec<u8> {
    let results: Vec<Value> = assistant
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| json!({"type": "tool_result", "tool_use_id": b["id"], "content": format!("sunny in {}", b["input"]["city"].as_str().unwrap())}))
        .collect();
    assert!(!results.is_empty(), "the assistant turn has tool_use blocks");
    let tool: Value = serde_json::from_str(WEATHER_TOOL_ANTHROPIC).unwrap();
    serde_json::to_vec(&json!({
        "model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": true,
        "tools": [tool],
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": assistant},
            {"role": "user", "content": results},
        ],
    }))
    .unwrap()
}

// ---------------------------------------------------------------------------------------
// Tool-use round trips

#[test]
fn gemini_upstream_tool_call_reaches_anthropic_client_and_its_result_goes_back() {
    let bytes = stream_through(GEMINI, ANTHROPIC);
    let content = anthropic_client_content(&bytes);
    let uses: Vec<&Value> = content.iter().filter(|b| b["type"] == "tool_use").collect();
    assert_eq!(uses.len(), 2);
    for (u, city) in uses.iter().zip(["Paris", "Rome"]) {
        assert_eq!(u["name"], "get_weather");
        assert_eq!(u["input"], json!({"city": city}));
        assert!(u["id"].as_str().is_some_and(|id| !id.is_empty()));
    }

    let next = anthropic_next_request(content);
    let req = ANTHROPIC.parse_request(&next, &ParseContext::default()).expect("client request parses");
    let body = body_json(&GEMINI.build_request(&req, "gemini-2.5-pro").expect("gemini body"));
    let contents = body["contents"].as_array().expect("contents");
    let model_turn = contents.iter().find(|c| c["role"] == "model").expect("model turn");
    let calls: Vec<&Value> =
        model_turn["parts"].as_array().unwrap().iter().filter(|p| p.get("functionCall").is_some()).collect();
    assert_eq!(calls.len(), 2);
    let last = contents.last().unwrap();
    assert_eq!(last["role"], "user");
    let responses: Vec<&Value> = last["parts"].as_array().unwrap().iter().map(|p| &p["functionResponse"]).collect();
    assert_eq!(responses.len(), 2, "{last}");
    for (r, city) in responses.iter().zip(["Paris", "Rome"]) {
        assert_eq!(r["name"], "get_weather", "the function name is recovered from the tool_use id");
        assert_eq!(r["response"], json!({"content": format!("sunny in {city}")}));
        assert!(r.get("id").is_none(), "the Gemini API rejects ids in requests");
    }
    // And it is a request a Gemini server (our own parser) accepts.
    GEMINI
        .parse_request(&serde_json::to_vec(&body).unwrap(), &ctx(GEMINI, "gemini-2.5-pro"))
        .expect("valid Gemini request");
}

#[test]
fn chat_upstream_tool_calls_reach_responses_client_and_outputs_go_back() {
    let bytes = stream_through(CHAT, RESPONSES);
    let items = responses_client_items(&bytes);
    let calls: Vec<&Value> = items.iter().filter(|i| i["type"] == "function_call").collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["call_id"], "call_0_8f3a1b2c-paris");
    assert_eq!(calls[1]["call_id"], "call_1_4d5e6f7a-rome");
    let mut input = vec![json!({"type": "message", "role": "user", "content": "Weather in Paris and Rome?"})];
    input.extend(items.iter().cloned());
    for c in &calls {
        input.push(json!({"type": "function_call_output", "call_id": c["call_id"], "output": "sunny"}));
    }
    let next = serde_json::to_vec(&json!({"model": "gpt-5", "input": input, "store": false, "stream": true})).unwrap();
    let req = RESPONSES.parse_request(&next, &ParseContext::default()).expect("client request parses");
    let body = body_json(&CHAT.build_request(&req, "deepseek-chat").expect("chat body"));
    let msgs = body["messages"].as_array().unwrap();
    let assistant = msgs.iter().find(|m| m["role"] == "assistant").expect("assistant message");
    let tool_calls = assistant["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(tool_calls.len(), 2);
    for (tc, (id, city)) in
        tool_calls.iter().zip([("call_0_8f3a1b2c-paris", "Paris"), ("call_1_4d5e6f7a-rome", "Rome")])
    {
        assert_eq!(tc["id"], id);
        assert_eq!(tc["type"], "function");
        assert_eq!(tc["function"]["name"], "get_weather");
        let args: Value = serde_json::from_str(tc["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": city}));
    }
    let tools: Vec<&Value> = msgs.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tools.len(), 2);
    assert_eq!(tools[0]["tool_call_id"], "call_0_8f3a1b2c-paris");
    assert_eq!(tools[1]["tool_call_id"], "call_1_4d5e6f7a-rome");
    assert_eq!(tools[0]["content"], "sunny");
    CHAT.parse_request(&serde_json::to_vec(&body).unwrap(), &ParseContext::default()).expect("valid Chat request");
}

#[test]
fn responses_upstream_tool_calls_reach_chat_client_and_results_go_back() {
    let bytes = stream_through(RESPONSES, CHAT);
    let message = chat_client_message(&bytes);
    let calls = message["tool_calls"].as_array().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["id"], "call_AbC123");
    assert_eq!(calls[1]["id"], "call_DeF456");
    let mut messages = vec![json!({"role": "user", "content": "Weather in Paris and Berlin?"}), message];
    for c in &calls {
        messages.push(json!({"role": "tool", "tool_call_id": c["id"], "content": "sunny"}));
    }
    let next = serde_json::to_vec(&json!({"model": "gpt-4.1", "messages": messages, "stream": true})).unwrap();
    let req = CHAT.parse_request(&next, &ParseContext::default()).expect("client request parses");
    let body = body_json(&RESPONSES.build_request(&req, "gpt-5").expect("responses body"));
    let input = body["input"].as_array().unwrap();
    let fcs: Vec<&Value> = input.iter().filter(|i| i["type"] == "function_call").collect();
    let outs: Vec<&Value> = input.iter().filter(|i| i["type"] == "function_call_output").collect();
    assert_eq!(fcs.len(), 2);
    assert_eq!(outs.len(), 2);
    for ((fc, out), (id, city)) in fcs.iter().zip(&outs).zip([("call_AbC123", "Paris"), ("call_DeF456", "Berlin")]) {
        assert_eq!(fc["call_id"], id);
        assert_eq!(fc["name"], "get_weather");
        let args: Value = serde_json::from_str(fc["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": city}));
        assert_eq!(out["call_id"], id);
        assert_eq!(out["output"], "sunny");
    }
    // Outputs come after their calls.
    let last_call = input.iter().rposition(|i| i["type"] == "function_call").unwrap();
    let first_out = input.iter().position(|i| i["type"] == "function_call_output").unwrap();
    assert!(last_call < first_out);
    RESPONSES
        .parse_request(&serde_json::to_vec(&body).unwrap(), &ParseContext::default())
        .expect("valid Responses request");
}

#[test]
fn chat_upstream_tool_calls_reach_anthropic_client_and_results_go_back() {
    let bytes = stream_through(CHAT, ANTHROPIC);
    let content = anthropic_client_content(&bytes);
    let ids: Vec<String> =
        content.iter().filter(|b| b["type"] == "tool_use").map(|b| b["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, ["call_0_8f3a1b2c-paris", "call_1_4d5e6f7a-rome"]);
    let next = anthropic_next_request(content.clone());
    let req = ANTHROPIC.parse_request(&next, &ParseContext::default()).expect("client request parses");
    let body = body_json(&CHAT.build_request(&req, "deepseek-chat").expect("chat body"));
    let msgs = body["messages"].as_array().unwrap();
    let assistant = msgs.iter().find(|m| m["role"] == "assistant").expect("assistant message");
    let tool_calls = assistant["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(tool_calls.iter().map(|t| t["id"].as_str().unwrap()).collect::<Vec<_>>(), ids);
    assert_eq!(assistant["content"], "Let me check both.");
    let tools: Vec<&Value> = msgs.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tools.iter().map(|t| t["tool_call_id"].as_str().unwrap()).collect::<Vec<_>>(), ids);
    assert_eq!(tools[1]["content"], "sunny in Rome");
    // The tool messages follow the assistant message directly.
    let a = msgs.iter().position(|m| m["role"] == "assistant").unwrap();
    assert_eq!(msgs[a + 1]["role"], "tool");
    assert_eq!(msgs[a + 2]["role"], "tool");
}

// ---------------------------------------------------------------------------------------
// Signature round trips

#[test]
fn anthropic_signature_survives_a_responses_client() {
    const SIG: &str = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds=";
    let bytes = stream_through(ANTHROPIC, RESPONSES);
    let items = responses_client_items(&bytes);
    let reasoning = items.iter().find(|i| i["type"] == "reasoning").expect("reasoning item");
    assert_eq!(reasoning["encrypted_content"], format!("ailurus.anthropic.{SIG}"), "sealed with its origin");
    let mut input = vec![json!({"type": "message", "role": "user", "content": "Weather in Paris and Rome?"})];
    input.extend(items.iter().cloned());
    for c in items.iter().filter(|i| i["type"] == "function_call") {
        input.push(json!({"type": "function_call_output", "call_id": c["call_id"], "output": "sunny"}));
    }
    let next = serde_json::to_vec(&json!({"model": "gpt-5", "input": input, "stream": true,
        "reasoning": {"effort": "medium", "summary": "auto"}}))
    .unwrap();
    let req = RESPONSES.parse_request(&next, &ParseContext::default()).expect("client request parses");
    let body = body_json(&ANTHROPIC.build_request(&req, "claude-sonnet-4-5").expect("anthropic body"));
    let assistant = &body["messages"][1];
    assert_eq!(assistant["role"], "assistant");
    assert_eq!(
        assistant["content"][0],
        json!({"type": "thinking", "thinking": "The user wants weather for two cities.", "signature": SIG}),
        "thinking text and signature come back unchanged"
    );
    let uses: Vec<&Value> =
        assistant["content"].as_array().unwrap().iter().filter(|b| b["type"] == "tool_use").collect();
    assert_eq!(uses.len(), 2);
    assert_eq!(uses[0]["id"], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(body["messages"][2]["content"][0]["tool_use_id"], "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
}

#[test]
fn gemini_thought_signature_survives_an_anthropic_client() {
    const SIG: &str = "CiQB0e2Kb9Zt3xk1vQfUpstreamSig==";
    let bytes = stream_through(GEMINI, ANTHROPIC);
    let content = anthropic_client_content(&bytes);
    assert!(
        content.iter().any(|b| b["type"] == "thinking" && b["signature"] == format!("ailurus.gemini.{SIG}")),
        "the functionCall's thoughtSignature reaches the client: {content:?}"
    );
    let next = anthropic_next_request(content);
    let req = ANTHROPIC.parse_request(&next, &ParseContext::default()).expect("client request parses");
    for model in ["gemini-2.5-pro", "gemini-3-pro-preview"] {
        let body = body_json(&GEMINI.build_request(&req, model).expect("gemini body"));
        let model_turn = body["contents"].as_array().unwrap().iter().find(|c| c["role"] == "model").unwrap();
        let parts = model_turn["parts"].as_array().unwrap();
        let calls: Vec<&Value> = parts.iter().filter(|p| p.get("functionCall").is_some()).collect();
        assert_eq!(calls[0]["functionCall"]["args"], json!({"city": "Paris"}));
        assert_eq!(calls[0]["thoughtSignature"], SIG, "{model}: the signature is back on the first call");
        assert!(calls[1].get("thoughtSignature").is_none(), "{model}: {model_turn}");
        assert!(
            parts.iter().all(|p| p.get("thoughtSignature").is_none_or(|s| s == SIG)),
            "{model}: no other (empty) signatures: {model_turn}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Pass-through

#[test]
fn passthrough_changes_only_the_model() {
    for f in Format::ALL {
        let raw = read(&format!("golden/input/passthrough/{}.json", short(f)));
        let text = String::from_utf8(raw.clone()).expect("UTF-8 fixture");
        assert_eq!(
            text.matches("\"client-model-x\"").count(),
            usize::from(f != GEMINI),
            "{f}: fixture names its model once"
        );
        let expected = if f == GEMINI {
            raw.clone()
        } else {
            text.replace("\"client-model-x\"", &format!("\"{UPSTREAM_MODEL}\"")).into_bytes()
        };
        for stream in [false, true] {
            let out = passthrough::body(f, &raw, UPSTREAM_MODEL, stream).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(
                out == expected,
                "{f} (stream {stream}): pass-through changed more than the model:\n{}",
                line_diff(&String::from_utf8_lossy(&expected), &String::from_utf8_lossy(&out))
            );
        }
    }
}

#[test]
fn passthrough_inserts_a_missing_model_and_keeps_the_rest() {
    let raw = b"{ \"messages\" : [ {\"role\":\"user\",\"content\":\"caf\\u00e9\"} ],\n\t\"max_tokens\": 1.0e3 }";
    for f in [ANTHROPIC, RESPONSES] {
        let out = passthrough::body(f, raw, UPSTREAM_MODEL, true).unwrap();
        let mut expected = b"{\"model\":\"upstream-model\",".to_vec();
        expected.extend_from_slice(&raw[1..]);
        assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(expected).unwrap(), "{f}");
    }
}

// The request fixtures really exercise a mid-conversation system message (except Gemini,
// which has none).
#[test]
fn mid_conversation_system_messages_stay_in_place() {
    for f in [ANTHROPIC, CHAT, RESPONSES] {
        let req = f.parse_request(&client_request(f), &ctx(f, CLIENT_MODEL)).unwrap();
        let pos = req.messages.iter().position(|m| m.role == Role::System).expect("a system message mid-conversation");
        assert!(pos > 0, "{f}");
        assert!(req.system.is_some(), "{f}: leading instructions become the system prompt");
    }
}
