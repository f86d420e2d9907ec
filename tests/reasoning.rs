//! Signed reasoning through every (client format, signing upstream) pair of the conversion
//! layer: the upstream signs its reasoning on a tool-call turn (two parallel calls), the
//! answer is converted for the client (whole and streamed), the client keeps only what the
//! real client keeps, sends the follow-up, and the body built for the upstream must hold
//! exactly what it issued (`support/signed.rs` checks it as the real API does). Two-turn and
//! five-turn loops; a signature of another API never reaches an upstream.
//!
//! Clients kept as the real ones keep them: Claude Code (Anthropic) whole content blocks;
//! Codex (Responses) every output item; Gemini CLI the model parts minus thought parts;
//! a Chat Completions client only content and each call's id, name and arguments, so its
//! pairs go through the reasoning store (`formats::reasoning::{kept, restore}`), emulated
//! here by a map as the worker keeps it in KV.

use ailurus::formats::reasoning::{kept, restore};
use ailurus::formats::{Format, Op, ParseContext};
use ailurus::protocol::accumulate::Accumulator;
use ailurus::protocol::canonical::{Part, Usage};
use ailurus::sse;
use serde_json::{json, Value};
use std::collections::HashMap;
#[path = "support/grammar/mod.rs"]
mod grammar;
#[path = "support/signed.rs"]
mod signed;
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

fn sse_json(bytes: &[u8]) -> Vec<(Option<String>, Value)> {
    sse::parse(bytes)
        .expect("SSE")
        .into_iter()
        .filter(|e| e.data != "[DONE]")
        .map(|e| (e.event, serde_json::from_str(&e.data).expect("JSON data")))
        .collect()
}

/// What one conversion gave the client: its body or stream bytes, and (for the store) the
/// canonical answer the worker accumulated.
struct Answer {
    bytes: Vec<u8>,
    stream: bool,
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

/// An assistant turn as a client keeps it (items in its format) and the (id, name) of the
/// calls it answers.
type Kept = (Vec<Value>, Vec<(String, String)>);

/// The assistant turn as the real client keeps it, in its own format, plus the call
/// (id, name) pairs it will answer.
fn kept_by_client(client: Format, a: &Answer) -> Kept {
    match client {
        ANTHROPIC => {
            let blocks: Vec<Value> = if a.stream {
                let mut blocks: Vec<Value> = Vec::new();
                let mut json_text: Vec<String> = Vec::new();
                for (_, v) in sse_json(&a.bytes) {
                    let i = v["index"].as_u64().unwrap_or(0) as usize;
                    match v["type"].as_str() {
                        Some("content_block_start") => {
                            blocks.push(v["content_block"].clone());
                            json_text.push(String::new());
                        }
                        Some("content_block_delta") => {
                            let d = &v["delta"];
                            let b = &mut blocks[i];
                            match d["type"].as_str() {
                                Some("thinking_delta") => {
                                    b["thinking"] = json!(format!(
                                        "{}{}",
                                        b["thinking"].as_str().unwrap(),
                                        d["thinking"].as_str().unwrap()
                                    ))
                                }
                                Some("signature_delta") => b["signature"] = d["signature"].clone(),
                                Some("text_delta") => {
                                    b["text"] =
                                        json!(format!("{}{}", b["text"].as_str().unwrap(), d["text"].as_str().unwrap()))
                                }
                                Some("input_json_delta") => json_text[i].push_str(d["partial_json"].as_str().unwrap()),
                                _ => {}
                            }
                        }
                        Some("content_block_stop") if blocks[i]["type"] == "tool_use" && !json_text[i].is_empty() => {
                            blocks[i]["input"] = serde_json::from_str(&json_text[i]).expect("tool input JSON");
                        }
                        _ => {}
                    }
                }
                blocks
            } else {
                serde_json::from_slice::<Value>(&a.bytes).expect("JSON")["content"].as_array().cloned().unwrap()
            };
            let calls = blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .map(|b| (b["id"].as_str().unwrap().to_string(), b["name"].as_str().unwrap().to_string()))
                .collect();
            (blocks, calls)
        }
        RESPONSES => {
            let items: Vec<Value> = if a.stream {
                sse_json(&a.bytes)
                    .into_iter()
                    .filter(|(e, _)| e.as_deref() == Some("response.output_item.done"))
                    .map(|(_, v)| v["item"].clone())
                    .collect()
            } else {
                serde_json::from_slice::<Value>(&a.bytes).expect("JSON")["output"].as_array().cloned().unwrap()
            };
            let calls = items
                .iter()
                .filter(|i| i["type"] == "function_call")
                .map(|i| (i["call_id"].as_str().unwrap().to_string(), i["name"].as_str().unwrap().to_string()))
                .collect();
            (items, calls)
        }
        GEMINI => {
            let chunks: Vec<Value> = if a.stream {
                sse_json(&a.bytes).into_iter().map(|(_, v)| v).collect()
            } else {
                vec![serde_json::from_slice(&a.bytes).expect("JSON")]
            };
            // Gemini CLI drops thought parts from its history and keeps the rest.
            let parts: Vec<Value> = chunks
                .iter()
                .flat_map(|c| c["candidates"][0]["content"]["parts"].as_array().cloned().unwrap_or_default())
                .filter(|p| p["thought"] != json!(true))
                .collect();
            let calls = parts
                .iter()
                .filter_map(|p| p.get("functionCall"))
                .map(|c| (c["id"].as_str().unwrap_or_default().to_string(), c["name"].as_str().unwrap().to_string()))
                .collect();
            (parts, calls)
        }
        CHAT => {
            let (content, mut calls): (String, Vec<(String, String, String)>) = if a.stream {
                let mut text = String::new();
                let mut calls: Vec<(String, String, String)> = Vec::new();
                for (_, v) in sse_json(&a.bytes) {
                    let d = &v["choices"][0]["delta"];
                    text.push_str(d["content"].as_str().unwrap_or_default());
                    for tc in d["tool_calls"].as_array().into_iter().flatten() {
                        let i = tc["index"].as_u64().unwrap() as usize;
                        if i == calls.len() {
                            calls.push(Default::default());
                        }
                        let c = &mut calls[i];
                        c.0.push_str(tc["id"].as_str().unwrap_or_default());
                        c.1.push_str(tc["function"]["name"].as_str().unwrap_or_default());
                        c.2.push_str(tc["function"]["arguments"].as_str().unwrap_or_default());
                    }
                }
                (text, calls)
            } else {
                let m = &serde_json::from_slice::<Value>(&a.bytes).expect("JSON")["choices"][0]["message"];
                let calls = m["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|tc| {
                        let s = |v: &Value| v.as_str().unwrap().to_string();
                        (s(&tc["id"]), s(&tc["function"]["name"]), s(&tc["function"]["arguments"]))
                    })
                    .collect();
                (m["content"].as_str().unwrap_or_default().to_string(), calls)
            };
            let tool_calls: Vec<Value> = calls
                .iter_mut()
                .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
                .collect();
            let msg = json!({"role": "assistant", "content": content, "tool_calls": tool_calls});
            (vec![msg], calls.into_iter().map(|(id, name, _)| (id, name)).collect())
        }
    }
}

