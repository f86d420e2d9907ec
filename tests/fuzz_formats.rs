//! Property tests ("fuzzing" with a bounded budget, so they run in CI): converters, decoders,
//! encoders, the SSE parser, pass-through and subject tokens must never panic, whatever
//! they are fed, and what the encoders write must pass the client format's grammar check.
//!
//! Inputs are arbitrary JSON (recursive, with the field names and type tags the formats
//! look for, huge numbers, deep nesting), arbitrary bytes, and mutations of the real
//! fixtures (a subtree replaced, removed or added; bytes flipped; number literals swapped
//! for out-of-range ones), so most cases get deep into the parsers. Case counts keep the
//! whole file well under a minute on two cores; failures are not persisted to files: a case
//! that found a bug is kept below as a named regression test.

use ailurus::bus::subjects::Token;
use ailurus::formats::{passthrough, Format, FormatError, Op, ParseContext};
use ailurus::protocol::accumulate::to_events;
use ailurus::protocol::canonical::{FinishReason, StreamEvent, Usage};
use ailurus::sse;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::OnceLock;
#[path = "support/grammar/mod.rs"]
mod grammar;
use grammar::ValidateStream;

/// `cases` per property, unless `PROPTEST_CASES` asks for more (a longer local run).
fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(cases);
    Config { cases, failure_persistence: None, max_shrink_iters: 4096, ..Config::default() }
}

// ---------------------------------------------------------------------------------------
// Seeds: the real fixtures

/// SSE frames: the `event:` name and the data.
type Frames = Vec<(Option<String>, String)>;

struct Seeds {
    /// Client request bodies of every format.
    requests: Vec<Value>,
    /// Upstream response bodies of every format.
    responses: Vec<Value>,
    /// Upstream streams: the format and its frames.
    streams: Vec<(Format, Frames)>,
    /// All of the above as text, for byte-level mutation.
    texts: Vec<String>,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn seeds() -> &'static Seeds {
    static SEEDS: OnceLock<Seeds> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let requests = [
            "golden/input/request/anthropic.json",
            "golden/input/request/openai_chat.json",
            "golden/input/request/openai_responses.json",
            "golden/input/request/gemini.json",
            "anthropic/claude_code_request.json",
            "openai_chat/req_tools.json",
            "openai_chat/req_image.json",
            "openai_chat/req_json_schema.json",
            "openai_responses/codex_request.json",
            "gemini/cli_generate.json",
            "gemini/cli_stream.json",
        ];
        let responses = [
            "golden/input/response/anthropic.json",
            "golden/input/response/openai_chat.json",
            "golden/input/response/openai_responses.json",
            "golden/input/response/gemini.json",
            "anthropic/upstream_response.json",
            "openai_chat/resp_deepseek_reasoner.json",
            "openai_chat/resp_openai_tools.json",
            "openai_responses/upstream_response.json",
            "gemini/upstream_response.json",
        ];
        let streams = [
            (Format::AnthropicMessages, "anthropic/upstream_stream.sse"),
            (Format::OpenAiChat, "golden/input/stream/openai_chat.sse"),
            (Format::OpenAiChat, "openai_chat/stream_openai_tools.sse"),
            (Format::OpenAiChat, "openai_chat/stream_deepseek_reasoner.sse"),
            (Format::OpenAiChat, "openai_chat/stream_ollama_tool.sse"),
            (Format::OpenAiChat, "openai_chat/stream_openrouter_reasoning.sse"),
            (Format::OpenAiResponses, "openai_responses/upstream_stream.sse"),
            (Format::GeminiGenerate, "golden/input/stream/gemini.sse"),
            (Format::GeminiGenerate, "gemini/upstream_stream_text.sse"),
            (Format::GeminiGenerate, "gemini/upstream_stream_tool.sse"),
        ];
        let mut texts = Vec::new();
        let mut json = |rel: &str| {
            let t = read(rel);
            let v = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{rel}: {e}"));
            texts.push(t);
            v
        };
        let requests = requests.iter().map(|r| json(r)).collect();
        let responses = responses.iter().map(|r| json(r)).collect();
        let streams = streams
            .iter()
            .map(|(f, rel)| {
                let t = read(rel);
                let frames = sse::parse(t.as_bytes()).unwrap().into_iter().map(|e| (e.event, e.data)).collect();
                texts.push(t);
                (*f, frames)
            })
            .collect();
        Seeds { requests, responses, streams, texts }
    })
}

