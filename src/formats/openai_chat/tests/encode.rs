//! The client stream encoder: exact frames, errors, and encoder → decoder round trips.

use super::*;
use crate::formats::openai_chat::response::error_kind;

#[derive(Debug, PartialEq, Default)]
struct Summary {
    text: String,
    thinking: String,
    tools: Vec<(String, String, Value)>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
}

fn summarize(events: &[StreamEvent]) -> Summary {
    let mut s = Summary::default();
    let mut order: Vec<u32> = Vec::new();
    let mut args: Vec<String> = Vec::new();
    let mut heads: Vec<(String, String)> = Vec::new();
    for ev in events {
        match ev {
            StreamEvent::Text(t) => s.text.push_str(t),
            StreamEvent::Thinking(t) => s.thinking.push_str(t),
            StreamEvent::ToolCallStart { index, id, name, .. } => {
                order.push(*index);
                heads.push((id.clone(), name.clone()));
                args.push(String::new());
            }
            StreamEvent::ToolCallArgs { index, delta } => {
                if let Some(p) = order.iter().position(|i| i == index) {
                    args[p].push_str(delta);
                }
            }
            StreamEvent::Usage(u) => s.usage = Some(*u),
            StreamEvent::Finish(f) => s.finish = Some(*f),
            _ => {}
        }
    }
    s.tools = heads
        .into_iter()
        .zip(args)
        .map(|((id, name), a)| (id, name, serde_json::from_str(&a).unwrap_or(Value::String(a))))
        .collect();
    s
}

fn sequences() -> Vec<(&'static str, Vec<StreamEvent>, FinishReason)> {
    vec![
        (
            "text, usage before finish",
            vec![
                start("msg_01", "upstream"),
                text("Hel"),
                text("lo"),
                StreamEvent::Usage(usage(10, 2, 0, 0, 0)),
                StreamEvent::Finish(FinishReason::Stop),
            ],
            FinishReason::Stop,
        ),
        (
            "no start, thinking + signature then text, usage after finish",
            vec![
                think("Think"),
                think("ing."),
                StreamEvent::ThinkingSignature("EqQBCkYIBxgCKkD".into()),
                StreamEvent::RedactedThinking("opaque".into()),
                text("Answer."),
                StreamEvent::Finish(FinishReason::Length),
                StreamEvent::Usage(usage(100, 50, 20, 5, 10)),
            ],
            FinishReason::Length,
        ),
        (
            "tool calls, text after a tool call",
            vec![
                start("resp_1", "u"),
                text("Let me check."),
                tstart(0, "toolu_A", "get_weather"),
                targs(0, "{\"city\":"),
                targs(0, "\"Paris\"}"),
                tstart(1, "toolu_B", "get_time"),
                targs(1, "{}"),
                text(" (checking)"),
                StreamEvent::Finish(FinishReason::ToolUse),
                StreamEvent::Usage(usage(7, 8, 0, 0, 0)),
            ],
            FinishReason::ToolUse,
        ),
        ("zero text", vec![StreamEvent::Finish(FinishReason::ContentFilter)], FinishReason::ContentFilter),
        ("nothing at all, finish missing", vec![], FinishReason::Stop),
        (
            "finish missing after a tool call",
            vec![tstart(0, "", "f"), targs(0, "{\"a\":[1,2]}")],
            FinishReason::ToolUse,
        ),
        (
            "stop sequence, events after finish ignored",
            vec![text("x"), StreamEvent::Finish(FinishReason::StopSequence), text("late")],
            FinishReason::Stop,
        ),
    ]
}

#[test]
fn encoder_streams_validate_and_decode_back() {
    for (name, events, finish) in sequences() {
        let bytes = encode(&events, None);
        validate_stream(&bytes).unwrap_or_else(|e| panic!("{name}: {e}\n{}", String::from_utf8_lossy(&bytes)));
        Format::OpenAiChat.validate_stream(&bytes).unwrap();
        let decoded = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(matches!(decoded.first(), Some(StreamEvent::Start { model, .. }) if model == "client-model"));
        let mut want = summarize(&events);
        want.finish = Some(finish);
        if name.starts_with("stop sequence") {
            want.text = "x".into();
        }
        let mut got = summarize(&decoded);
        // Empty ids are filled in by the encoder.
        for ((id, ..), (want_id, ..)) in got.tools.iter_mut().zip(&want.tools) {
            if want_id.is_empty() {
                assert!(id.starts_with("call_"));
                id.clear();
            }
        }
        assert_eq!(got, want, "{name}");
    }
    // The Start id becomes the chunk id.
    let bytes = encode(&[start("msg_01", "u"), text("a")], None);
    assert!(String::from_utf8(bytes).unwrap().contains("\"id\":\"chatcmpl-msg_01\""));
}