/// A conversation in the client's format: the user's question, then per turn the kept
/// assistant turn and one result per call.
fn follow_up(client: Format, turns: &[Kept]) -> Vec<u8> {
    let question = "Weather in Paris and Rome?";
    let body = match client {
        ANTHROPIC => {
            let mut messages = vec![json!({"role": "user", "content": question})];
            for (blocks, calls) in turns {
                messages.push(json!({"role": "assistant", "content": blocks}));
                let results: Vec<Value> = calls
                    .iter()
                    .map(|(id, _)| json!({"type": "tool_result", "tool_use_id": id, "content": "sunny"}))
                    .collect();
                messages.push(json!({"role": "user", "content": results}));
            }
            json!({"model": "client-model", "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048},
                "messages": messages})
        }
        RESPONSES => {
            let mut input = vec![json!({"type": "message", "role": "user", "content": question})];
            for (items, calls) in turns {
                input.extend(items.iter().cloned());
                for (id, _) in calls {
                    input.push(json!({"type": "function_call_output", "call_id": id, "output": "sunny"}));
                }
            }
            json!({"model": "client-model", "input": input, "store": false,
                "reasoning": {"effort": "medium", "summary": "auto"}})
        }
        GEMINI => {
            let mut contents = vec![json!({"role": "user", "parts": [{"text": question}]})];
            for (parts, calls) in turns {
                contents.push(json!({"role": "model", "parts": parts}));
                let results: Vec<Value> = calls
                    .iter()
                    .map(|(_, name)| json!({"functionResponse": {"name": name, "response": {"output": "sunny"}}}))
                    .collect();
                contents.push(json!({"role": "user", "parts": results}));
            }
            json!({"contents": contents, "generationConfig": {"thinkingConfig": {"includeThoughts": true}}})
        }
        CHAT => {
            let mut messages = vec![json!({"role": "user", "content": question})];
            for (msg, calls) in turns {
                messages.extend(msg.iter().cloned());
                for (id, _) in calls {
                    messages.push(json!({"role": "tool", "tool_call_id": id, "content": "sunny"}));
                }
            }
            json!({"model": "client-model", "messages": messages, "reasoning_effort": "medium"})
        }
    };
    serde_json::to_vec(&body).expect("JSON")
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
            if let Some((key, parts)) = kept(&a.canonical) {
                store.insert(key, parts);
            }
        }
        history.push(kept_by_client(client, &a));
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
            let (parts, calls) = kept_by_client(GEMINI, &answer(upstream, GEMINI, 1, stream));
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
