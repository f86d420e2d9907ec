//! Tests of client response rendering, upstream response parsing and the error mapping.

use super::*;

#[test]
fn parse_upstream_response() {
    let resp = parse_response(UPSTREAM_RESPONSE.as_bytes()).unwrap();
    assert_eq!(resp.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(resp.model, "claude-sonnet-4-5-20250929");
    assert_eq!(resp.finish, FinishReason::ToolUse);
    assert_eq!(
        resp.usage,
        Usage {
            input_tokens: 2095,
            output_tokens: 503,
            cache_read_tokens: 1800,
            cache_write_tokens: 0,
            ..Default::default()
        }
    );
    assert_eq!(
        resp.content,
        vec![
            Part::Thinking {
                text: "Need the weather tool.".into(),
                signature: Some("ailurus.anthropic.EqQBCgIYAhIM".into())
            },
            Part::RedactedThinking { data: "ailurus.anthropic.EmwKAhgBEgy3va3pzix".into() },
            Part::text("I'll check."),
            Part::ToolCall {
                id: "toolu_01A09q90qw90lq917835lq9".into(),
                name: "get_weather".into(),
                arguments: r#"{"location":"San Francisco, CA","unit":"celsius"}"#.into(),
                signature: None,
            },
        ]
    );
}

#[test]
fn render_parse_round_trip() {
    let upstream = parse_response(UPSTREAM_RESPONSE.as_bytes()).unwrap();
    let finishes = [
        (FinishReason::Stop, "end_turn"),
        (FinishReason::Length, "max_tokens"),
        (FinishReason::ToolUse, "tool_use"),
        (FinishReason::StopSequence, "stop_sequence"),
        (FinishReason::ContentFilter, "refusal"),
    ];
    for (finish, wire) in finishes {
        let resp = ChatResponse { finish, ..upstream.clone() };
        let body = render_response(&resp, "client-model");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["model"], "client-model");
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["stop_reason"], wire);
        assert_eq!(v["stop_sequence"], Value::Null);
        assert_eq!(v["usage"]["cache_read_input_tokens"], 1800);
        assert_eq!(v["content"][3]["input"], json!({"location": "San Francisco, CA", "unit": "celsius"}));
        let mut back = parse_response(&body).unwrap();
        back.model = resp.model.clone();
        assert_eq!(back, resp);
    }
}

#[test]
fn render_response_edge_cases() {
    let resp = ChatResponse {
        id: "chatcmpl-9".into(),
        model: "gpt".into(),
        content: vec![
            Part::Thinking { text: "t".into(), signature: None },
            Part::ToolCall { id: "call_1".into(), name: "a".into(), arguments: "{\"x\":".into(), signature: None },
            Part::ToolCall {
                id: String::new(),
                name: "b".into(),
                arguments: String::new(),
                signature: Some("ailurus.gemini.g".into()),
            },
            Part::ToolCall { id: "call_3".into(), name: "c".into(), arguments: "[1]".into(), signature: None },
            Part::Image { source: ImageSource::Url { url: "u".into() } },
        ],
        finish: FinishReason::ToolUse,
        usage: Usage { input_tokens: 1, output_tokens: 2, reasoning_tokens: 1, ..Default::default() },
    };
    let v: Value = serde_json::from_slice(&render_response(&resp, "m")).unwrap();
    assert_eq!(v["id"], "msg_chatcmpl-9");
    assert_eq!(v["content"][0], json!({"type": "thinking", "thinking": "t", "signature": ""}));
    assert_eq!(v["content"][1]["input"], json!({"_raw_arguments": "{\"x\":"}));
    // A call's Gemini signature comes as a signed empty thinking block right before it.
    assert_eq!(v["content"][2], json!({"type": "thinking", "thinking": "", "signature": "ailurus.gemini.g"}));
    assert_eq!(v["content"][3]["input"], json!({}));
    assert!(v["content"][3]["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(v["content"][4]["input"], json!({"_raw_arguments": "[1]"}));
    assert_eq!(v["content"].as_array().unwrap().len(), 5);
    let empty = ChatResponse { id: String::new(), content: vec![], ..resp };
    let v: Value = serde_json::from_slice(&render_response(&empty, "m")).unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(v["content"], json!([]));
}

#[test]
fn errors_map_both_ways() {
    let table: &[(u16, &str, u16)] = &[
        (400, "invalid_request_error", 400),
        (401, "authentication_error", 401),
        (402, "billing_error", 402),
        (403, "permission_error", 403),
        (404, "not_found_error", 404),
        (409, "invalid_request_error", 400),
        (413, "request_too_large", 413),
        (429, "rate_limit_error", 429),
        (499, "invalid_request_error", 400),
        (500, "api_error", 500),
        (502, "api_error", 500),
        (503, "overloaded_error", 529),
        (504, "timeout_error", 504),
        (529, "overloaded_error", 529),
    ];
    for &(status, ty, back) in table {
        let v: Value = serde_json::from_slice(&render_error(status, "nope \"quoted\"")).unwrap();
        assert_eq!(v, json!({"type": "error", "error": {"type": ty, "message": "nope \"quoted\""}}), "{status}");
        // An upstream error body with that type maps back to a status.
        let e = parse_response(&render_error(status, "m")).unwrap_err();
        assert_eq!(e.status, back, "{status}");
        let mut d = decoder();
        let e = d.feed(Some("error"), &String::from_utf8(render_error(status, "m")).unwrap()).unwrap_err();
        assert_eq!(e.status, back, "{status}");
    }
    let e = parse_response(br#"{"type":"error","error":{"type":"brand_new_error","message":"x"}}"#).unwrap_err();
    assert_eq!(e.status, 502);
}
