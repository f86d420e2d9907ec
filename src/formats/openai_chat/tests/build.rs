//! `build_request`: the full upstream body, its variants, and build → parse round trips.

use super::*;
use crate::formats::openai_chat::upstream_request::{effort_from, IMAGE_NOTE};

fn rich_request() -> ChatRequest {
    ChatRequest {
        model: "client-name".into(),
        system: Some("Be brief.".into()),
        messages: vec![
            Message {
                role: Role::User,
                content: vec![
                    Part::text("Look at this"),
                    Part::Image { source: ImageSource::Base64 { media_type: "image/png".into(), data: "AAAA".into() } },
                    Part::Image { source: ImageSource::Url { url: "https://x/y.png".into() } },
                ],
            },
            Message {
                role: Role::Assistant,
                content: vec![
                    Part::Thinking { text: "hmm".into(), signature: Some("sig".into()) },
                    Part::RedactedThinking { data: "opaque".into() },
                    Part::text("Checking."),
                    Part::ToolCall {
                        id: "call_1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                        signature: Some("gemini-sig".into()),
                    },
                    Part::ToolCall {
                        id: "call_2".into(),
                        name: "screenshot".into(),
                        arguments: String::new(),
                        signature: None,
                    },
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    Part::ToolResult {
                        call_id: "call_1".into(),
                        name: Some("get_weather".into()),
                        content: vec![Part::text("18C")],
                        is_error: false,
                    },
                    Part::ToolResult {
                        call_id: "call_2".into(),
                        name: None,
                        content: vec![
                            Part::text("here"),
                            Part::Image { source: ImageSource::Url { url: "https://x/shot.png".into() } },
                        ],
                        is_error: true,
                    },
                    Part::text("and now?"),
                ],
            },
            Message::text(Role::System, "Answer in French."),
            Message::text(Role::User, "go"),
        ],
        max_tokens: Some(1000),
        temperature: Some(0.2),
        top_p: None,
        stop: vec!["END".into()],
        stream: true,
        tools: vec![
            ToolDef {
                name: "get_weather".into(),
                description: Some("Weather.".into()),
                parameters: json!({"type":"object","properties":{"city":{"type":"string"}}}),
            },
            ToolDef { name: "screenshot".into(), description: None, parameters: Value::Null },
        ],
        tool_choice: Some(ToolChoice::Tool { name: "get_weather".into() }),
        parallel_tool_calls: Some(false),
        thinking: Some(ThinkingConfig {
            enabled: true,
            budget_tokens: Some(5000),
            effort: None,
            include_thoughts: true,
        }),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "out".into(),
            schema: json!({"type":"object"}),
            strict: Some(true),
        }),
        user: Some("u1".into()),
    }
}

#[test]
fn build_request_full() {
    let body: Value = serde_json::from_slice(&build_request(&rich_request(), "gpt-4.1").unwrap()).unwrap();
    let expected = json!({
        "model": "gpt-4.1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "Look at this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
            ]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_2", "content": [
                {"type": "text", "text": "here"},
                {"type": "text", "text": IMAGE_NOTE}
            ]},
            {"role": "user", "content": "and now?"},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "go"}
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "screenshot", "parameters": {"type": "object", "properties": {}}}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false,
        "max_tokens": 1000,
        "temperature": 0.2,
        "stop": ["END"],
        "response_format": {"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": true}},
        "reasoning_effort": "medium",
        "user": "u1",
        "stream": true,
        "stream_options": {"include_usage": true}
    });
    assert_eq!(body, expected);
}

#[test]
fn build_request_variants() {
    let mut req = rich_request();
    req.stream = false;
    req.tools.clear();
    let body: Value = serde_json::from_slice(&build_request(&req, "openai/o3-mini").unwrap()).unwrap();
    assert_eq!(body["max_completion_tokens"], 1000);
    assert!(body.get("max_tokens").is_none());
    assert!(body.get("stream_options").is_none());
    assert_eq!(body["stream"], false);
    // No tools → no tool_choice / parallel_tool_calls (OpenAI rejects them alone).
    assert!(body.get("tool_choice").is_none() && body.get("parallel_tool_calls").is_none());

    let effort = |enabled: bool, budget: Option<u32>, effort: Option<&str>| {
        effort_from(&ThinkingConfig {
            enabled,
            budget_tokens: budget,
            effort: effort.map(str::to_string),
            include_thoughts: false,
        })
    };
    assert_eq!(effort(true, Some(1024), None).as_deref(), Some("low"));
    assert_eq!(effort(true, Some(2048), None).as_deref(), Some("low"));
    assert_eq!(effort(true, Some(8192), None).as_deref(), Some("medium"));
    assert_eq!(effort(true, Some(8193), None).as_deref(), Some("high"));
    assert_eq!(effort(true, Some(8193), Some("minimal")).as_deref(), Some("minimal"));
    assert_eq!(effort(true, None, None), None);
    assert_eq!(effort(false, Some(9000), Some("high")), None);
    assert_eq!(effort(false, None, Some("none")).as_deref(), Some("none"));

    // Tool results only → only tool messages; an image in a system message is refused.
    let req = ChatRequest {
        model: "m".into(),
        messages: vec![Message {
            role: Role::User,
            content: vec![Part::ToolResult { call_id: "c".into(), name: None, content: vec![], is_error: false }],
        }],
        ..Default::default()
    };
    let body: Value = serde_json::from_slice(&build_request(&req, "m").unwrap()).unwrap();
    assert_eq!(body["messages"], json!([{"role": "tool", "tool_call_id": "c", "content": ""}]));
    let req = ChatRequest {
        model: "m".into(),
        messages: vec![Message {
            role: Role::System,
            content: vec![Part::Image { source: ImageSource::Url { url: "u".into() } }],
        }],
        ..Default::default()
    };
    assert_eq!(build_request(&req, "m").unwrap_err().status, 400);
}

#[test]
fn build_then_parse_round_trips() {
    for (name, _, expected) in FIX_REQ {
        let mut req = canonical(expected);
        let body = build_request(&req, &req.model).unwrap();
        let back = parse_request(&body, &ParseContext::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Thinking in history is not sent upstream (documented lossy).
        for m in &mut req.messages {
            m.content.retain(|p| !matches!(p, Part::Thinking { .. } | Part::RedactedThinking { .. }));
        }
        assert_eq!(back, req, "fixture {name}");
    }
}
