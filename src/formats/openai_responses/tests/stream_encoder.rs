//! The client stream encoder: grammar, round trips through the decoder, errors.

use super::*;
use std::collections::HashMap;

#[derive(Debug, PartialEq)]
enum Block {
    Text(String),
    Thinking(String, Option<String>),
    Redacted(String),
    Call(u32, String, String, Value),
}

#[derive(Debug, PartialEq)]
struct Summary {
    blocks: Vec<Block>,
    usage: Option<Usage>,
    finish: FinishReason,
}

/// What a client sees: text concatenated, thinking with its signature, calls with JSON args.
fn summarize(events: &[StreamEvent]) -> Summary {
    let mut blocks: Vec<Block> = Vec::new();
    let mut args: HashMap<u32, String> = HashMap::new();
    let mut usage = None;
    let mut finish = FinishReason::Stop;
    for ev in events {
        match ev {
            StreamEvent::Start { .. } => {}
            StreamEvent::Text(t) if t.is_empty() => {}
            StreamEvent::Text(t) => match blocks.last_mut() {
                Some(Block::Text(prev)) => prev.push_str(t),
                _ => blocks.push(Block::Text(t.clone())),
            },
            StreamEvent::Thinking(t) if t.is_empty() => {}
            StreamEvent::Thinking(t) => match blocks.last_mut() {
                Some(Block::Thinking(prev, None)) => prev.push_str(t),
                _ => blocks.push(Block::Thinking(t.clone(), None)),
            },
            StreamEvent::ThinkingSignature(sig) => match blocks.last_mut() {
                Some(Block::Thinking(_, slot @ None)) => *slot = Some(sig.clone()),
                _ => blocks.push(Block::Redacted(sig.clone())),
            },
            StreamEvent::RedactedThinking(d) => blocks.push(Block::Redacted(d.clone())),
            StreamEvent::ToolCallStart { index, id, name, signature } => {
                // A call's (Gemini) signature travels as a reasoning item before it.
                blocks.extend(signature.iter().filter(|s| !s.is_empty()).map(|s| Block::Redacted(s.clone())));
                blocks.push(Block::Call(*index, id.clone(), name.clone(), Value::Null));
                args.insert(*index, String::new());
            }
            StreamEvent::ToolCallArgs { index, delta } => {
                if let Some(a) = args.get_mut(index) {
                    a.push_str(delta);
                }
            }
            StreamEvent::Usage(u) => usage = Some(*u),
            StreamEvent::Finish(f) => finish = *f,
        }
    }
    for b in &mut blocks {
        if let Block::Call(index, _, _, v) = b {
            let a = args.get(index).map_or("{}", |a| normalize_args(a));
            *v = serde_json::from_str(a).unwrap_or(Value::String(a.to_string()));
        }
    }
    Summary { blocks, usage, finish }
}

#[test]
fn encoder_streams_validate_and_decode_back() {
    for (name, events) in sequences() {
        let bytes = encode(&events);
        validate_stream(&bytes).unwrap_or_else(|e| panic!("{name}: {e}\n{}", String::from_utf8_lossy(&bytes)));
        let decoded = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut want = summarize(&events);
        if want.usage.is_none() {
            want.usage = Some(Usage::default());
        }
        // Decoded ToolUse needs a call; StopSequence is reported as completed (Stop).
        if want.finish == FinishReason::StopSequence {
            want.finish = if want.blocks.iter().any(|b| matches!(b, Block::Call(..))) {
                FinishReason::ToolUse
            } else {
                FinishReason::Stop
            };
        }
        if want.finish == FinishReason::Stop && want.blocks.iter().any(|b| matches!(b, Block::Call(..))) {
            want.finish = FinishReason::ToolUse;
        }
        // Calls without an id get one made up.
        let mut got = summarize(&decoded);
        for (g, w) in got.blocks.iter_mut().zip(&want.blocks) {
            if let (Block::Call(_, gid, ..), Block::Call(_, wid, ..)) = (g, w) {
                if wid.is_empty() {
                    assert!(gid.starts_with("call_"), "{name}");
                    gid.clear();
                }
            }
        }
        assert_eq!(got, want, "{name}");
        assert!(matches!(decoded.first(), Some(StreamEvent::Start { model, .. }) if model == "client-model"));
    }
}

