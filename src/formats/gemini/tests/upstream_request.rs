//! Building an upstream body (`build_request`).

use super::*;

fn rich_request() -> ChatRequest {
    ChatRequest {
        model: "claude-sonnet".into(),
        system: Some("You are terse.".into()),
        messages: vec![
            Message::text(Role::System, "Prefer Rust."),
            Message {
                role: Role::User,
                content: vec![
                    Part::text("Look:"),
                    Part::Image {
                        source: ImageSource::Base64 { media_type: "image/png".into(), data: "iVBOR".into() },
                    },
                    Part::Image { source: ImageSource::Url { url: "https://example.com/a.webp?x=1".into() } },
                    Part::Image { source: ImageSource::Url { url: "data:image/jpeg;base64,/9j/4AAQ".into() } },
                ],
            },
            Message {
                role: Role::Assistant,
                content: vec![
                    Part::Thinking {
                        text: "Need the file.".into(),
                        signature: Some("ailurus.gemini.thought-sig".into()),
                    },
                    // Another API's signature: never sent to Gemini; its text stays as plain text.
                    Part::Thinking { text: "Claude's plan.".into(), signature: Some("ailurus.anthropic.EqQB".into()) },
                    Part::RedactedThinking { data: "ailurus.responses.gAAAA".into() },
                    Part::Thinking { text: String::new(), signature: Some("ailurus.gemini.carry".into()) },
                    Part::ToolCall {
                        id: "toolu_01".into(),
                        name: "read".into(),
                        arguments: r#"{"path":"a.rs"}"#.into(),
                        signature: None,
                    },
                    Part::ToolCall {
                        id: "toolu_02".into(),
                        name: "shot".into(),
                        arguments: "not json".into(),
                        signature: Some("ailurus.gemini.own".into()),
                    },
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    Part::ToolResult {
                        call_id: "toolu_01".into(),
                        name: None,
                        content: vec![Part::text("fn main() {}")],
                        is_error: false,
                    },
                    Part::ToolResult {
                        call_id: "toolu_02".into(),
                        name: None,
                        content: vec![
                            Part::text("captured"),
                            Part::Image {
                                source: ImageSource::Base64 { media_type: "image/png".into(), data: "SHOT".into() },
                            },
                        ],
                        is_error: true,
                    },
                ],
            },
            Message::text(Role::User, "Now explain."),
            Message::text(Role::System, "Be brief."),
            Message {
                role: Role::Assistant,
                content: vec![Part::RedactedThinking { data: "ailurus.gemini.opaque".into() }],
            },
        ],
        max_tokens: Some(2048),
        temperature: Some(0.2),
        top_p: Some(0.9),
        stop: vec!["STOP!".into()],
        stream: true,
        tools: vec![ToolDef {
            name: "read".into(),
            description: Some("Read a file".into()),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string", "const": "x"}}}),
        }],
        tool_choice: Some(ToolChoice::Tool { name: "read".into() }),
        parallel_tool_calls: Some(false),
        thinking: Some(ThinkingConfig {
            enabled: true,
            budget_tokens: Some(4096),
            effort: None,
            include_thoughts: true,
        }),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "object", "properties": {"a": {"type": "string"}}}),
            strict: Some(true),
        }),
        user: Some("u1".into()),
    }
}

#[test]
fn build_request_full() {
    let body: Value = serde_json::from_slice(&build_request(&rich_request(), "gemini-2.5-pro").unwrap()).unwrap();
    let expected = json!({
        "systemInstruction": {"parts": [{"text": "You are terse.\n\nPrefer Rust."}]},
        "contents": [
            {"role": "user", "parts": [
                {"text": "Look:"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/a.webp?x=1"}},
                {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}}]},
            {"role": "model", "parts": [
                {"text": "Need the file.", "thought": true, "thoughtSignature": "thought-sig"},
                {"text": "Claude's plan."},
                {"functionCall": {"name": "read", "args": {"path": "a.rs"}}, "thoughtSignature": "carry"},
                {"functionCall": {"name": "shot", "args": {}}, "thoughtSignature": "own"}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "read", "response": {"content": "fn main() {}"}}},
                {"functionResponse": {"name": "shot", "response": {"error": "captured"}}},
                {"inlineData": {"mimeType": "image/png", "data": "SHOT"}},
                {"text": "Now explain."},
                {"text": "System: Be brief."}]}],
        "tools": [{"functionDeclarations": [{"name": "read", "description": "Read a file",
            "parametersJsonSchema": {"type": "object", "properties": {"path": {"type": "string", "const": "x"}}}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["read"]}},
        "generationConfig": {"maxOutputTokens": 2048, "temperature": 0.2, "topP": 0.9, "stopSequences": ["STOP!"],
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object", "properties": {"a": {"type": "string"}}},
            "thinkingConfig": {"thinkingBudget": 4096, "includeThoughts": true}}
    });
    assert_eq!(body, expected, "{body:#}");
}