#[test]
fn encoder_exact_frames() {
    let bytes = encode(
        &[
            start("chatcmpl-1", "u"),
            tstart(0, "call_1", "f"),
            targs(0, "{}"),
            StreamEvent::Finish(FinishReason::ToolUse),
        ],
        None,
    );
    let events = sse::parse(&bytes).unwrap();
    let datas: Vec<Value> =
        events.iter().filter(|e| e.data != "[DONE]").map(|e| serde_json::from_str(&e.data).unwrap()).collect();
    assert!(events.iter().all(|e| e.event.is_none()));
    assert_eq!(datas[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert_eq!(
        datas[1]["choices"][0]["delta"],
        json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]})
    );
    assert_eq!(datas[2]["choices"][0]["delta"], json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}));
    assert_eq!(
        datas[3]["choices"][0],
        json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "tool_calls"})
    );
    assert_eq!(events.len(), 5, "no usage chunk without a Usage event");
    assert_eq!(events[4].data, "[DONE]");
    for d in &datas {
        assert_eq!(d["object"], "chat.completion.chunk");
        assert_eq!(d["model"], "client-model");
        assert_eq!(d["id"], "chatcmpl-1");
    }
    // A usage chunk: choices [] and usage, just before [DONE].
    let bytes = encode(&[text("a"), StreamEvent::Usage(usage(3, 4, 1, 0, 0))], None);
    let events = sse::parse(&bytes).unwrap();
    let u: Value = serde_json::from_str(&events[events.len() - 2].data).unwrap();
    assert_eq!(u["choices"], json!([]));
    assert_eq!(u["usage"]["prompt_tokens"], 4);
    assert_eq!(u["usage"]["total_tokens"], 8);
    assert_eq!(u["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
}

#[test]
fn encoder_error_ends_stream() {
    for (events, status) in [
        (vec![text("partial"), tstart(0, "c", "f"), targs(0, "{\"a")], 429u16),
        (vec![], 500),
        (vec![text("x"), StreamEvent::Finish(FinishReason::Stop)], 503),
    ] {
        let bytes = encode(&events, Some((status, "upstream failed")));
        validate_stream(&bytes).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&bytes)));
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("[DONE]"));
        let last = sse::parse(&bytes).unwrap().pop().unwrap();
        let v: Value = serde_json::from_str(&last.data).unwrap();
        assert_eq!(v["error"]["message"], "upstream failed");
        assert_eq!(v["error"]["type"], error_kind(status).0);
        assert_eq!(decode(&bytes).unwrap_err().status, status);
    }
    // Nothing after error or finish.
    let mut e = encoder("m");
    let mut out = Vec::new();
    e.error(500, "x", &mut out);
    let n = out.len();
    e.event(&text("late"), &mut out);
    e.finish(&mut out);
    e.error(500, "again", &mut out);
    assert_eq!(out.len(), n);
}

#[test]
fn encoder_random_sequences_always_validate() {
    let mut rng = fastrand::Rng::with_seed(7);
    let pool = [
        start("s", "m"),
        text("t"),
        text(""),
        think("th"),
        StreamEvent::ThinkingSignature("sig".into()),
        StreamEvent::RedactedThinking("r".into()),
        tstart(0, "a", "f"),
        tstart(1, "b", "g"),
        targs(0, "{"),
        targs(1, "}"),
        targs(9, "x"),
        StreamEvent::Usage(usage(1, 2, 3, 4, 1)),
        StreamEvent::Finish(FinishReason::Stop),
        StreamEvent::Finish(FinishReason::ToolUse),
    ];
    for round in 0..300 {
        let n = rng.usize(0..12);
        let events: Vec<StreamEvent> = (0..n).map(|_| pool[rng.usize(0..pool.len())].clone()).collect();
        let err = if rng.u8(0..4) == 0 { Some((rng.u16(400..600), "e")) } else { None };
        let bytes = encode(&events, err);
        validate_stream(&bytes)
            .unwrap_or_else(|e| panic!("round {round}: {e}\n{events:?}\n{}", String::from_utf8_lossy(&bytes)));
        assert_eq!(decode(&bytes).is_err(), err.is_some(), "round {round}");
    }
}