// ---------------------------------------------------------------------------------------
// Arbitrary JSON

/// Field names and values the four formats look for.
const WORDS: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "type",
    "text",
    "tool_calls",
    "id",
    "function",
    "name",
    "arguments",
    "tool_call_id",
    "input",
    "output",
    "call_id",
    "summary",
    "encrypted_content",
    "thinking",
    "signature",
    "data",
    "source",
    "media_type",
    "url",
    "image_url",
    "parts",
    "contents",
    "functionCall",
    "functionResponse",
    "args",
    "response",
    "thought",
    "thoughtSignature",
    "inlineData",
    "fileData",
    "mimeType",
    "fileUri",
    "systemInstruction",
    "generationConfig",
    "thinkingConfig",
    "thinkingBudget",
    "thinkingLevel",
    "tools",
    "functionDeclarations",
    "parameters",
    "parametersJsonSchema",
    "input_schema",
    "tool_choice",
    "system",
    "instructions",
    "reasoning",
    "effort",
    "stream",
    "max_tokens",
    "max_output_tokens",
    "maxOutputTokens",
    "candidates",
    "choices",
    "delta",
    "usage",
    "index",
    "finish_reason",
    "stop_reason",
    "content_block",
    "partial_json",
    "item",
    "output_index",
    "item_id",
    "status",
    "error",
    "code",
    "message",
    "usageMetadata",
    "finishReason",
    "responseId",
    "modelVersion",
    "reasoning_content",
    "refusal",
    "tool_use_id",
    "is_error",
    "format",
    "schema",
    "json_schema",
    "response_format",
    "output_config",
    "stop_sequences",
    "stop",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "input_tokens",
    "output_tokens",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "cachedContentTokenCount",
    "toolConfig",
    "functionCallingConfig",
    "mode",
    "allowedFunctionNames",
    "responseSchema",
    "responseJsonSchema",
    "responseMimeType",
    "properties",
    "items",
    "nullable",
    "anyOf",
    "generateContentRequest",
    "incomplete_details",
    "sequence_number",
    "summary_index",
    "content_index",
    "user",
    "assistant",
    "developer",
    "tool",
    "image",
    "tool_use",
    "tool_result",
    "redacted_thinking",
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "input_text",
    "output_text",
    "input_image",
    "summary_text",
    "base64",
    "json_object",
    "auto",
    "any",
    "none",
    "required",
    "enabled",
    "disabled",
    "adaptive",
    "STOP",
    "MAX_TOKENS",
    "SAFETY",
    "MALFORMED_FUNCTION_CALL",
    "OBJECT",
    "STRING",
    "ANY",
    "AUTO",
    "length",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "text_delta",
    "input_json_delta",
    "signature_delta",
    "thinking_delta",
    "message_delta",
    "message_stop",
    "response.created",
    "response.output_item.added",
    "response.output_item.done",
    "response.output_text.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_part.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.completed",
    "response.incomplete",
    "response.failed",
    "[DONE]",
    "",
    " ",
    "{",
    "{\"a\":1}",
    "[1]",
    "null",
    "data:image/png;base64,AAAA",
    "data:;base64,",
    "data:image/png,raw",
    "https://example.com/a.png",
    "ailurus-redacted:",
    "ailurus-redacted:x",
    "skip_thought_signature_validator",
    "gemini-3-pro-preview",
    "models/gemini-2.5-pro",
    "o3-mini",
    "gpt-5",
    "call_1",
    "toolu_1",
    "\u{0}",
    "é\u{1F600}",
    "\\",
    "\"",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(str::to_string),
        1 => prop::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
        1 => prop::collection::vec(prop::sample::select(&['{', '}', '[', ']', '"', ':', ',', 'a', '1', ' ', '\\'][..]), 0..16)
            .prop_map(String::from_iter),
    ]
}

