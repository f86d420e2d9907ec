//! Whole answers: `render_response` / `parse_response` (round trip, upstream fixture) and `render_error`.

use super::*;

#[test]
fn render_parse_round_trip() {
    let cases = vec![
        ChatResponse {
            id: "resp-1".into(),
            model: "claude-x".into(),
            content: vec![
                Part::Thinking { text: "Plan.".into(), signature: Some("ailurus.gemini.sig-a".into()) },
                Part::text("Reading."),
                Part::ToolCall {
                    id: "toolu_1".into(),
                    name: "read".into(),
                    arguments: r#"{"path":"x"}"#.into(),
                    signature: Some("ailurus.gemini.sig-b".into()),
                },
                Part::ToolCall { id: "toolu_2".into(), name: "ls".into(), arguments: "{}".into(), signature: None },
            ],
            finish: FinishReason::ToolUse,
            usage: usage(100, 50, 900, 20),
        },
        ChatResponse {
            id: "resp-2".into(),
            model: "m".into(),
            content: vec![Part::text("cut")],
            finish: FinishReason::Length,
            usage: usage(1, 2, 0, 0),
        },
        ChatResponse {
            id: "resp-3".into(),
            model: "m".into(),
            content: vec![],
            finish: FinishReason::ContentFilter,
            usage: usage(5, 0, 0, 0),
        },
    ];
    for resp in cases {
        let body = render_response(&resp, "gemini-client-name");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["modelVersion"], "gemini-client-name");
        assert_eq!(v["responseId"], json!(resp.id));
        assert_eq!(v["candidates"][0]["content"]["role"], "model");
        assert_eq!(v["usageMetadata"]["promptTokenCount"], json!(resp.usage.prompt_total()));
        assert_eq!(
            v["usageMetadata"]["candidatesTokenCount"],
            json!(resp.usage.output_tokens - resp.usage.reasoning_tokens)
        );
        assert_eq!(v["usageMetadata"]["totalTokenCount"], json!(resp.usage.prompt_total() + resp.usage.output_tokens));
        let back = parse_response(&body).unwrap();
        assert_eq!(back.id, resp.id);
        assert_eq!(back.model, "gemini-client-name");
        assert_eq!(back.content, resp.content);
        assert_eq!(back.finish, resp.finish);
        assert_eq!(back.usage, resp.usage);
    }
}

#[test]
fn render_response_shapes() {
    let resp = ChatResponse {
        id: "r".into(),
        model: "up".into(),
        content: vec![
            Part::Thinking { text: String::new(), signature: Some("ailurus.gemini.s".into()) },
            Part::text("hello"),
            Part::ToolCall { id: String::new(), name: "f".into(), arguments: "[1,2]".into(), signature: None },
            Part::RedactedThinking { data: "ailurus.anthropic.enc".into() },
        ],
        finish: FinishReason::StopSequence,
        usage: usage(3, 4, 0, 0),
    };
    let v: Value = serde_json::from_slice(&render_response(&resp, "m")).unwrap();
    assert_eq!(
        v["candidates"][0],
        json!({"content": {"role": "model", "parts": [
            {"text": "hello", "thoughtSignature": "ailurus.gemini.s"},
            {"functionCall": {"name": "f", "args": {}}},
            // Another API's reasoning after the last call: a block envelope of its own.
            {"text": "", "thought": true, "thoughtSignature": reasoning::block(&resp.content[3..]).unwrap()}]},
            "finishReason": "STOP", "index": 0})
    );
    assert!(v["usageMetadata"].get("cachedContentTokenCount").is_none());
    assert!(v["usageMetadata"].get("thoughtsTokenCount").is_none());
}

#[test]
fn parse_upstream_response_fixture() {
    let r = parse_response(UP_RESPONSE.as_bytes()).unwrap();
    assert_eq!(r.id, "aBcDeFgHiJkLmN");
    assert_eq!(r.model, "gemini-2.5-pro");
    assert_eq!(r.finish, FinishReason::ToolUse);
    assert_eq!(r.usage, usage(200, 200, 1000, 120));
    assert_eq!(r.content.len(), 4);
    assert_eq!(
        r.content[0],
        Part::Thinking {
            text: "**Planning**\n\nCheck the manifest first.".into(),
            signature: Some("ailurus.gemini.EpUBthoughtSig==".into())
        }
    );
    assert_eq!(r.content[1], Part::text("I'll read Cargo.toml."));
    let Part::ToolCall { name, arguments, signature, id } = &r.content[2] else { panic!() };
    assert_eq!((name.as_str(), signature.as_deref()), ("read_file", Some("ailurus.gemini.EpUBcallSig==")));
    assert!(id.starts_with("call_"));
    assert_eq!(
        serde_json::from_str::<Value>(arguments).unwrap(),
        json!({"absolute_path": "/home/dev/ailurus/Cargo.toml"})
    );
    let Part::ToolCall { id: id2, .. } = &r.content[3] else { panic!() };
    assert_ne!(id, id2);

    let cases: Vec<(Value, Result<FinishReason, u16>)> = vec![
        (
            json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "MAX_TOKENS"}]}),
            Ok(FinishReason::Length),
        ),
        (json!({"candidates": [{"finishReason": "SAFETY"}]}), Ok(FinishReason::ContentFilter)),
        (json!({"candidates": [{"finishReason": "RECITATION"}]}), Ok(FinishReason::ContentFilter)),
        (
            json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 9}}),
            Ok(FinishReason::ContentFilter),
        ),
        (json!({"candidates": [{"content": {"parts": [{"text": "x"}]}}]}), Ok(FinishReason::Stop)),
        (json!({"candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL", "finishMessage": "bad"}]}), Err(502)),
        (json!({"candidates": []}), Err(502)),
        (json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}), Err(429)),
        (
            json!({"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "x"}}]}, "finishReason": "STOP"}]}),
            Err(502),
        ),
    ];
    for (body, expected) in cases {
        let got = parse_response(body.to_string().as_bytes()).map(|r| r.finish).map_err(|e| e.status);
        assert_eq!(got, expected, "{body}");
    }
    assert_eq!(parse_response(b"<html>").unwrap_err().status, 502);
}

#[test]
fn render_error_statuses() {
    let cases = [
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (402, "PERMISSION_DENIED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (502, "UNAVAILABLE"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
        (529, "UNAVAILABLE"),
        (418, "FAILED_PRECONDITION"),
    ];
    for (status, name) in cases {
        let v: Value = serde_json::from_slice(&render_error(status, "boom \"x\"")).unwrap();
        assert_eq!(v, json!({"error": {"code": status, "message": "boom \"x\"", "status": name}}));
        // An upstream error in this shape decodes back to the same status.
        assert_eq!(upstream_error(&v["error"]).status, status.max(400));
    }
}
