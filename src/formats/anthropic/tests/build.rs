//! Tests of `build_request`: canonical → upstream body.

use super::*;

#[test]
fn claude_code_request_survives_build_and_reparse() {
    let req = parse_request(CLAUDE_CODE.as_bytes(), &ParseContext::default()).unwrap();
    let body = build_request(&req, "claude-opus-4-5-20251101").unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["messages"][5],
        json!({"role": "system", "content": "The user has changed the permission mode to acceptEdits."})
    );
    assert_eq!(v["thinking"], json!({"type": "enabled", "budget_tokens": 1024}));
    assert_eq!(v["output_config"], json!({"effort": "high"}));
    assert_eq!(v["tools"].as_array().unwrap().len(), 22);
    assert!(v["tools"][8].get("defer_loading").is_none());
    let back = parse_request(&body, &ParseContext::default()).unwrap();
    assert_eq!(back.messages, req.messages);
    assert_eq!(back.tools, req.tools);
    assert_eq!(back.system, req.system);
    assert_eq!(back.user, req.user);
    assert_eq!(back.max_tokens, req.max_tokens);
}

#[test]
fn build_request_cases() {
    let cases: Vec<Value> = serde_json::from_str(BUILD_CASES).unwrap();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let req: ChatRequest =
            serde_json::from_value(case["request"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let body = build_request(&req, case["model"].as_str().unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(got, case["expect"], "{name}:\n{}", serde_json::to_string_pretty(&got).unwrap());
        // What we send upstream is itself a valid Anthropic request.
        parse_request(&body, &ParseContext::default()).unwrap_or_else(|e| panic!("{name}: reparse {e}"));
    }
}

#[test]
fn build_request_refuses_what_anthropic_cannot_carry() {
    let base = ChatRequest { model: "m".into(), ..Default::default() };
    let cases = [
        Message {
            role: Role::User,
            content: vec![Part::ToolResult {
                call_id: "c".into(),
                name: None,
                content: vec![Part::ToolCall {
                    id: "x".into(),
                    name: "n".into(),
                    arguments: "{}".into(),
                    signature: None,
                }],
                is_error: false,
            }],
        },
        Message { role: Role::System, content: vec![Part::RedactedThinking { data: "ailurus.anthropic.d".into() }] },
    ];
    for m in cases {
        let req = ChatRequest { messages: vec![Message::text(Role::User, "q"), m], ..base.clone() };
        let e = build_request(&req, "m").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("messages[1].content[0]"), "{}", e.message);
    }
}
