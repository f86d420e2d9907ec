//! `build_request`: upstream bodies and the parts the API cannot carry.

use super::*;

const BUILD_CASES: &str = include_str!("../../../../tests/fixtures/openai_responses/build_cases.json");

#[test]
fn build_cases() {
    let cases: Vec<Value> = serde_json::from_str(BUILD_CASES).unwrap();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let req: ChatRequest = serde_json::from_value(case["canonical"].clone()).unwrap();
        let body = build_request(&req, case["model"].as_str().unwrap()).unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(got, case["expected"], "{name}:\n{}", serde_json::to_string_pretty(&got).unwrap());
    }
}

#[test]
fn build_rejects_parts_the_api_cannot_carry() {
    let cases = [
        (Role::Assistant, Part::Image { source: ImageSource::Url { url: "https://x/y.png".into() } }, "image"),
        (
            Role::User,
            Part::ToolCall { id: "c".into(), name: "f".into(), arguments: "{}".into(), signature: None },
            "tool call",
        ),
        (Role::System, Part::Thinking { text: "t".into(), signature: None }, "thinking"),
        (
            Role::Assistant,
            Part::ToolResult { call_id: "c".into(), name: None, content: vec![], is_error: false },
            "tool result",
        ),
    ];
    for (role, part, what) in cases {
        let req = ChatRequest {
            messages: vec![Message::text(Role::User, "hi"), Message { role, content: vec![Part::text("x"), part] }],
            ..Default::default()
        };
        let err = build_request(&req, "m").unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("messages[1].content[1]") && err.message.contains(what), "{}", err.message);
    }
}