fn arb_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(&[0i64, 1, -1, 2, 16, 1024, 4095, 4096, 16384, 4294967295, 4294967296, i64::MIN][..])
            .prop_map(Value::from),
        prop::sample::select(&[u64::MAX, u64::MAX - 1, 1 << 53, (1 << 53) + 1][..]).prop_map(Value::from),
        prop_oneof![
            any::<f64>(),
            prop::sample::select(&[0.5, -0.0, 1e308, -1e308, 1.5e-300, 4294967296.0, 9.0e15, 1e19, -1.5][..])
        ]
        .prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        2 => arb_number(),
        4 => arb_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_string(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A value nested `depth` levels deep (arrays, objects, or schema-like `properties`).
fn deep(depth: usize, kind: u8, core: Value) -> Value {
    let mut v = core;
    for i in 0..depth {
        v = match (usize::from(kind) + i) % 3 {
            0 => Value::Array(vec![v]),
            1 => json!({"type": "object", "properties": {"a": v}}),
            _ => json!({"content": [{"type": "thinking", "thinking": v}]}),
        };
    }
    v
}

// ---------------------------------------------------------------------------------------
// Mutations of a seed

#[derive(Debug, Clone)]
enum Mutation {
    Replace(Vec<u16>, Value),
    Remove(Vec<u16>),
    Insert(Vec<u16>, String, Value),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let path = prop::collection::vec(any::<u16>(), 0..10);
    prop_oneof![
        3 => (path.clone(), arb_json()).prop_map(|(p, v)| Mutation::Replace(p, v)),
        2 => path.clone().prop_map(Mutation::Remove),
        2 => (path, arb_string(), arb_json()).prop_map(|(p, k, v)| Mutation::Insert(p, k, v)),
    ]
}

/// Walk down `path` (each step picks a child modulo the container's size) and apply.
fn mutate(v: &mut Value, m: &Mutation) {
    let (path, op) = match m {
        Mutation::Replace(p, _) | Mutation::Remove(p) | Mutation::Insert(p, ..) => (p, m),
    };
    let mut cur = v;
    for (depth, step) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        let len = match &*cur {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            _ => 0,
        };
        if len == 0 {
            break;
        }
        let i = usize::from(*step) % len;
        if last {
            if let Mutation::Remove(_) = op {
                match cur {
                    Value::Array(a) => {
                        a.remove(i);
                    }
                    Value::Object(o) => {
                        let k = o.keys().nth(i).cloned().unwrap_or_default();
                        o.remove(&k);
                    }
                    _ => {}
                }
                return;
            }
        }
        cur = match cur {
            Value::Array(a) => &mut a[i],
            Value::Object(o) => o.values_mut().nth(i).expect("index below len"),
            _ => unreachable!(),
        };
    }
    match op {
        Mutation::Replace(_, new) => *cur = new.clone(),
        Mutation::Remove(_) => *cur = Value::Null,
        Mutation::Insert(_, k, new) => match cur {
            Value::Object(o) => {
                o.insert(k.clone(), new.clone());
            }
            Value::Array(a) => a.push(new.clone()),
            other => *other = new.clone(),
        },
    }
}

/// Byte-level edits of a text: (position, operation, byte).
fn mutate_bytes(text: &str, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    for &(pos, op, byte) in edits {
        let at = if b.is_empty() { 0 } else { pos % (b.len() + 1) };
        match op % 4 {
            0 => b.insert(at, byte),
            1 if at < b.len() => {
                b.remove(at);
            }
            2 if at < b.len() => b[at] = byte,
            _ => b.truncate(at),
        }
    }
    b
}

const NUMBER_LITERALS: &[&str] = &[
    "1e999",
    "-1e999",
    "18446744073709551616",
    "-9223372036854775809",
    "1.7976931348623157e308",
    "1e-400",
    "4294967296",
    "-1",
    "1.5",
    "0e0",
    "99999999999999999999999999999999999999",
];

