//! A signing upstream, as data: what each API that signs its reasoning answers on a
//! tool-call turn (reasoning text, its signature, parallel calls), whole or streamed, and the
//! check each real API makes on the follow-up: the reasoning it issued must come back, in its
//! own slot and unchanged, or it answers 400 (Anthropic: the `thinking` block with its
//! signature first in the assistant turn; Responses: the `reasoning` item with its
//! `encrypted_content` before the calls; Gemini 3: `thoughtSignature` on the first
//! `functionCall` of the turn).
//!
//! Used by `tests/reasoning.rs` over the conversion layer, and by the scripted HTTP upstream
//! of the stack tests.
#![allow(dead_code)]

use ailurus::formats::Format;
use serde_json::{json, Value};

/// The cities a turn asks about: one call each, in parallel.
pub const CITIES: [&str; 2] = ["Paris", "Rome"];

/// The reasoning text of turn `turn`.
pub fn thought(turn: usize) -> String {
    format!("Turn {turn}: the user wants the weather in two cities, so call the tool for each.")
}

/// The signature `upstream` issues on turn `turn` (shaped like the real ones).
pub fn signature(upstream: Format, turn: usize) -> String {
    match upstream {
        Format::AnthropicMessages => format!("EqQBCkgIBxgCKkA{turn}anthropicSignature=="),
        Format::OpenAiResponses => format!("gAAAAABo{turn}encryptedReasoning_Blob=="),
        Format::GeminiGenerate => format!("CiQB0e2K{turn}thoughtSignature=="),
        Format::OpenAiChat => String::new(),
    }
}

/// The call id `upstream` gives call `k` of turn `turn` (Gemini gives none).
fn call_id(upstream: Format, turn: usize, k: usize) -> String {
    match upstream {
        Format::AnthropicMessages => format!("toolu_{turn}_{k}"),
        _ => format!("call_{turn}_{k}"),
    }
}

fn args(k: usize) -> String {
    json!({"city": CITIES[k]}).to_string()
}

/// A whole answer of `upstream` on turn `turn`: signed reasoning, then one call per city.
pub fn body(upstream: Format, turn: usize) -> Value {
    let (t, sig) = (thought(turn), signature(upstream, turn));
    match upstream {
        Format::AnthropicMessages => {
            let mut content = vec![json!({"type": "thinking", "thinking": t, "signature": sig})];
            for (k, city) in CITIES.iter().enumerate() {
                content.push(json!({"type": "tool_use", "id": call_id(upstream, turn, k), "name": "get_weather",
                    "input": {"city": city}}));
            }
            json!({"id": format!("msg_{turn}"), "type": "message", "role": "assistant", "model": "up",
                "content": content, "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 20, "output_tokens": 30}})
        }
        Format::OpenAiResponses => {
            let mut output = vec![json!({"type": "reasoning", "id": format!("rs_{turn}"),
                "summary": [{"type": "summary_text", "text": t}], "encrypted_content": sig})];
            for k in 0..CITIES.len() {
                output.push(json!({"type": "function_call", "id": format!("fc_{turn}_{k}"), "status": "completed",
                    "call_id": call_id(upstream, turn, k), "name": "get_weather", "arguments": args(k)}));
            }
            json!({"id": format!("resp_{turn}"), "object": "response", "status": "completed", "model": "up",
                "output": output, "usage": {"input_tokens": 20, "output_tokens": 30, "total_tokens": 50}})
        }
        Format::GeminiGenerate => {
            let mut parts = vec![json!({"text": t, "thought": true})];
            for (k, city) in CITIES.iter().enumerate() {
                let mut p = json!({"functionCall": {"name": "get_weather", "args": {"city": city}}});
                if k == 0 {
                    p["thoughtSignature"] = json!(sig);
                }
                parts.push(p);
            }
            json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 30, "totalTokenCount": 50},
                "modelVersion": "up", "responseId": format!("r{turn}")})
        }
        Format::OpenAiChat => unreachable!("Chat Completions does not sign reasoning"),
    }
}

