//! Streams: the client encoder, the upstream decoder and the grammar check of both.

use super::*;

#[test]
fn encoder_round_trips_through_decoder() {
    use StreamEvent::*;
    let u = usage(10, 30, 5, 12);
    let cases: Vec<(&str, Vec<StreamEvent>, FinishReason)> = vec![
        (
            "thinking then text",
            vec![
                Start { id: "msg_1".into(), model: "up".into() },
                Thinking("Let me".into()),
                Thinking(" think".into()),
                ThinkingSignature("ailurus.gemini.sig1".into()),
                Text("Hello".into()),
                Text(" world".into()),
                Usage(u),
                Finish(FinishReason::Stop),
            ],
            FinishReason::Stop,
        ),
        (
            "parallel tool calls, usage after finish",
            vec![
                Text("Checking.".into()),
                tool_start(0, "toolu_a", "read", Some("ailurus.gemini.gsig")),
                args(0, "{\"pa"),
                args(0, "th\":\"a.rs\"}"),
                tool_start(1, "toolu_b", "ls", None),
                args(1, "{}"),
                Finish(FinishReason::ToolUse),
                Usage(u),
            ],
            FinishReason::ToolUse,
        ),
        (
            "interleaved args",
            vec![
                tool_start(0, "c0", "a", None),
                tool_start(1, "c1", "b", None),
                args(1, "{\"y\":"),
                args(0, "{\"x\":1}"),
                args(1, "2}"),
                Finish(FinishReason::ToolUse),
            ],
            FinishReason::ToolUse,
        ),
        (
            "text after a tool call, no start, finish missing",
            vec![tool_start(0, "c", "f", None), args(0, "{\"q\":true}"), Text("after".into()), Usage(u)],
            // Gemini reports STOP after a function call: it decodes as tool use.
            FinishReason::ToolUse,
        ),
        ("nothing at all", vec![], FinishReason::Stop),
        ("length", vec![Text("cut".into()), Finish(FinishReason::Length), Usage(u)], FinishReason::Length),
        (
            "content filter, signature at the very end",
            vec![
                Thinking("x".into()),
                ThinkingSignature("ailurus.gemini.end-sig".into()),
                Finish(FinishReason::ContentFilter),
            ],
            FinishReason::ContentFilter,
        ),
        (
            "two signatures in a row",
            vec![
                Thinking("a".into()),
                ThinkingSignature("ailurus.gemini.s1".into()),
                Thinking("b".into()),
                ThinkingSignature("ailurus.gemini.s2".into()),
                Text("t".into()),
            ],
            FinishReason::Stop,
        ),
    ];
    for (name, events, finish) in cases {
        let bytes = encode(&events);
        validate_stream(&bytes).unwrap_or_else(|e| panic!("{name}: {e}\n{}", String::from_utf8_lossy(&bytes)));
        let decoded = decode_stream(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (want, got) = (fold(&events), fold(&decoded));
        assert_eq!(got.content, want.content, "{name}\n{}", String::from_utf8_lossy(&bytes));
        assert_eq!(got.finish, finish, "{name}");
        let want_usage = events.iter().rev().find_map(|e| if let Usage(u) = e { Some(*u) } else { None });
        assert_eq!(got.usage, want_usage.unwrap_or_default(), "{name}");
        assert_eq!(got.model, "gemini-client", "{name}");
        if let Some(Start { id, .. }) = events.first() {
            assert_eq!(&got.id, id);
        }
        // The final chunk carries the finish reason and usage together.
        let last = sse::parse(&bytes).unwrap().pop().unwrap();
        let last: Value = serde_json::from_str(&last.data).unwrap();
        assert!(last["candidates"][0]["finishReason"].is_string(), "{name}");
        assert_eq!(last.get("usageMetadata").is_some(), want_usage.is_some(), "{name}");
    }
}

#[test]
fn encoder_attaches_pending_signature_to_function_call() {
    use StreamEvent::*;
    let events = vec![
        Thinking("plan".into()),
        ThinkingSignature("ailurus.gemini.S".into()),
        tool_start(0, "toolu_1", "read", None),
        args(0, "{}"),
        Finish(FinishReason::ToolUse),
    ];
    let bytes = encode(&events);
    validate_stream(&bytes).unwrap();
    let frames = sse::parse(&bytes).unwrap();
    let call: Value = serde_json::from_str(&frames[1].data).unwrap();
    assert_eq!(
        call["candidates"][0]["content"]["parts"],
        json!([{"functionCall": {"name": "read", "args": {}, "id": "toolu_1"}, "thoughtSignature": "ailurus.gemini.S"}])
    );
    let decoded = decode_stream(&bytes).unwrap();
    assert!(decoded.contains(&tool_start(0, "toolu_1", "read", Some("ailurus.gemini.S"))));
    // Real Gemini framing: data-only, no event names.
    assert!(frames.iter().all(|f| f.event.is_none()));
}

#[test]
fn encoder_error_after_partial_output() {
    use StreamEvent::*;
    let mut e = encoder("m");
    let mut out = Vec::new();
    e.event(&Text("partial".into()), &mut out);
    e.event(&tool_start(0, "c", "f", None), &mut out);
    e.event(&args(0, "{\"a\""), &mut out);
    e.error(529, "overloaded", &mut out);
    e.event(&Text("ignored".into()), &mut out);
    e.finish(&mut out);
    validate_stream(&out).unwrap();
    let err = decode_stream(&out).unwrap_err();
    assert_eq!(err.status, 529, "the upstream code is kept");
    let frames = sse::parse(&out).unwrap();
    assert_eq!(frames.len(), 2);
    // An error before any output is a valid stream too.
    let mut e = encoder("m");
    let mut out = Vec::new();
    e.error(429, "slow down", &mut out);
    validate_stream(&out).unwrap();
    assert_eq!(decode_stream(&out).unwrap_err().status, 429);
}

#[test]
fn decoder_upstream_fixtures() {
    use StreamEvent::*;
    let ev = decode_stream(UP_TOOL.as_bytes()).unwrap();
    assert_eq!(
        ev,
        vec![
            Start { id: "nBqpaP6xLr2z1dkP4tmO4Ag".into(), model: "gemini-2.5-pro".into() },
            // The first chunk's (prompt) usage goes out at once.
            Usage(usage(5120, 60, 0, 60)),
            Thinking("**Reading the manifest**\n\nThe version is declared in Cargo.toml, so I'll read it.".into()),
            ev[3].clone(),
            args(0, r#"{"absolute_path":"/home/dev/ailurus/Cargo.toml"}"#),
            Usage(usage(1024, 85, 4096, 60)),
            Finish(FinishReason::ToolUse),
        ]
    );
    let ToolCallStart { index: 0, name, signature, .. } = &ev[3] else { panic!("{:?}", ev[3]) };
    assert_eq!(
        (name.as_str(), signature.as_deref()),
        ("read_file", Some("ailurus.gemini.CiQB0e2Kb9Zt3xk1vQfUpstreamSig=="))
    );
    validate_stream(UP_TOOL.as_bytes()).unwrap();

    let ev = decode_stream(UP_TEXT.as_bytes()).unwrap();
    let r = fold(&ev);
    assert_eq!(
        r.content,
        vec![
            Part::text("The crate version is **0.1.0**"),
            Part::Thinking { text: String::new(), signature: Some("ailurus.gemini.Cs0BAVSoXO5textSig==".into()) },
            Part::text(" (edition 2021)."),
        ]
    );
    assert_eq!(r.usage, usage(5230, 60, 0, 46));
    assert_eq!(r.finish, FinishReason::Stop);
    validate_stream(UP_TEXT.as_bytes()).unwrap();
}

#[test]
fn decoder_errors_and_truncation() {
    let err_cases: Vec<(&str, u16)> = vec![
        (r#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#, 429),
        (r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#, 503),
        (r#"{"error":{"code":500,"message":"Internal error","status":"INTERNAL"}}"#, 500),
        (r#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#, 400),
        (r#"{"error":{"message":"no code","status":"UNAVAILABLE"}}"#, 503),
        (r#"{"error":{"code":"x","status":"DEADLINE_EXCEEDED"}}"#, 504),
        (r#"{"error":"flat string"}"#, 502),
        (r#"{"candidates":[{"finishReason":"MALFORMED_FUNCTION_CALL"}]}"#, 502),
        (r#"{"candidates":[{"content":{"parts":[{"executableCode":{"code":"1"}}]}}]}"#, 502),
        (r#"{"candidates":[{"content":{"parts":[{"functionCall":{"args":{}}}]}}]}"#, 502),
        (r#"{"candidates":{"0":1}}"#, 502),
        ("not json", 502),
        ("[1]", 502),
    ];
    for (data, status) in err_cases {
        let mut d = decoder();
        let err = d.feed(None, data).unwrap_err();
        assert_eq!(err.status, status, "{data}: {err}");
    }
    let err =
        decode_stream(b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"half\"}]}}]}\n\n").unwrap_err();
    assert_eq!(err.status, 502);
    let mut d = decoder();
    assert_eq!(d.end().unwrap_err().status, 502);
    // Keep-alives, [DONE], and content after the finish are tolerated.
    let mut d = decoder();
    assert!(d.feed(None, "  ").unwrap().is_empty());
    assert!(d.feed(None, "[DONE]").unwrap().is_empty());
    let ev = d.feed(None, r#"{"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP"}]}"#).unwrap();
    assert_eq!(ev, vec![StreamEvent::Text("a".into()), StreamEvent::Finish(FinishReason::Stop)]);
    let ev = d.feed(None, r#"{"candidates":[{"content":{"parts":[{"text":"late"}]}}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1}}"#).unwrap();
    assert_eq!(ev, vec![StreamEvent::Usage(usage(3, 1, 0, 0))]);
    assert!(d.end().unwrap().is_empty());
    let ev = decoder().feed(None, r#"{"promptFeedback":{"blockReason":"SAFETY"}}"#).unwrap();
    assert_eq!(ev, vec![StreamEvent::Finish(FinishReason::ContentFilter)]);
}

#[test]
fn validate_stream_rejects_broken_streams() {
    let ok = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"a"}]},"finishReason":"STOP","index":0}]}"#;
    let cont = r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"a"}]},"index":0}]}"#;
    let frame = |d: &str| format!("data: {d}\n\n");
    assert!(validate_stream(frame(ok).as_bytes()).is_ok());
    assert!(validate_stream(
        format!("{}{}", frame(ok), frame(r#"{"usageMetadata":{"promptTokenCount":1}}"#)).as_bytes()
    )
    .is_ok());
    let bad: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("missing terminal", frame(cont)),
        ("bad index", frame(&ok.replace("\"index\":0", "\"index\":1"))),
        ("event name", format!("event: message\n{}", frame(ok))),
        ("bad JSON", format!("{}{}", frame(cont), frame("{\"candidates\":"))),
        ("not an object", frame("[1]")),
        ("done marker", format!("{}{}", frame(ok), frame("[DONE]"))),
        ("candidate after finish", format!("{}{}", frame(ok), frame(cont))),
        ("two finishes", format!("{}{}", frame(ok), frame(ok))),
        ("unknown finish", frame(&ok.replace("STOP", "DONE"))),
        ("neither", frame(r#"{"modelVersion":"x"}"#)),
        ("role user", frame(&ok.replace("\"model\"", "\"user\""))),
        (
            "two data fields",
            frame(&ok.replace(r#"{"text":"a"}"#, r#"{"text":"a","functionCall":{"name":"f","args":{}}}"#)),
        ),
        ("call without args", frame(&ok.replace(r#"{"text":"a"}"#, r#"{"functionCall":{"name":"f"}}"#))),
        ("call without name", frame(&ok.replace(r#"{"text":"a"}"#, r#"{"functionCall":{"args":{}}}"#))),
        ("text not string", frame(&ok.replace(r#""a""#, "1"))),
        ("two candidates", frame(r#"{"candidates":[{"index":0},{"index":1,"finishReason":"STOP"}]}"#)),
        (
            "error not last",
            format!("{}{}", frame(r#"{"error":{"code":500,"message":"x","status":"INTERNAL"}}"#), frame(ok)),
        ),
        ("error without status", frame(r#"{"error":{"code":500,"message":"x"}}"#)),
        ("unterminated", format!("data: {ok}")),
        (
            "negative usage",
            frame(&ok.replace("\"index\":0}]", "\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":-1}")),
        ),
    ];
    for (name, stream) in bad {
        assert!(validate_stream(stream.as_bytes()).is_err(), "{name} was accepted:\n{stream}");
    }
}
