//! The upstream stream decoder: fixture streams, tool-call indices, error events, truncation.

use super::*;

#[test]
fn decoder_fixture_streams() {
    let cases: Vec<(&str, &str, Vec<StreamEvent>)> = vec![
        (
            "openai parallel tools",
            STREAM_TOOLS,
            vec![
                start("chatcmpl-BmXyZ1", "gpt-4.1-2025-04-14"),
                tstart(0, "call_Q9tuRD3Vd6RrE0xOwB8BpJyR", "get_weather"),
                targs(0, "{\"ci"),
                targs(0, "ty\": \"Paris\"}"),
                tstart(1, "call_3XnM2jIbk0WGKcMD4qYrzv5Q", "get_weather"),
                targs(1, "{\"city\": \"Tokyo\"}"),
                StreamEvent::Finish(FinishReason::ToolUse),
                StreamEvent::Usage(usage(296, 46, 1024, 0, 0)),
            ],
        ),
        (
            "deepseek reasoner",
            STREAM_DEEPSEEK,
            vec![
                start("9f2c1a7e-4b1d-4f7a-9d55-0c1e2b3a4d5e", "deepseek-reasoner"),
                think("9.11 vs 9.9: "),
                think("compare tenths."),
                text("9.9 is"),
                text(" larger."),
                StreamEvent::Finish(FinishReason::Stop),
                StreamEvent::Usage(usage(20, 120, 0, 0, 98)),
            ],
        ),
        (
            "openrouter reasoning",
            STREAM_OPENROUTER,
            vec![
                start("gen-1751000200-AbCdEfGhIjKlMnOp", "anthropic/claude-sonnet-4"),
                think("Let me think"),
                think(" about it."),
                text("Hello there!"),
                StreamEvent::Finish(FinishReason::Length),
                StreamEvent::Usage(usage(200, 64, 1000, 300, 10)),
            ],
        ),
        (
            "ollama whole calls, index 0 reused, stop with tool calls",
            STREAM_OLLAMA,
            vec![
                start("chatcmpl-318", "qwen3:8b"),
                think("Need the weather tool."),
                tstart(0, "call_k2x9q3tz", "get_weather"),
                targs(0, "{\"city\":\"Paris\"}"),
                tstart(1, "call_m7b1c0rw", "get_time"),
                targs(1, "{\"tz\":\"Europe/Paris\"}"),
                StreamEvent::Finish(FinishReason::ToolUse),
                StreamEvent::Usage(usage(180, 40, 0, 0, 0)),
            ],
        ),
    ];
    for (name, stream, expected) in cases {
        let got = decode(stream.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn decoder_tool_index_ordinals() {
    // Upstream indices 3 then 1; a fragment without an index continues the last call;
    // name arriving after the first fragment.
    let chunks = [
        r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":3,"id":"c3","function":{"arguments":"{\"x\""}}]}}]}"#,
        r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":3,"function":{"name":"f3","arguments":":1}"}}]}}]}"#,
        r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"c1","type":"function","function":{"name":"f1","arguments":"{"}}]}}]}"#,
        r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"}"}}]}}]}"#,
        r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
    ];
    let mut d = decoder();
    let mut got = Vec::new();
    for c in chunks {
        got.extend(d.feed(None, c).unwrap());
    }
    got.extend(d.end().unwrap());
    assert_eq!(
        got,
        vec![
            start("a", "m"),
            tstart(0, "c3", "f3"),
            targs(0, "{\"x\":1}"),
            tstart(1, "c1", "f1"),
            targs(1, "{"),
            targs(1, "}"),
            StreamEvent::Finish(FinishReason::ToolUse),
        ]
    );
}

#[test]
fn decoder_error_events_map_statuses() {
    let cases = [
        (
            r#"{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
            429,
        ),
        (r#"{"error":{"message":"quota","type":"insufficient_quota","code":"insufficient_quota"}}"#, 429),
        (r#"{"error":{"message":"oops","type":"server_error","code":null}}"#, 500),
        (r#"{"error":{"message":"bad","type":"invalid_request_error","code":"context_length_exceeded"}}"#, 400),
        (r#"{"error":{"message":"Provider returned error","code":429,"metadata":{}}}"#, 429),
        (r#"{"error":{"message":"x","code":"503"}}"#, 503),
        (r#"{"error":{"message":"busy","type":"service_unavailable_error","code":"server_is_overloaded"}}"#, 503),
        (r#"{"error":{"object":"error","message":"bad","type":"BadRequestError","param":null,"code":400}}"#, 400),
        (r#"{"object":"error","message":"boom","type":"InternalServerError","param":null,"code":500}"#, 500),
        (r#"{"error":{"message":"key","type":"invalid_request_error","code":"invalid_api_key"}}"#, 401),
        (r#"{"error":{"message":"who knows"}}"#, 502),
        (
            r#"{"id":"g","object":"chat.completion.chunk","error":{"code":"server_error","message":"Upstream died"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}"#,
            500,
        ),
    ];
    for (data, status) in cases {
        let mut d = decoder();
        d.feed(None, r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"}}]}"#)
            .unwrap();
        let err = d.feed(None, data).expect_err(data);
        assert_eq!(err.status, status, "{data}");
    }
    let err = decoder().feed(Some("error"), r#"{"message":"x","type":"rate_limit_error"}"#).unwrap_err();
    assert_eq!(err.status, 429);
    assert_eq!(decoder().feed(None, "{not json").unwrap_err().status, 502);
    assert_eq!(decoder().feed(None, "[1]").unwrap_err().status, 502);
}

#[test]
fn truncated_streams() {
    let mid = "data: {\"id\":\"a\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hal\"}}]}\n\n";
    assert_eq!(decode(mid.as_bytes()).unwrap_err().status, 502);
    assert_eq!(decode(b"").unwrap_err().status, 502);
    // Cut inside the fixture, before finish_reason.
    let cut = STREAM_TOOLS
        .split("data: {\"id\":\"chatcmpl-BmXyZ1\"")
        .take(4)
        .collect::<Vec<_>>()
        .join("data: {\"id\":\"chatcmpl-BmXyZ1\"");
    assert_eq!(decode(cut.as_bytes()).unwrap_err().status, 502);
    // finish_reason without [DONE] is fine (some servers omit it); [DONE] alone too.
    let no_done = STREAM_DEEPSEEK.replace("data: [DONE]\n\n", "");
    assert!(decode(no_done.as_bytes()).is_ok());
    let done_only = format!("{mid}data: [DONE]\n\n");
    assert_eq!(decode(done_only.as_bytes()).unwrap(), vec![start("a", "m"), text("hal")]);
}