#[test]
fn build_request_variants() {
    let base = ChatRequest { messages: vec![Message::text(Role::User, "hi")], ..Default::default() };
    let cases: Vec<(&str, ChatRequest, Value)> = vec![
        ("minimal", base.clone(), json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})),
        (
            "thinking off, json object",
            ChatRequest {
                thinking: Some(ThinkingConfig { enabled: false, ..Default::default() }),
                response_format: Some(ResponseFormat::JsonObject),
                ..base.clone()
            },
            json!({"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}, "responseMimeType": "application/json"}}),
        ),
        (
            "effort → thinkingBudget (the model may be before Gemini 3, which rejects thinkingLevel)",
            ChatRequest {
                thinking: Some(ThinkingConfig { enabled: true, effort: Some("LOW".into()), ..Default::default() }),
                ..base.clone()
            },
            json!({"generationConfig": {"thinkingConfig": {"thinkingBudget": 2048}}}),
        ),
        (
            "enabled without budget → dynamic",
            ChatRequest { thinking: Some(ThinkingConfig { enabled: true, ..Default::default() }), ..base.clone() },
            json!({"generationConfig": {"thinkingConfig": {"thinkingBudget": -1}}}),
        ),
        (
            "tool choices",
            ChatRequest {
                tools: vec![ToolDef { name: "t".into(), description: None, parameters: Value::Null }],
                tool_choice: Some(ToolChoice::Required),
                ..base.clone()
            },
            json!({"tools": [{"functionDeclarations": [{"name": "t", "parametersJsonSchema": {"type": "object", "properties": {}}}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}}),
        ),
        (
            "consecutive same-role turns merged, empty text skipped",
            ChatRequest {
                messages: vec![
                    Message::text(Role::User, "a"),
                    Message::text(Role::User, ""),
                    Message::text(Role::User, "b"),
                    Message::text(Role::Assistant, "c"),
                    Message {
                        role: Role::Assistant,
                        content: vec![Part::Thinking {
                            text: String::new(),
                            signature: Some("ailurus.gemini.s".into()),
                        }],
                    },
                ],
                ..Default::default()
            },
            json!({"contents": [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
                {"role": "model", "parts": [{"text": "c"}, {"text": "", "thought": true, "thoughtSignature": "s"}]}]}),
        ),
    ];
    for (name, req, expected) in cases {
        let body: Value = serde_json::from_slice(&build_request(&req, "m").unwrap()).unwrap();
        subset(&expected, &body, "").unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Gemini 3 takes an effort as thinkingLevel; 2.5 only budgets.
    let effort = |e: &str| ChatRequest {
        thinking: Some(ThinkingConfig { enabled: true, effort: Some(e.into()), ..Default::default() }),
        ..base.clone()
    };
    for (model, e, expected) in [
        ("gemini-3-pro-preview", "LOW", json!({"thinkingLevel": "low"})),
        ("models/gemini-3-flash-preview", "minimal", json!({"thinkingLevel": "minimal"})),
        ("gemini-2.5-pro", "medium", json!({"thinkingBudget": 8192})),
        ("gemini-2.5-flash", "high", json!({"thinkingBudget": 24576})),
        ("gemini-2.5-flash-lite", "minimal", json!({"thinkingBudget": 512})),
    ] {
        let body: Value = serde_json::from_slice(&build_request(&effort(e), model).unwrap()).unwrap();
        assert_eq!(body["generationConfig"]["thinkingConfig"], expected, "{model} {e}");
    }
    // Gemini 3 needs a signature on replayed calls: the first unsigned call of a turn gets the sentinel.
    let calls = ChatRequest {
        messages: vec![
            Message::text(Role::User, "go"),
            Message {
                role: Role::Assistant,
                content: vec![
                    Part::ToolCall { id: "a".into(), name: "f".into(), arguments: "{}".into(), signature: None },
                    Part::ToolCall { id: "b".into(), name: "g".into(), arguments: "{}".into(), signature: None },
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    Part::ToolResult { call_id: "a".into(), name: None, content: vec![], is_error: false },
                    Part::ToolResult { call_id: "b".into(), name: None, content: vec![], is_error: false },
                ],
            },
            Message {
                role: Role::Assistant,
                content: vec![Part::ToolCall {
                    id: "c".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                    signature: Some("ailurus.gemini.real".into()),
                }],
            },
        ],
        ..Default::default()
    };
    for (model, sentinel) in [
        ("gemini-3-pro-preview", true),
        ("models/gemini-3.1-flash", true),
        ("gemini-2.5-pro", false),
        ("gemma-3", false),
    ] {
        let body: Value = serde_json::from_slice(&build_request(&calls, model).unwrap()).unwrap();
        let turn = &body["contents"][1]["parts"];
        let want = if sentinel { json!("skip_thought_signature_validator") } else { Value::Null };
        assert_eq!(turn[0]["thoughtSignature"], want, "{model}");
        assert_eq!(turn[1]["thoughtSignature"], Value::Null, "{model}");
        assert_eq!(body["contents"][3]["parts"][0]["thoughtSignature"], "real", "{model}");
    }
    let orphan = ChatRequest {
        messages: vec![Message {
            role: Role::User,
            content: vec![Part::ToolResult { call_id: "call_9".into(), name: None, content: vec![], is_error: false }],
        }],
        ..Default::default()
    };
    let err = build_request(&orphan, "m").unwrap_err();
    assert_eq!(err.status, 400);
    assert!(err.message.contains("\"call_9\""), "{}", err.message);
    assert_eq!(build_request(&ChatRequest::default(), "m").unwrap_err().status, 400);
}
