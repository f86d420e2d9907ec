//! Tests of the client stream encoder.

use super::*;

#[test]
fn encoder_sequences_validate_and_round_trip() {
    use StreamEvent::*;
    let start = || Start { id: "msg_up".into(), model: "upstream-model".into() };
    let cases: Vec<(&str, Vec<StreamEvent>, Vec<&str>)> = vec![
        (
            "text, usage after finish",
            vec![start(), Text("Hel".into()), Text("lo".into()), Finish(FinishReason::Stop), Usage(usage(5, 2))],
            vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ],
        ),
        (
            "thinking + signature then text, usage before finish",
            vec![
                start(),
                Thinking("Let me ".into()),
                Thinking("think.".into()),
                ThinkingSignature("ailurus.anthropic.sig==".into()),
                Text("Answer".into()),
                Usage(usage(1, 9)),
                Finish(FinishReason::Stop),
            ],
            vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ],
        ),
        (
            "text after a tool call",
            vec![
                start(),
                Text("a".into()),
                tool_start(0, "f"),
                args(0, "{\"q\":"),
                args(0, "1}"),
                Text("b".into()),
                Finish(FinishReason::ToolUse),
            ],
            vec![],
        ),
        (
            "zero text",
            vec![start(), Usage(usage(3, 0)), Finish(FinishReason::Stop)],
            vec!["message_start", "message_delta", "message_stop"],
        ),
        ("nothing at all", vec![], vec!["message_start", "message_delta", "message_stop"]),
        ("no start, no finish", vec![Text("x".into()), Usage(usage(2, 1))], vec![]),
        (
            "sequential parallel tool calls",
            vec![
                start(),
                tool_start(0, "a"),
                args(0, "{\"x\":1}"),
                tool_start(1, "b"),
                args(1, "{\"y\":"),
                args(1, "2}"),
                tool_start(2, "c"),
                Finish(FinishReason::ToolUse),
                Usage(usage(10, 20)),
            ],
            vec![],
        ),
        (
            "interleaved tool args",
            vec![
                start(),
                tool_start(0, "a"),
                tool_start(1, "b"),
                args(1, "{\"y\":"),
                args(0, "{\"x\":"),
                args(1, "2}"),
                args(0, "1}"),
                tool_start(2, "c"),
                args(2, "{}"),
                Text("done".into()),
            ],
            vec![],
        ),
        (
            "redacted between thinking",
            vec![
                Thinking("a".into()),
                RedactedThinking("ailurus.anthropic.opaque".into()),
                Thinking("b".into()),
                ThinkingSignature("ailurus.anthropic.s".into()),
                ThinkingSignature("ailurus.anthropic.t".into()),
            ],
            vec![],
        ),
        (
            "signature without thinking text",
            vec![Text("hi".into()), ThinkingSignature("ailurus.anthropic.gemini-sig".into()), Text("more".into())],
            vec![],
        ),
        (
            "empty deltas skipped",
            vec![Text(String::new()), Thinking(String::new()), tool_start(0, "f"), args(0, ""), Text(String::new())],
            vec![],
        ),
        ("content filter", vec![Text("I can't".into()), Finish(FinishReason::ContentFilter)], vec![]),
        ("length", vec![Thinking("long".into()), Finish(FinishReason::Length)], vec![]),
        ("stop sequence", vec![start(), start(), Text("x".into()), Finish(FinishReason::StopSequence)], vec![]),
        (
            "upstream id without msg_ prefix",
            vec![Start { id: "chatcmpl-1".into(), model: "gpt".into() }, Text("x".into())],
            vec![],
        ),
        (
            "unicode and escapes",
            vec![Text("🦀 \"q\"\n\\ <b>".into()), tool_start(0, "f"), args(0, "{\"s\":\"é\\n\"}")],
            vec![],
        ),
    ];
    for (name, events, want_names) in cases {
        let bytes = check_stream(name, &events);
        if !want_names.is_empty() {
            assert_eq!(names(&bytes), want_names, "{name}");
        }
    }
}