#[test]
fn encoder_grammar_details() {
    let bytes = encode(&sequences()[0].1);
    let events = sse::parse(&bytes).unwrap();
    let names: Vec<&str> = events.iter().map(|e| e.event.as_deref().unwrap()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.delta",
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let data: Vec<Value> = events.iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect();
    assert_eq!(data[0]["response"]["id"], "resp_msg_01XYZ");
    assert_eq!(data[0]["response"]["status"], "in_progress");
    assert_eq!(data[0]["response"]["model"], "client-model");
    assert_eq!(data[8]["item"]["encrypted_content"], "ailurus.responses.EqQBsig==");
    assert_eq!(data[8]["item"]["summary"], json!([{"type": "summary_text", "text": "Let me think."}]));
    assert_eq!(data[11]["logprobs"], json!([]));
    assert_eq!(data[16]["item"]["arguments"], "");
    assert_eq!(data[16]["item"]["call_id"], "toolu_1");
    assert_eq!(data[20]["item"]["arguments"], "{\"city\":\"Paris\"}");
    let done = &data[25]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"].as_array().unwrap().len(), 4);
    assert_eq!(done["usage"]["input_tokens"], 12 + 56);
    assert_eq!(done["usage"]["input_tokens_details"]["cached_tokens"], 56);
    assert_eq!(done["usage"]["total_tokens"], 12 + 56 + 34);

    let bytes = encode(&[text("x"), StreamEvent::Finish(FinishReason::Length)]);
    let last = sse::parse(&bytes).unwrap().pop().unwrap();
    assert_eq!(last.event.as_deref(), Some("response.incomplete"));
    let v: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(v["response"]["incomplete_details"]["reason"], "max_output_tokens");
}

#[test]
fn encoder_error_ends_the_stream_and_decodes_to_the_status() {
    let cases = [(400, 400), (402, 429), (429, 429), (500, 500), (503, 503), (529, 503), (502, 500)];
    for (prefix_len, (status, decoded_status)) in cases.into_iter().enumerate() {
        let prefix: Vec<StreamEvent> = sequences()[0].1.iter().take(prefix_len * 2).cloned().collect();
        let mut enc = encoder("m");
        let mut out = Vec::new();
        for ev in &prefix {
            enc.event(ev, &mut out);
        }
        enc.error(status, "upstream went away", &mut out);
        // Nothing follows the error.
        enc.event(&text("late"), &mut out);
        enc.finish(&mut out);
        enc.error(500, "again", &mut out);
        validate_stream(&out).unwrap_or_else(|e| panic!("{status}: {e}"));
        let last = sse::parse(&out).unwrap().pop().unwrap();
        assert_eq!(last.event.as_deref(), Some("response.failed"));
        let err = decode(&out).unwrap_err();
        assert_eq!(err.status, decoded_status, "{status}");
        assert!(err.message.contains("upstream went away"));
    }
}

#[test]
fn random_event_sequences_always_validate() {
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..400 {
        let mut enc = encoder("m");
        let mut out = Vec::new();
        for _ in 0..rng.usize(0..30) {
            let ev = match rng.u8(0..12) {
                0 => StreamEvent::Start { id: ["", "x", "resp_y"][rng.usize(0..3)].into(), model: "u".into() },
                1 => text(["", "a", "bc"][rng.usize(0..3)]),
                2 => think(["", "t", "uv"][rng.usize(0..3)]),
                3 => StreamEvent::ThinkingSignature("ailurus.responses.sig".into()),
                4 => StreamEvent::RedactedThinking("ailurus.responses.red".into()),
                5 => tstart(rng.u32(0..3), "id", "name"),
                6 | 7 => targs(rng.u32(0..3), ["", "{", "}", "\"x\""][rng.usize(0..4)]),
                8 => StreamEvent::Usage(usage(rng.u64(..), rng.u64(..), rng.u64(..), rng.u64(..))),
                9 => StreamEvent::Finish(
                    [FinishReason::Stop, FinishReason::Length, FinishReason::ToolUse, FinishReason::ContentFilter]
                        [rng.usize(0..4)],
                ),
                _ => text("z"),
            };
            enc.event(&ev, &mut out);
        }
        if rng.bool() {
            enc.finish(&mut out);
        } else {
            enc.error(rng.u16(400..600), "e", &mut out);
        }
        validate_stream(&out).unwrap_or_else(|e| panic!("round {round}: {e}\n{}", String::from_utf8_lossy(&out)));
        let _ = decode(&out);
    }
}
