//! `render_response`, `parse_response` and `render_error`: whole (non-streamed) bodies.

use super::super::items::response_id;
use super::*;

const UPSTREAM_RESPONSE: &str = include_str!("../../../../tests/fixtures/openai_responses/upstream_response.json");

fn call(id: &str, name: &str, args: &str) -> Part {
    Part::ToolCall { id: id.into(), name: name.into(), arguments: args.into(), signature: None }
}

#[test]
fn render_then_parse_round_trips() {
    let cases = vec![
        ChatResponse {
            id: "msg_01Anthropic".into(),
            model: "claude-sonnet-4-5".into(),
            content: vec![
                Part::Thinking { text: "Let me think.".into(), signature: Some("ailurus.responses.EqQBsig==".into()) },
                Part::text("Calling tools."),
                call("toolu_1", "get_weather", r#"{"city":"Paris"}"#),
                call("toolu_2", "now", "{}"),
            ],
            finish: FinishReason::ToolUse,
            usage: usage(100, 50, 900, 20),
        },
        ChatResponse {
            id: "resp_abc".into(),
            model: "gpt-5".into(),
            content: vec![Part::RedactedThinking { data: "ailurus.responses.opaque==".into() }, Part::text("Cut o")],
            finish: FinishReason::Length,
            usage: usage(10, 16, 0, 0),
        },
        ChatResponse {
            id: "x".into(),
            model: "m".into(),
            content: vec![],
            finish: FinishReason::ContentFilter,
            usage: usage(5, 0, 0, 0),
        },
        ChatResponse {
            id: "y".into(),
            model: "m".into(),
            content: vec![
                Part::text("a"),
                Part::Thinking { text: String::new(), signature: Some("ailurus.responses.gAAAA".into()) },
                Part::text("b"),
            ],
            finish: FinishReason::Stop,
            usage: usage(1, 2, 0, 0),
        },
    ];
    for resp in cases {
        let body = render_response(&resp, "client-model");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "response");
        assert_eq!(v["model"], "client-model");
        assert!(v["id"].as_str().unwrap().starts_with("resp_"));
        for key in ["created_at", "parallel_tool_calls", "tool_choice", "tools", "output", "usage", "error"] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let back = parse_response(&body).unwrap();
        let mut want = resp.clone();
        want.id = response_id(&resp.id);
        want.model = "client-model".into();
        // An empty-text signed reasoning item comes back as redacted (documented).
        for p in &mut want.content {
            if let Part::Thinking { text, signature: Some(sig) } = p {
                if text.is_empty() {
                    *p = Part::RedactedThinking { data: sig.clone() };
                }
            }
        }
        assert_eq!(back, want);
    }
}

#[test]
fn render_shape() {
    let resp = ChatResponse {
        id: "resp_1".into(),
        model: "up".into(),
        content: vec![Part::Thinking { text: "t".into(), signature: None }, Part::text("hi"), call("c1", "f", "")],
        finish: FinishReason::Length,
        usage: Usage { cache_write_tokens: 7, ..usage(10, 20, 30, 5) },
    };
    let v: Value = serde_json::from_slice(&render_response(&resp, "m")).unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"], json!({"reason": "max_output_tokens"}));
    let out = v["output"].as_array().unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["type"], "reasoning");
    assert!(out[0]["id"].as_str().unwrap().starts_with("rs_"));
    assert_eq!(out[0]["summary"], json!([{"type": "summary_text", "text": "t"}]));
    assert!(out[0].get("encrypted_content").is_none());
    assert_eq!(out[1]["type"], "message");
    assert!(out[1]["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(out[1]["status"], "completed");
    assert_eq!(out[1]["content"][0]["type"], "output_text");
    assert_eq!(out[1]["content"][0]["annotations"], json!([]));
    assert_eq!(out[2]["type"], "function_call");
    assert!(out[2]["id"].as_str().unwrap().starts_with("fc_"));
    assert_eq!(out[2]["call_id"], "c1");
    assert_eq!(out[2]["arguments"], "{}");
    assert_eq!(
        v["usage"],
        json!({
            "input_tokens": 47, "input_tokens_details": {"cached_tokens": 30},
            "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 67
        })
    );
    let filtered = ChatResponse { finish: FinishReason::ContentFilter, ..resp };
    let v: Value = serde_json::from_slice(&render_response(&filtered, "m")).unwrap();
    assert_eq!(v["incomplete_details"], json!({"reason": "content_filter"}));
}

#[test]
fn parse_upstream_response_fixture() {
    let got = parse_response(UPSTREAM_RESPONSE.as_bytes()).unwrap();
    let want = ChatResponse {
        id: "resp_68f1c2a9b0d88193a1b2c3d4e5f60718".into(),
        model: "gpt-5-2025-08-07".into(),
        content: vec![
            Part::Thinking { text: "Plan.".into(), signature: Some("ailurus.responses.gAAAAABo8sEnc_A==".into()) },
            Part::RedactedThinking { data: "ailurus.responses.gAAAAABo8sEnc_NoSummary==".into() },
            Part::text("Part one. No more."),
            call("call_Q", "lookup", r#"{"q":1}"#),
        ],
        finish: FinishReason::Length,
        usage: usage(30, 16, 20, 10),
    };
    assert_eq!(got, want);
}

#[test]
fn parse_response_errors() {
    let cases = [
        (r#"{"error":{"message":"Incorrect API key","type":"invalid_request_error","code":"invalid_api_key"}}"#, 401),
        (r#"{"status":"failed","output":[],"error":{"code":"rate_limit_exceeded","message":"slow"}}"#, 429),
        (r#"{"status":"failed","output":[],"error":{"code":"server_error","message":"oops"}}"#, 500),
        (r#"{"status":"failed","output":[]}"#, 502),
        (r#"{"status":"in_progress","output":[]}"#, 502),
        (r#"{"status":"completed"}"#, 502),
        (r#"{"status":"completed","output":{}}"#, 502),
        ("not json", 502),
        ("[]", 502),
    ];
    for (body, status) in cases {
        let err = parse_response(body.as_bytes()).expect_err(body);
        assert_eq!(err.status, status, "{body}: {err}");
    }
}

#[test]
fn render_error_shapes() {
    let cases = [
        (400, "invalid_request_error", Value::Null),
        (401, "invalid_request_error", json!("invalid_api_key")),
        (402, "insufficient_quota", json!("insufficient_quota")),
        (403, "permission_error", Value::Null),
        (404, "invalid_request_error", json!("not_found")),
        (429, "rate_limit_error", json!("rate_limit_exceeded")),
        (500, "server_error", Value::Null),
        (503, "server_error", json!("server_is_overloaded")),
        (529, "server_error", json!("server_is_overloaded")),
    ];
    for (status, ty, code) in cases {
        let v: Value = serde_json::from_slice(&render_error(status, "boom")).unwrap();
        assert_eq!(v, json!({"error": {"message": "boom", "type": ty, "param": null, "code": code}}), "{status}");
    }
}
