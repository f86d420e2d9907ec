//! Client emulations: what each real client keeps of an assistant turn, and the follow-up it
//! sends. Claude Code (Anthropic) keeps whole content blocks; Codex (Responses) every output
//! item; Gemini CLI the model parts minus thought parts; a Chat Completions client only the
//! content and each call's id, name and arguments.
#![allow(dead_code)]

use ailurus::formats::Format;
use ailurus::sse;
use serde_json::{json, Value};

const ANTHROPIC: Format = Format::AnthropicMessages;
const CHAT: Format = Format::OpenAiChat;
const RESPONSES: Format = Format::OpenAiResponses;
const GEMINI: Format = Format::GeminiGenerate;

/// SSE frames as JSON (`[DONE]` left out).
pub fn sse_json(bytes: &[u8]) -> Vec<(Option<String>, Value)> {
    sse::parse(bytes)
        .expect("SSE")
        .into_iter()
        .filter(|e| e.data != "[DONE]")
        .map(|e| (e.event, serde_json::from_str(&e.data).expect("JSON data")))
        .collect()
}

/// An assistant turn as a client keeps it (items in its format) and the (id, name) of the
/// calls it answers.
pub type Kept = (Vec<Value>, Vec<(String, String)>);

/// The assistant turn as the real client keeps it, in its own format, plus the call
/// (id, name) pairs it will answer.
pub fn kept_by_client(client: Format, bytes: &[u8], stream: bool) -> Kept {
    match client {
        ANTHROPIC => {
            let blocks: Vec<Value> = if stream {
                let mut blocks: Vec<Value> = Vec::new();
                let mut json_text: Vec<String> = Vec::new();
                for (_, v) in sse_json(bytes) {
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
                serde_json::from_slice::<Value>(bytes).expect("JSON")["content"].as_array().cloned().unwrap()
            };
            let calls = blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .map(|b| (b["id"].as_str().unwrap().to_string(), b["name"].as_str().unwrap().to_string()))
                .collect();
            (blocks, calls)
        }
        RESPONSES => {
            let items: Vec<Value> = if stream {
                sse_json(bytes)
                    .into_iter()
                    .filter(|(e, _)| e.as_deref() == Some("response.output_item.done"))
                    .map(|(_, v)| v["item"].clone())
                    .collect()
            } else {
                serde_json::from_slice::<Value>(bytes).expect("JSON")["output"].as_array().cloned().unwrap()
            };
            let calls = items
                .iter()
                .filter(|i| i["type"] == "function_call")
                .map(|i| (i["call_id"].as_str().unwrap().to_string(), i["name"].as_str().unwrap().to_string()))
                .collect();
            (items, calls)
        }
        GEMINI => {
            let chunks: Vec<Value> = if stream {
                sse_json(bytes).into_iter().map(|(_, v)| v).collect()
            } else {
                vec![serde_json::from_slice(bytes).expect("JSON")]
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
            let (content, mut calls): (String, Vec<(String, String, String)>) = if stream {
                let mut text = String::new();
                let mut calls: Vec<(String, String, String)> = Vec::new();
                for (_, v) in sse_json(bytes) {
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
                let m = &serde_json::from_slice::<Value>(bytes).expect("JSON")["choices"][0]["message"];
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
pub fn follow_up(client: Format, turns: &[Kept]) -> Vec<u8> {
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