fn frame(out: &mut String, event: Option<&str>, data: &Value) {
    if let Some(e) = event {
        out.push_str(&format!("event: {e}\n"));
    }
    out.push_str(&format!("data: {data}\n\n"));
}

/// The same answer streamed as `upstream` streams it.
pub fn stream(upstream: Format, turn: usize) -> String {
    let (t, sig) = (thought(turn), signature(upstream, turn));
    let mut out = String::new();
    match upstream {
        Format::AnthropicMessages => {
            frame(
                &mut out,
                Some("message_start"),
                &json!({"type": "message_start", "message": {"id": format!("msg_{turn}"),
                "type": "message", "role": "assistant", "model": "up", "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 20, "output_tokens": 1}}}),
            );
            frame(
                &mut out,
                Some("content_block_start"),
                &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
            );
            let (a, b) = t.split_at(t.len() / 2);
            for piece in [a, b] {
                frame(
                    &mut out,
                    Some("content_block_delta"),
                    &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": piece}}),
                );
            }
            frame(
                &mut out,
                Some("content_block_delta"),
                &json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "signature_delta", "signature": sig}}),
            );
            frame(&mut out, Some("content_block_stop"), &json!({"type": "content_block_stop", "index": 0}));
            for k in 0..CITIES.len() {
                let i = k + 1;
                frame(
                    &mut out,
                    Some("content_block_start"),
                    &json!({"type": "content_block_start", "index": i,
                    "content_block": {"type": "tool_use", "id": call_id(upstream, turn, k), "name": "get_weather", "input": {}}}),
                );
                frame(
                    &mut out,
                    Some("content_block_delta"),
                    &json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": args(k)}}),
                );
                frame(&mut out, Some("content_block_stop"), &json!({"type": "content_block_stop", "index": i}));
            }
            frame(
                &mut out,
                Some("message_delta"),
                &json!({"type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 30}}),
            );
            frame(&mut out, Some("message_stop"), &json!({"type": "message_stop"}));
        }
        Format::OpenAiResponses => {
            let whole = body(upstream, turn);
            let mut seq = 0;
            let mut ev = |out: &mut String, name: &str, mut v: Value| {
                v["type"] = json!(name);
                v["sequence_number"] = json!(seq);
                seq += 1;
                frame(out, Some(name), &v);
            };
            let mut created = whole.clone();
            created["status"] = json!("in_progress");
            created["output"] = json!([]);
            ev(&mut out, "response.created", json!({"response": created}));
            for (i, item) in whole["output"].as_array().into_iter().flatten().enumerate() {
                let mut added = item.clone();
                if item["type"] == "reasoning" {
                    added["summary"] = json!([]);
                    ev(&mut out, "response.output_item.added", json!({"output_index": i, "item": added}));
                    ev(
                        &mut out,
                        "response.reasoning_summary_part.added",
                        json!({"item_id": item["id"], "output_index": i,
                        "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
                    );
                    ev(
                        &mut out,
                        "response.reasoning_summary_text.delta",
                        json!({"item_id": item["id"], "output_index": i,
                        "summary_index": 0, "delta": t}),
                    );
                } else {
                    added["arguments"] = json!("");
                    ev(&mut out, "response.output_item.added", json!({"output_index": i, "item": added}));
                    ev(
                        &mut out,
                        "response.function_call_arguments.delta",
                        json!({"item_id": item["id"], "output_index": i,
                        "delta": item["arguments"]}),
                    );
                }
                ev(&mut out, "response.output_item.done", json!({"output_index": i, "item": item}));
            }
            ev(&mut out, "response.completed", json!({"response": whole}));
        }
        Format::GeminiGenerate => {
            let whole = body(upstream, turn);
            let parts = whole["candidates"][0]["content"]["parts"].as_array().cloned().unwrap_or_default();
            // The thought first, then the calls with the finish reason and usage.
            let mut first = whole.clone();
            first["candidates"][0]["content"]["parts"] = json!([parts[0]]);
            first["candidates"][0].as_object_mut().map(|c| c.remove("finishReason"));
            first.as_object_mut().map(|o| o.remove("usageMetadata"));
            frame(&mut out, None, &first);
            let mut last = whole;
            last["candidates"][0]["content"]["parts"] = json!(parts[1..]);
            frame(&mut out, None, &last);
        }
        Format::OpenAiChat => unreachable!("Chat Completions does not sign reasoning"),
    }
    out
}

/// Whether `value` contains the string `needle` anywhere (keys excluded).
pub fn contains_str(value: &Value, needle: &str) -> bool {
    match value {
        Value::String(s) => s.contains(needle),
        Value::Array(a) => a.iter().any(|v| contains_str(v, needle)),
        Value::Object(o) => o.values().any(|v| contains_str(v, needle)),
        _ => false,
    }
}

/// The model turns of a follow-up body, in order (`upstream`'s own shape).
fn assistant_turns(upstream: Format, body: &Value) -> Vec<Value> {
    match upstream {
        Format::AnthropicMessages => body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["role"] == "assistant")
            .map(|m| m["content"].clone())
            .collect(),
        Format::GeminiGenerate => body["contents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["role"] == "model")
            .map(|m| m["parts"].clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// What the real API checks on a follow-up that replays turns `1..=turns`: `Ok` when the
/// reasoning it issued on every turn comes back in its slot, unchanged; else the 400
/// message the API would answer with. No other API's signature may appear either.
pub fn demand(upstream: Format, body: &Value, turns: usize) -> Result<(), String> {
    for other in [Format::AnthropicMessages, Format::OpenAiResponses, Format::GeminiGenerate] {
        if other != upstream && (1..=turns).any(|n| contains_str(body, &signature(other, n))) {
            return Err(format!("invalid signature: a {other} signature was sent to {upstream}"));
        }
        if contains_str(body, "ailurus.") {
            return Err("invalid signature: an Ailurus envelope reached the upstream".into());
        }
    }
    match upstream {
        Format::AnthropicMessages => {
            let turns_sent = assistant_turns(upstream, body);
            for n in 1..=turns {
                let want = json!({"type": "thinking", "thinking": thought(n), "signature": signature(upstream, n)});
                let Some(content) = turns_sent.get(n - 1) else {
                    return Err(format!("messages: assistant turn {n} is missing"));
                };
                if content[0] != want {
                    return Err(format!(
                        "messages.{n}.content.0: Expected `thinking` or `redacted_thinking`, but found {}. When `thinking` is enabled, a final `assistant` message must start with a thinking block",
                        content[0]
                    ));
                }
            }
        }
        Format::OpenAiResponses => {
            let input = body["input"].as_array().cloned().unwrap_or_default();
            for n in 1..=turns {
                let want = json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": thought(n)}],
                    "encrypted_content": signature(upstream, n)});
                let Some(pos) = input.iter().position(|i| i == &want) else {
                    return Err(format!(
                        "Item 'fc_{n}_0' of type 'function_call' was provided without its required 'reasoning' item: 'rs_{n}'."
                    ));
                };
                if input.get(pos + 1).is_none_or(|i| i["type"] != "function_call") {
                    return Err(format!("reasoning item of turn {n} is not followed by its function_call"));
                }
            }
        }
        Format::GeminiGenerate => {
            let turns_sent = assistant_turns(upstream, body);
            for n in 1..=turns {
                let Some(parts) = turns_sent.get(n - 1) else {
                    return Err(format!("contents: model turn {n} is missing"));
                };
                let first_call = parts.as_array().into_iter().flatten().find(|p| p.get("functionCall").is_some());
                if first_call.and_then(|p| p.get("thoughtSignature")) != Some(&json!(signature(upstream, n))) {
                    return Err(format!(
                        "Function call `get_weather` in the {n}. content block is missing a `thought_signature`."
                    ));
                }
            }
        }
        Format::OpenAiChat => {}
    }
    Ok(())
}