#[test]
fn encoder_wire_details() {
    let bytes = encode(
        &[
            StreamEvent::Start { id: "abc".into(), model: "upstream".into() },
            StreamEvent::Usage(usage(11, 0)),
            StreamEvent::Thinking("t".into()),
            StreamEvent::ThinkingSignature("ailurus.anthropic.s".into()),
            StreamEvent::RedactedThinking("ailurus.anthropic.r".into()),
            tool_start(0, "f"),
            args(0, "{}"),
            StreamEvent::Finish(FinishReason::ToolUse),
            StreamEvent::Usage(usage(11, 42)),
        ],
        "alias",
    );
    let events = sse::parse(&bytes).unwrap();
    let data: Vec<Value> = events.iter().map(|e| serde_json::from_str(&e.data).unwrap()).collect();
    assert_eq!(
        data[0],
        json!({"type": "message_start", "message": {"id": "msg_abc", "type": "message", "role": "assistant", "model": "alias",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 11, "output_tokens": 0, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 7}}})
    );
    assert_eq!(
        data[1],
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
    );
    assert_eq!(
        data[3],
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "ailurus.anthropic.s"}})
    );
    assert_eq!(
        data[5],
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "redacted_thinking", "data": "ailurus.anthropic.r"}})
    );
    assert_eq!(data[6], json!({"type": "content_block_stop", "index": 1}));
    assert_eq!(
        data[7],
        json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_0", "name": "f", "input": {}}})
    );
    assert_eq!(
        data[8],
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}})
    );
    let n = data.len();
    assert_eq!(
        data[n - 2],
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
            "usage": {"input_tokens": 11, "output_tokens": 42, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 7}})
    );
    assert_eq!(data[n - 1], json!({"type": "message_stop"}));
}

#[test]
fn encoder_error_ends_stream() {
    use StreamEvent::*;
    let prefixes: Vec<Vec<StreamEvent>> = vec![
        vec![],
        vec![Start { id: "x".into(), model: "m".into() }],
        vec![Text("partial".into())],
        vec![Thinking("hmm".into())],
        vec![tool_start(0, "f"), args(0, "{\"a\"")],
        vec![tool_start(0, "f"), tool_start(1, "g"), Finish(FinishReason::ToolUse)],
    ];
    for (k, events) in prefixes.iter().enumerate() {
        for (status, want) in [(529, 529), (503, 529), (429, 429), (500, 500), (400, 400), (502, 500)] {
            let mut enc = encoder("m");
            let mut out = Vec::new();
            for ev in events {
                enc.event(ev, &mut out);
            }
            enc.error(status, "upstream died", &mut out);
            enc.event(&Text("after".into()), &mut out);
            enc.finish(&mut out);
            enc.error(500, "twice", &mut out);
            validate_stream(&out).unwrap_or_else(|e| panic!("prefix {k} {status}: {e}"));
            assert_eq!(names(&out).last().map(String::as_str), Some("error"));
            assert_eq!(names(&out).iter().filter(|n| *n == "error").count(), 1);
            let e = decode(&out).unwrap_err();
            assert_eq!(e.status, want, "prefix {k}");
            assert!(e.message.contains("upstream died"));
        }
    }
}

#[test]
fn encoder_unknown_tool_ordinal_and_late_args() {
    use StreamEvent::*;
    // Args for a call never started: a tool_use with a made-up id is opened.
    let bytes = encode(&[args(3, "{\"a\":1}"), Text("x".into()), args(3, "ignored")], "m");
    validate_stream(&bytes).unwrap();
    let decoded = decode(&bytes).unwrap();
    let s = summarize(&decoded);
    assert!(matches!(&s.parts[0], Part::ToolCall { id, name, arguments, .. }
        if id.starts_with("toolu_") && name.is_empty() && arguments == "{\"a\":1}"));
    assert_eq!(s.parts[1], Part::text("x"));
}

