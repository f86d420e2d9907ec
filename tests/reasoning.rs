//! Signed reasoning through every (client format, signing upstream) pair of the conversion
//! layer: the upstream signs its reasoning on a tool-call turn (two parallel calls), the
//! answer is converted for the client (whole and streamed), the client keeps only what the
//! real client keeps, sends the follow-up, and the body built for the upstream must hold
//! exactly what it issued (`support/signed.rs` checks it as the real API does). Two-turn and
//! five-turn loops; a signature of another API never reaches an upstream.
//!
//! Clients keep what the real ones keep (`support/clients.rs`); a Chat Completions client
//! keeps no reasoning, so its pairs go through the reasoning store (`formats::reasoning::{kept, restore}`), emulated
//! here by a map as the worker keeps it in KV.

use ailurus::formats::reasoning::{kept, restore};
use ailurus::formats::{Format, Op, ParseContext};
use ailurus::protocol::accumulate::Accumulator;
use ailurus::protocol::canonical::{Part, Usage};
use ailurus::sse;
use serde_json::{json, Value};
use std::collections::HashMap;
#[path = "support/clients.rs"]
mod clients;
#[path = "support/grammar/mod.rs"]
mod grammar;
#[path = "support/signed.rs"]
mod signed;
use clients::{follow_up, kept_by_client};
use grammar::ValidateStream;

const ANTHROPIC: Format = Format::AnthropicMessages;
const CHAT: Format = Format::OpenAiChat;
const RESPONSES: Format = Format::OpenAiResponses;
const GEMINI: Format = Format::GeminiGenerate;
/// The upstreams that sign their reasoning.
const SIGNERS: [Format; 3] = [ANTHROPIC, RESPONSES, GEMINI];

fn ctx(f: Format) -> ParseContext {
    match f {
        GEMINI => ParseContext { model: Some("client-model".into()), op: Op::Generate },
        _ => ParseContext::default(),
    }
}

/// What one conversion gave the client: its body or stream bytes, and (for the store) the
/// canonical answer the worker accumulated.
struct Answer {
    /// The client's body or stream bytes.
    bytes: Vec<u8>,
    /// Whether it is a stream.
    stream: bool,
    /// The answer as the worker accumulated it (what the reasoning store keeps from).
    canonical: ailurus::protocol::canonical::ChatResponse,
}

/// Turn `turn` of `upstream`, converted for a `client`.
fn answer(upstream: Format, client: Format, turn: usize, stream: bool) -> Answer {
    if stream {
        let mut dec = upstream.decoder();
        let mut events = Vec::new();
        for ev in sse::parse(signed::stream(upstream, turn).as_bytes()).expect("upstream SSE") {
            events.extend(dec.feed(ev.event.as_deref(), &ev.data).unwrap_or_else(|e| panic!("{upstream}: {e}")));
        }
        events.extend(dec.end().expect("upstream stream ends"));
        let mut enc = client.encoder("client-model");
        let mut bytes = Vec::new();
        let mut acc = Accumulator::new();
        for ev in &events {
            enc.event(ev, &mut bytes);
            acc.push(ev);
        }
        enc.finish(&mut bytes);
        client.validate_stream(&bytes).unwrap_or_else(|e| panic!("{upstream} → {client}: {e}"));
        Answer { bytes, stream, canonical: acc.into_response("up", Usage::default()) }
    } else {
        let body = serde_json::to_vec(&signed::body(upstream, turn)).expect("JSON");
        let canonical = upstream.parse_response(&body).unwrap_or_else(|e| panic!("{upstream}: {e}"));
        Answer { bytes: client.render_response(&canonical, "client-model"), stream, canonical }
    }
}

/// `turns` tool-call turns of `upstream` through a `client`, then the follow-up body built
/// for `target` (the same upstream, or another after a provider switch). A Chat client's
/// reasoning goes through the store (a map here, KV in the worker).
fn loop_through(upstream: Format, client: Format, target: Format, turns: usize, stream: bool) -> Value {
    loop_with(upstream, client, target, turns, stream, true)
}

fn loop_with(upstream: Format, client: Format, target: Format, turns: usize, stream: bool, store_on: bool) -> Value {
    let mut store: HashMap<String, Vec<Part>> = HashMap::new();
    let mut history = Vec::new();
    for n in 1..=turns {
        let a = answer(upstream, client, n, stream);
        if client == CHAT && store_on {
            if let Some((key, parts)) = kept(&a.canonical.content) {
                store.insert(key, parts);
            }
        }
        history.push(kept_by_client(client, &a.bytes, a.stream));
    }
    let next = follow_up(client, &history);
    let mut req = client.parse_request(&next, &ctx(client)).unwrap_or_else(|e| panic!("{client} follow-up: {e}"));
    if client == CHAT {
        restore(&mut req, |id| store.get(id).cloned());
    }
    let body = target.build_request(&req, "gemini-3-pro-preview").unwrap_or_else(|e| panic!("{target}: {e}"));
    serde_json::from_slice(&body).expect("upstream body is JSON")
}