/// Replace the `n`-th run of digits in `text` with a tricky number literal.
fn swap_number(text: &str, n: usize, lit: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let runs: Vec<(usize, usize)> = {
        let mut runs = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
                let s = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                runs.push((s, i));
            } else {
                i += 1;
            }
        }
        runs
    };
    if runs.is_empty() {
        return b.to_vec();
    }
    let (s, e) = runs[n % runs.len()];
    [&b[..s], lit.as_bytes(), &b[e..]].concat()
}

/// A body to parse, built in one of several ways.
fn arb_body(seed_values: fn(&Seeds) -> &[Value]) -> impl Strategy<Value = Vec<u8>> {
    let mutated =
        (any::<prop::sample::Index>(), prop::collection::vec(arb_mutation(), 0..4)).prop_map(move |(i, ms)| {
            let values = seed_values(seeds());
            let mut v = i.get(values).clone();
            for m in &ms {
                mutate(&mut v, m);
            }
            serde_json::to_vec(&v).unwrap()
        });
    let bytes_mutated =
        (any::<prop::sample::Index>(), prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6))
            .prop_map(|(i, edits)| mutate_bytes(i.get::<String>(&seeds().texts), &edits));
    let numbers = (any::<prop::sample::Index>(), any::<usize>(), prop::sample::select(NUMBER_LITERALS))
        .prop_map(|(i, n, lit)| swap_number(i.get::<String>(&seeds().texts), n, lit));
    let deep_body = (0usize..140, any::<u8>(), arb_json()).prop_map(|(d, k, core)| {
        let schema = deep(d, k, core);
        serde_json::to_vec(&json!({
            "model": "m", "max_tokens": 10, "input": [{"role": "user", "content": "x"}],
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "thinking", "thinking": schema.clone()}]}],
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "tools": [{"name": "f", "input_schema": schema.clone(), "type": "function", "parameters": schema.clone(),
                       "function": {"name": "f", "parameters": schema.clone()},
                       "functionDeclarations": [{"name": "f", "parameters": schema.clone()}]}],
            "generationConfig": {"responseSchema": schema},
        }))
        .unwrap()
    });
    prop_oneof![
        6 => mutated,
        2 => arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        2 => bytes_mutated,
        1 => numbers,
        1 => deep_body,
    ]
}

fn arb_ctx() -> impl Strategy<Value = ParseContext> {
    (
        prop::option::of(prop_oneof![arb_string(), Just("gemini-2.5-pro".to_string())]),
        prop::sample::select(&[Op::Generate, Op::StreamGenerate, Op::CountTokens][..]),
    )
        .prop_map(|(model, op)| ParseContext { model, op })
}

// ---------------------------------------------------------------------------------------
// Arbitrary stream events

fn arb_usage() -> impl Strategy<Value = Usage> {
    let n = prop_oneof![0u64..5000, Just(u64::MAX), any::<u64>()];
    (n.clone(), n.clone(), n.clone(), n.clone(), n, any::<bool>()).prop_map(|(i, o, r, w, re, est)| Usage {
        input_tokens: i,
        output_tokens: o,
        cache_read_tokens: r,
        cache_write_tokens: w,
        reasoning_tokens: re,
        estimated: est,
    })
}

fn arb_finish() -> impl Strategy<Value = FinishReason> {
    prop::sample::select(
        &[
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::ToolUse,
            FinishReason::ContentFilter,
            FinishReason::StopSequence,
        ][..],
    )
}

