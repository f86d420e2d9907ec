//! `render_response`, `parse_response` and `render_error`.

use super::*;

fn sample_response() -> ChatResponse {
    ChatResponse {
        id: "msg_01ABC".into(),
        model: "claude-sonnet-4".into(),
        content: vec![
            Part::Thinking { text: "Let me see.".into(), signature: Some("sig-lost".into()) },
            Part::text("Calling the tool."),
            Part::ToolCall {
                id: "toolu_1".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into(),
                signature: None,
            },
        ],
        finish: FinishReason::ToolUse,
        usage: usage(100, 50, 20, 5, 10),
    }
}

#[test]
fn render_response_shape_and_round_trip() {
    let resp = sample_response();
    let body = render_response(&resp, "gpt-client");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["id"], "chatcmpl-msg_01ABC");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "gpt-client");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["message"]["content"], "Calling the tool.");
    assert_eq!(choice["message"]["reasoning_content"], "Let me see.");
    assert_eq!(choice["message"]["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 125, "completion_tokens": 50, "total_tokens": 175,
               "prompt_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 5},
               "completion_tokens_details": {"reasoning_tokens": 10}})
    );

    let back = parse_response(&body).unwrap();
    let mut expected = resp.clone();
    expected.id = "chatcmpl-msg_01ABC".into();
    expected.model = "gpt-client".into();
    // Thinking signatures have no Chat slot (documented lossy).
    expected.content[0] = Part::Thinking { text: "Let me see.".into(), signature: None };
    assert_eq!(back, expected);

    // No text → content null; no tool calls → key omitted; no reasoning → key omitted.
    let bare = ChatResponse { content: vec![], finish: FinishReason::Length, ..resp };
    let v: Value = serde_json::from_slice(&render_response(&bare, "m")).unwrap();
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["content"], Value::Null);
    assert!(msg.get("tool_calls").is_none() && msg.get("reasoning_content").is_none());
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[test]
fn parse_response_fixtures() {
    let r = parse_response(RESP_TOOLS.as_bytes()).unwrap();
    assert_eq!(r.id, "chatcmpl-BmXyZ2");
    assert_eq!(r.model, "gpt-4.1-2025-04-14");
    assert_eq!(r.finish, FinishReason::ToolUse);
    assert_eq!(r.content.len(), 2);
    assert!(matches!(&r.content[1], Part::ToolCall { id, arguments, .. }
        if id == "call_3XnM2jIbk0WGKcMD4qYrzv5Q" && arguments == r#"{"city":"Tokyo"}"#));
    assert_eq!(r.usage, usage(296, 46, 1024, 0, 0));

    let r = parse_response(RESP_DEEPSEEK.as_bytes()).unwrap();
    assert_eq!(
        r.content,
        vec![
            Part::Thinking { text: "Compare the tenths: 9 > 1.".into(), signature: None },
            Part::text("9.9 is larger.")
        ]
    );
    assert_eq!(r.finish, FinishReason::Stop);
    assert_eq!(r.usage, usage(64, 230, 0, 0, 210));

    // DeepSeek's prompt_cache_hit_tokens when prompt_tokens_details is absent; stop + tool calls → ToolUse.
    let body = r#"{"id":"x","model":"deepseek-chat","choices":[{"index":0,"message":{"role":"assistant","content":"",
        "tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":{"a":1}}}]},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_cache_hit_tokens":64}}"#;
    let r = parse_response(body.as_bytes()).unwrap();
    assert_eq!(r.finish, FinishReason::ToolUse);
    assert_eq!(r.usage, usage(36, 5, 64, 0, 0));
    assert!(matches!(&r.content[0], Part::ToolCall { arguments, .. } if arguments == r#"{"a":1}"#));

    let err = parse_response(br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#)
        .unwrap_err();
    assert_eq!(err.status, 429);
    assert_eq!(parse_response(br#"{"id":"x","choices":[]}"#).unwrap_err().status, 502);
}

#[test]
fn render_error_uses_openai_strings() {
    let cases = [
        (400, "invalid_request_error", Value::Null),
        (404, "invalid_request_error", Value::Null),
        (413, "invalid_request_error", Value::Null),
        (415, "invalid_request_error", Value::Null),
        (401, "invalid_request_error", json!("invalid_api_key")),
        (402, "insufficient_quota", json!("insufficient_quota")),
        (403, "request_forbidden", Value::Null),
        (429, "requests", json!("rate_limit_exceeded")),
        (500, "server_error", Value::Null),
        (502, "server_error", Value::Null),
        (503, "service_unavailable_error", json!("server_is_overloaded")),
        (529, "service_unavailable_error", json!("server_is_overloaded")),
    ];
    for (status, kind, code) in cases {
        let v: Value = serde_json::from_slice(&render_error(status, "boom")).unwrap();
        assert_eq!(v["error"]["message"], "boom");
        assert_eq!(v["error"]["type"], kind, "{status}");
        assert_eq!(v["error"]["code"], code, "{status}");
        assert_eq!(v["error"]["param"], Value::Null);
    }
}