/// Sequences shaped like the decoders' output (tool ordinals counted from 0, arguments
/// only for calls of the current run of tool calls, possibly interleaved).
fn decoder_like(rng: &mut fastrand::Rng) -> Vec<StreamEvent> {
    const TEXTS: [&str; 8] = ["hello", " wörld", "\"q\"", "\n", "🦀", "", "<b>&amp;", "\\"];
    const FRAGS: [&str; 6] = ["{\"a\":", "1", "}", "\"x y\"", "", "[1,{\"b\":null}]"];
    let mut ev = Vec::new();
    if rng.bool() {
        ev.push(StreamEvent::Start { id: format!("up{}", rng.u32(..)), model: "up".into() });
    }
    let u = Usage {
        input_tokens: rng.u64(0..100_000),
        output_tokens: rng.u64(0..100_000),
        cache_read_tokens: rng.u64(0..100_000),
        cache_write_tokens: rng.u64(0..100_000),
        ..Default::default()
    };
    let mut tools = 0u32;
    let mut run: Vec<u32> = Vec::new();
    for _ in 0..rng.usize(0..30) {
        let pick = |rng: &mut fastrand::Rng, list: &[&str]| list[rng.usize(..list.len())].to_string();
        match rng.u8(0..9) {
            0 | 1 => {
                ev.push(StreamEvent::Text(pick(rng, &TEXTS)));
                run.clear();
            }
            2 => {
                ev.push(StreamEvent::Thinking(pick(rng, &TEXTS)));
                run.clear();
            }
            3 => {
                ev.push(StreamEvent::ThinkingSignature(format!("ailurus.anthropic.sig{}", rng.u32(..))));
                run.clear();
            }
            4 => {
                ev.push(StreamEvent::RedactedThinking(format!("ailurus.anthropic.red{}", rng.u32(..))));
                run.clear();
            }
            5 => {
                ev.push(tool_start(tools, "fn"));
                run.push(tools);
                tools += 1;
            }
            6 | 7 => {
                if !run.is_empty() {
                    let i = run[rng.usize(..run.len())];
                    ev.push(args(i, &pick(rng, &FRAGS)));
                }
            }
            _ => ev.push(StreamEvent::Usage(u)),
        }
    }
    if rng.bool() {
        let f = [
            FinishReason::Stop,
            FinishReason::Length,
            FinishReason::ToolUse,
            FinishReason::ContentFilter,
            FinishReason::StopSequence,
        ];
        ev.push(StreamEvent::Finish(f[rng.usize(..f.len())]));
    }
    if rng.bool() {
        ev.push(StreamEvent::Usage(u));
    }
    ev
}

#[test]
fn encoder_random_decoder_like_sequences_round_trip() {
    let mut rng = fastrand::Rng::with_seed(0xA11u64);
    for n in 0..400 {
        let events = decoder_like(&mut rng);
        check_stream(&format!("random #{n}: {events:?}"), &events);
    }
}

#[test]
fn encoder_any_sequence_is_valid() {
    let mut rng = fastrand::Rng::with_seed(7);
    for n in 0..400 {
        let mut enc = encoder("m");
        let mut out = Vec::new();
        for _ in 0..rng.usize(0..40) {
            let i = rng.u32(0..4);
            let ev = match rng.u8(0..10) {
                0 => StreamEvent::Start { id: String::new(), model: String::new() },
                1 => StreamEvent::Text("t".into()),
                2 => StreamEvent::Thinking("th".into()),
                3 => StreamEvent::ThinkingSignature(String::new()),
                4 => StreamEvent::RedactedThinking(String::new()),
                5 => StreamEvent::ToolCallStart {
                    index: i,
                    id: String::new(),
                    name: "n".into(),
                    signature: Some("ailurus.anthropic.s".into()),
                },
                6 | 7 => args(i, "{"),
                8 => StreamEvent::Usage(Usage { output_tokens: u64::MAX, ..Default::default() }),
                _ => StreamEvent::Finish(FinishReason::Length),
            };
            enc.event(&ev, &mut out);
        }
        if rng.bool() {
            enc.finish(&mut out);
        } else {
            enc.error(rng.u16(..), "boom", &mut out);
        }
        validate_stream(&out).unwrap_or_else(|e| panic!("#{n}: {e}\n{}", String::from_utf8_lossy(&out)));
    }
}