fn arb_event() -> impl Strategy<Value = StreamEvent> {
    let s = arb_string;
    let args = prop_oneof![
        s(),
        prop::sample::select(&["{\"a\":", "1}", "{}", "", "[1]", "{\"q\":\"x\"}", "nul"][..]).prop_map(str::to_string)
    ];
    prop_oneof![
        1 => (s(), s()).prop_map(|(id, model)| StreamEvent::Start { id, model }),
        4 => s().prop_map(StreamEvent::Text),
        3 => s().prop_map(StreamEvent::Thinking),
        2 => s().prop_map(StreamEvent::ThinkingSignature),
        1 => s().prop_map(StreamEvent::RedactedThinking),
        3 => (0u32..4, s(), s(), prop::option::of(s()))
            .prop_map(|(index, id, name, signature)| StreamEvent::ToolCallStart { index, id, name, signature }),
        4 => (0u32..5, args).prop_map(|(index, delta)| StreamEvent::ToolCallArgs { index, delta }),
        1 => arb_usage().prop_map(StreamEvent::Usage),
        1 => arb_finish().prop_map(StreamEvent::Finish),
    ]
}

/// How a stream ends: `finish()`, or `error(status)` after the events.
fn arb_end() -> impl Strategy<Value = Option<u16>> {
    prop_oneof![3 => Just(None), 1 => prop_oneof![Just(400u16), Just(429), Just(500), Just(529), 100u16..700].prop_map(Some)]
}

// ---------------------------------------------------------------------------------------
// Checks shared by the properties and the regression tests

const ALL: [Format; 4] = Format::ALL;

fn encode(f: Format, events: &[StreamEvent], end: Option<(u16, &str)>) -> Vec<u8> {
    let mut enc = f.encoder("client-model");
    let mut out = Vec::new();
    for ev in events {
        enc.event(ev, &mut out);
    }
    match end {
        None => enc.finish(&mut out),
        Some((status, msg)) => enc.error(status, msg, &mut out),
    }
    out
}