#[test]
fn every_pair_carries_the_upstreams_reasoning_back_two_and_five_turns() {
    for upstream in SIGNERS {
        for client in [ANTHROPIC, CHAT, RESPONSES, GEMINI] {
            if client == upstream {
                continue; // pass-through: the body is forwarded untouched (tests/formats.rs)
            }
            for stream in [false, true] {
                for turns in [2, 5] {
                    let body = loop_through(upstream, client, upstream, turns, stream);
                    signed::demand(upstream, &body, turns).unwrap_or_else(|e| {
                        panic!("{client} client, {upstream} upstream, stream {stream}, {turns} turns: the upstream answers 400: {e}\n{body:#}")
                    });
                }
            }
        }
    }
}

#[test]
fn a_foreign_signature_never_reaches_another_upstream_and_its_text_stays_as_context() {
    for upstream in SIGNERS {
        for client in [ANTHROPIC, CHAT, RESPONSES, GEMINI] {
            for target in SIGNERS {
                if target == upstream || client == upstream {
                    continue;
                }
                let body = loop_through(upstream, client, target, 2, true);
                for n in 1..=2 {
                    let sig = signed::signature(upstream, n);
                    assert!(
                        !signed::contains_str(&body, &sig),
                        "{upstream} signature sent to {target} via a {client} client:\n{body:#}"
                    );
                    // Gemini signs its calls, not its thought text: that text is unsigned
                    // thinking, which Anthropic and Responses do not take back (documented).
                    assert!(
                        upstream == GEMINI || signed::contains_str(&body, &signed::thought(n)),
                        "{upstream} → {client} → {target}: the thinking text of turn {n} stays as plain context:\n{body:#}"
                    );
                }
                assert!(!signed::contains_str(&body, "ailurus."), "no envelope reaches {target}:\n{body:#}");
            }
        }
    }
}

#[test]
fn without_the_store_a_chat_client_loses_the_reasoning_and_every_signer_would_refuse() {
    for upstream in SIGNERS {
        let body = loop_with(upstream, CHAT, upstream, 2, false, false);
        let e = signed::demand(upstream, &body, 2).expect_err("the scripted upstream must notice");
        assert!(!e.is_empty(), "{upstream}");
    }
}

#[test]
fn the_gemini_client_gets_one_envelope_on_the_first_of_parallel_calls() {
    for upstream in [ANTHROPIC, RESPONSES] {
        for stream in [false, true] {
            let a = answer(upstream, GEMINI, 1, stream);
            let (parts, calls) = kept_by_client(GEMINI, &a.bytes, a.stream);
            assert_eq!(calls.len(), 2, "{upstream}");
            let calls: Vec<&Value> = parts.iter().filter(|p| p.get("functionCall").is_some()).collect();
            let env = calls[0]["thoughtSignature"].as_str().expect("an envelope on the first call");
            assert!(env.starts_with("ailurus.block."), "{env}");
            assert!(calls[1].get("thoughtSignature").is_none(), "{upstream}: only the first call carries it");
        }
    }
}

#[test]
fn a_broken_envelope_is_a_400_naming_the_field() {
    let body = json!({"contents": [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "ailurus.block.!!"}]}]});
    let e = GEMINI.parse_request(&serde_json::to_vec(&body).unwrap(), &ctx(GEMINI)).unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.message.contains("contents[1].parts[0].thoughtSignature"), "{}", e.message);
}

#[test]
fn interleaved_thinking_goes_back_before_its_own_call() {
    let body = json!({"id": "msg_i", "type": "message", "role": "assistant", "model": "up",
        "content": [
            {"type": "thinking", "thinking": "First Paris.", "signature": "SIG-A"},
            {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "thinking", "thinking": "Then Rome.", "signature": "SIG-B"},
            {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Rome"}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1}});
    let want = json!([
        {"type": "thinking", "thinking": "First Paris.", "signature": "SIG-A"},
        {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "thinking", "thinking": "Then Rome.", "signature": "SIG-B"},
        {"type": "tool_use", "id": "toolu_b", "name": "get_weather", "input": {"city": "Rome"}}]);
    let canonical = ANTHROPIC.parse_response(body.to_string().as_bytes()).expect("upstream body");
    for client in [CHAT, RESPONSES, GEMINI] {
        for stream in [false, true] {
            let bytes = if stream {
                let mut enc = client.encoder("client-model");
                let mut out = Vec::new();
                for ev in ailurus::protocol::accumulate::to_events(&canonical) {
                    enc.event(&ev, &mut out);
                }
                enc.finish(&mut out);
                out
            } else {
                client.render_response(&canonical, "client-model")
            };
            let next = follow_up(client, &[kept_by_client(client, &bytes, stream)]);
            let mut req = client.parse_request(&next, &ctx(client)).expect("follow-up parses");
            if client == CHAT {
                let (key, parts) = kept(&canonical.content).expect("kept");
                restore(&mut req, |id| (id == key).then(|| parts.clone()));
            }
            let out: Value = serde_json::from_slice(&ANTHROPIC.build_request(&req, "claude-sonnet-4-5").expect("body"))
                .expect("JSON");
            assert_eq!(out["messages"][1]["content"], want, "{client} client, stream {stream}");
        }
    }
}