/// Every encoder's stream for `events` passes its grammar check, and one that finished
/// normally decodes again with the same format's decoder.
fn check_encoders(events: &[StreamEvent], end: Option<(u16, &str)>) -> Result<(), TestCaseError> {
    for f in ALL {
        let bytes = encode(f, events, end);
        if let Err(e) = f.validate_stream(&bytes) {
            return Err(TestCaseError::fail(format!(
                "{f}: invalid stream: {e}\nevents: {events:?}\nend: {end:?}\n{}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        if end.is_none() {
            if let Err(e) = decode(f, &bytes) {
                return Err(TestCaseError::fail(format!(
                    "{f}: own stream does not decode: {e}\nevents: {events:?}\n{}",
                    String::from_utf8_lossy(&bytes)
                )));
            }
        }
    }
    Ok(())
}

fn decode(f: Format, bytes: &[u8]) -> Result<Vec<StreamEvent>, FormatError> {
    let frames = sse::parse(bytes).map_err(FormatError::malformed)?;
    let mut d = f.decoder();
    let mut out = Vec::new();
    for fr in frames {
        out.extend(d.feed(fr.event.as_deref(), &fr.data)?);
    }
    out.extend(d.end()?);
    Ok(out)
}

fn check_request_body(body: &[u8], ctx: &ParseContext) -> Result<(), TestCaseError> {
    for f in ALL {
        let Ok(req) = f.parse_request(body, ctx) else { continue };
        let _ = req.estimate_prompt_tokens();
        for g in ALL {
            for model in ["upstream-model", "gemini-3-pro-preview", "o3-mini"] {
                if let Ok(out) = g.build_request(&req, model) {
                    prop_assert!(
                        serde_json::from_slice::<Value>(&out).is_ok(),
                        "{f} → {g}: build_request wrote invalid JSON"
                    );
                }
            }
        }
    }
    Ok(())
}

fn check_response_body(body: &[u8]) -> Result<(), TestCaseError> {
    for f in ALL {
        let Ok(resp) = f.parse_response(body) else { continue };
        for g in ALL {
            let out = g.render_response(&resp, "client-model");
            prop_assert!(
                serde_json::from_slice::<Value>(&out).is_ok(),
                "{f} → {g}: render_response wrote invalid JSON"
            );
        }
        check_encoders(&to_events(&resp), None)?;
    }
    Ok(())
}

/// Feed frames as the pipeline does (stop at the first error), then re-encode what came out
/// for every client format.
fn check_decoder(f: Format, frames: &[(Option<String>, String)]) -> Result<(), TestCaseError> {
    let mut d = f.decoder();
    let mut events = Vec::new();
    let mut failed: Option<FormatError> = None;
    for (event, data) in frames {
        match d.feed(event.as_deref(), data) {
            Ok(evs) => events.extend(evs),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if failed.is_none() {
        match d.end() {
            Ok(evs) => events.extend(evs),
            Err(e) => failed = Some(e),
        }
    }
    let end = failed.as_ref().map(|e| (e.status, e.message.as_str()));
    check_encoders(&events, end)
}

fn arb_frames() -> impl Strategy<Value = (Format, Frames)> {
    let event_name = prop::option::of(arb_string());
    let data = prop_oneof![
        3 => arb_json().prop_map(|v| v.to_string()),
        1 => arb_string(),
        1 => prop::collection::vec(any::<u8>(), 0..32).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    let random = (prop::sample::select(ALL.to_vec()), prop::collection::vec((event_name, data), 0..12));
    // A real stream with some frames mutated, dropped, duplicated or swapped.
    let edited = (any::<prop::sample::Index>(), prop::collection::vec((any::<u16>(), 0u8..5, arb_mutation()), 0..5))
        .prop_map(|(i, edits)| {
            let (f, frames) = i.get(&seeds().streams);
            let mut frames = frames.clone();
            for (at, op, m) in edits {
                if frames.is_empty() {
                    break;
                }
                let k = usize::from(at) % frames.len();
                match op {
                    0 | 1 => {
                        if let Ok(mut v) = serde_json::from_str::<Value>(&frames[k].1) {
                            mutate(&mut v, &m);
                            frames[k].1 = v.to_string();
                        }
                    }
                    2 => {
                        frames.remove(k);
                    }
                    3 => {
                        let dup = frames[k].clone();
                        frames.insert(k, dup);
                    }
                    _ => {
                        let j = (k + 1) % frames.len();
                        frames.swap(k, j);
                    }
                }
            }
            (*f, frames)
        });
    prop_oneof![1 => random, 3 => edited]
}

// ---------------------------------------------------------------------------------------
// The properties

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn requests_never_panic(body in arb_body(|s| &s.requests), ctx in arb_ctx()) {
        check_request_body(&body, &ctx)?;
    }

    #[test]
    fn responses_never_panic(body in arb_body(|s| &s.responses)) {
        check_response_body(&body)?;
    }
}

proptest! {
    #![proptest_config(config(1200))]

    #[test]
    fn decoders_never_panic_and_what_they_emit_encodes_validly((f, frames) in arb_frames()) {
        check_decoder(f, &frames)?;
        // The same frames into the other decoders too.
        for g in ALL.into_iter().filter(|g| *g != f) {
            check_decoder(g, &frames)?;
        }
    }
}

proptest! {
    #![proptest_config(config(3500))]

    #[test]
    fn encoders_write_valid_streams_for_any_event_sequence(
        events in prop::collection::vec(arb_event(), 0..24),
        end in arb_end(),
    ) {
        check_encoders(&events, end.map(|s| (s, "upstream failed")))?;
    }
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn sse_parse_never_panics(text in prop_oneof![
        arb_string(),
        prop::collection::vec(prop::sample::select(&["data: ", "event: ", ":", "\n", "\r\n", "\r", "x", "{}", " ", "id: 1", "data:"][..]), 0..20)
            .prop_map(|p| p.concat()),
    ], bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = sse::parse(text.as_bytes());
        let _ = sse::parse(&bytes);
    }

    #[test]
    fn sse_frames_round_trip(
        event in prop::option::of("[a-z._]{1,20}"),
        data in prop::collection::vec(any::<char>().prop_filter("one line", |c| *c != '\n' && *c != '\r'), 0..40)
            .prop_map(String::from_iter),
    ) {
        let mut out = Vec::new();
        sse::frame(&mut out, event.as_deref(), &data);
        let parsed = sse::parse(&out).map_err(TestCaseError::fail)?;
        prop_assert_eq!(parsed, vec![sse::SseEvent { event, data }]);
    }

    #[test]
    fn token_accepts_exactly_the_subject_alphabet(value in prop_oneof![
        "[A-Za-z0-9_-]{0,140}",
        prop::collection::vec(any::<char>(), 0..140).prop_map(String::from_iter),
        ("[A-Za-z0-9_-]{0,70}", prop::sample::select(&[".", "*", ">", " ", "\u{e9}", "\0", "\n", "/"][..]), "[A-Za-z0-9_-]{0,70}")
            .prop_map(|(a, b, c)| format!("{a}{b}{c}")),
    ]) {
        let ok = (1..=128).contains(&value.len())
            && value.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        let got = Token::new("field", &value);
        prop_assert_eq!(got.is_ok(), ok, "{:?} → {:?}", value, got);
    }
}

// ---------------------------------------------------------------------------------------
// Pass-through: byte-level bodies, including repeated keys and odd whitespace.

fn arb_ws() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(&[" ", "\t", "\n", "\r\n", ""][..]), 0..3).prop_map(|w| w.concat())
}

/// A top-level object written by hand: keys (maybe repeated) with arbitrary JSON values.
fn arb_object_text() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        3 => prop::sample::select(&["model", "stream_options", "messages", "stream", "x"][..]).prop_map(str::to_string),
        1 => arb_string(),
    ];
    prop::collection::vec((arb_ws(), key, arb_ws(), arb_ws(), arb_json(), arb_ws()), 0..6).prop_map(|fields| {
        let mut s = String::from("{");
        for (i, (w1, k, w2, w3, v, w4)) in fields.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!("{w1}{}{w2}:{w3}{v}{w4}", Value::from(k.as_str())));
        }
        s.push('}');
        s.into_bytes()
    })
}

fn check_passthrough(f: Format, raw: &[u8], stream: bool) -> Result<(), TestCaseError> {
    let Ok(out) = passthrough::body(f, raw, "upstream-model", stream) else { return Ok(()) };
    // (Deeper than serde_json's recursion limit: valid JSON that only the worker's parse of
    // the request refuses, before pass-through is reached.)
    let Ok(before) = serde_json::from_slice::<Value>(raw) else { return Ok(()) };
    let after: Value = serde_json::from_slice(&out)
        .map_err(|e| TestCaseError::fail(format!("{f}: output is not JSON: {e}\n{}", String::from_utf8_lossy(&out))))?;
    if f == Format::GeminiGenerate {
        prop_assert_eq!(&out[..], raw);
        return Ok(());
    }
    // What the upstream reads (the last of repeated keys, as JSON parsers do) is our model.
    prop_assert_eq!(&after["model"], &json!("upstream-model"), "{}: {}", f, String::from_utf8_lossy(&out));
    let (Value::Object(mut a), Value::Object(mut b)) = (before, after) else {
        return Err(TestCaseError::fail("not an object"));
    };
    for m in [&mut a, &mut b] {
        m.remove("model");
        if f == Format::OpenAiChat && stream {
            m.remove("stream_options");
        }
    }
    prop_assert_eq!(a, b, "{}: other fields changed", f);
    if f == Format::OpenAiChat && stream {
        let v: Value = serde_json::from_slice(&out).unwrap_or_default();
        prop_assert_eq!(&v["stream_options"]["include_usage"], &json!(true), "{}", String::from_utf8_lossy(&out));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2500))]

    #[test]
    fn passthrough_changes_only_the_model(
        raw in prop_oneof![
            3 => arb_object_text(),
            1 => arb_body(|s| &s.requests),
        ],
        stream in any::<bool>(),
    ) {
        for f in ALL {
            check_passthrough(f, &raw, stream)?;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Deterministic edge cases (and regressions found by the properties above)

#[test]
fn deepest_nesting_serde_accepts_does_not_overflow_the_stack() {
    // serde_json refuses more than 128 levels; everything up to that must convert.
    for kind in 0..3 {
        for depth in [30, 60, 120] {
            let schema = deep(depth, kind, json!("leaf"));
            let body = serde_json::to_vec(&json!({
                "model": "m", "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"name": "f", "input_schema": schema}],
            }))
            .unwrap();
            check_request_body(&body, &ParseContext::default()).unwrap();
        }
    }
    let gemini = serde_json::to_vec(&json!({
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": deep(60, 1, json!({"type": "STRING"}))}]}],
        "generationConfig": {"responseSchema": deep(60, 1, json!({"type": "OBJECT", "nullable": true}))},
    }))
    .unwrap();
    check_request_body(&gemini, &ParseContext { model: Some("gemini-2.5-pro".into()), op: Op::Generate }).unwrap();
}

#[test]
fn huge_numbers_in_usage_saturate() {
    let max = Usage {
        input_tokens: u64::MAX,
        output_tokens: u64::MAX,
        cache_read_tokens: u64::MAX,
        cache_write_tokens: u64::MAX,
        reasoning_tokens: u64::MAX,
        estimated: false,
    };
    check_encoders(&[StreamEvent::Text("x".into()), StreamEvent::Usage(max)], None).unwrap();
    for body in [
        r#"{"usage":{"input_tokens":18446744073709551615,"cache_creation_input_tokens":18446744073709551615,"output_tokens":1},"content":[]}"#,
        r#"{"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":1,"completion_tokens":18446744073709551615,"prompt_tokens_details":{"cached_tokens":18446744073709551615}}}"#,
        r#"{"status":"completed","output":[],"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":18446744073709551615},"output_tokens":18446744073709551615}}"#,
        r#"{"candidates":[{"content":{"parts":[{"text":"x"}]}}],"usageMetadata":{"promptTokenCount":"18446744073709551615","cachedContentTokenCount":1e300,"thoughtsTokenCount":18446744073709551615,"candidatesTokenCount":18446744073709551615}}"#,
    ] {
        check_response_body(body.as_bytes()).unwrap();
    }
}

#[test]
fn regression_gemini_tool_call_without_a_name() {
    // Found by `encoders_write_valid_streams_for_any_event_sequence` (and by the decoder
    // property, from a Chat stream whose first tool-call fragment lost its name): the Gemini
    // encoder wrote `functionCall.name: ""`, which Gemini's grammar (and its clients) refuse.
    let events = [StreamEvent::ToolCallStart { index: 0, id: "model".into(), name: String::new(), signature: None }];
    check_encoders(&events, None).unwrap();
    let bytes = encode(Format::GeminiGenerate, &events, None);
    assert!(String::from_utf8_lossy(&bytes).contains(r#""name":"unknown_function""#));
    let resp = ailurus::protocol::canonical::ChatResponse {
        id: "r".into(),
        model: "m".into(),
        content: vec![ailurus::protocol::canonical::Part::ToolCall {
            id: "c".into(),
            name: String::new(),
            arguments: "{}".into(),
            signature: None,
        }],
        finish: FinishReason::ToolUse,
        usage: Usage::default(),
    };
    let body: Value = serde_json::from_slice(&Format::GeminiGenerate.render_response(&resp, "m")).unwrap();
    assert_eq!(body["candidates"][0]["content"]["parts"][0]["functionCall"]["name"], "unknown_function");
}

#[test]
fn regression_passthrough_repeated_model_key() {
    // Found by `passthrough_changes_only_the_model`: `{"model":…,"model":…}` had only its
    // first model rewritten, and the upstream reads the last.
    for raw in [&br#"{"model":"upstream-model","model":null}"#[..], br#"{"model":"a","mod\u0065l":"b"}"#] {
        for f in [Format::AnthropicMessages, Format::OpenAiChat, Format::OpenAiResponses] {
            let err = passthrough::body(f, raw, "upstream-model", false).unwrap_err();
            assert_eq!(err.status, 400, "{f}");
            check_passthrough(f, raw, true).unwrap();
        }
    }
}
