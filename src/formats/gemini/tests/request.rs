//! Client request parsing (`parse_request`), from Gemini CLI captures to every error.

use super::*;

#[test]
fn gemini_cli_generate_json_request() {
    let req = parse_request(CLI_GENERATE.as_bytes(), &ctx(Op::Generate, Some("gemini-2.5-flash-lite"))).unwrap();
    assert_eq!(req.model, "gemini-2.5-flash-lite");
    assert!(!req.stream);
    assert!(req.system.as_deref().unwrap().starts_with("\nYou are a specialized Task Routing AI"));
    assert_eq!(
        req.messages,
        vec![Message::text(
            Role::User,
            "Add a --verbose flag to the CLI in src/main.rs and thread it through to the logger."
        )]
    );
    assert_eq!((req.temperature, req.top_p, req.max_tokens), (Some(0.0), Some(1.0), Some(1024)));
    assert_eq!(
        req.thinking,
        Some(ThinkingConfig { enabled: true, budget_tokens: Some(512), effort: None, include_thoughts: false })
    );
    let Some(ResponseFormat::JsonSchema { name, schema, strict: None }) = &req.response_format else {
        panic!("{:?}", req.response_format)
    };
    assert_eq!(name, "response");
    assert_eq!(
        schema,
        &json!({"type": "object", "properties": {
            "reasoning": {"type": "string", "description": "A brief, step-by-step explanation for the model choice, referencing the rubric."},
            "model_choice": {"type": "string", "enum": ["flash", "pro"]}},
            "required": ["reasoning", "model_choice"]})
    );
    assert!(req.tools.is_empty() && req.tool_choice.is_none());
}

#[test]
fn gemini_cli_stream_request_with_tools_and_history() {
    let req = parse_request(CLI_STREAM.as_bytes(), &ctx(Op::StreamGenerate, Some("models/gemini-2.5-pro"))).unwrap();
    assert_eq!(req.model, "gemini-2.5-pro");
    assert!(req.stream);
    assert!(req.system.as_deref().unwrap().starts_with("You are an interactive CLI agent"));
    assert_eq!(req.tools.len(), 11);
    let raw: Value = serde_json::from_str(CLI_STREAM).unwrap();
    for (i, t) in req.tools.iter().enumerate() {
        let decl = &raw["tools"][0]["functionDeclarations"][i];
        assert_eq!(t.name, decl["name"].as_str().unwrap());
        assert_eq!(t.parameters, decl["parametersJsonSchema"], "{}", t.name);
        assert_eq!(t.description.as_deref(), decl["description"].as_str());
    }
    assert_eq!(req.messages.len(), 5);
    assert_eq!(req.messages[1], Message::text(Role::Assistant, "Got it. Thanks for the context!"));
    assert_eq!(
        req.messages[3].content,
        vec![
            Part::Thinking {
                text: "**Locating the manifest**\n\nThe version lives in Cargo.toml at the project root, so I will read it."
                    .into(),
                signature: None
            },
            Part::ToolCall {
                id: "call_read_file_0".into(),
                name: "read_file".into(),
                arguments: r#"{"absolute_path":"/home/dev/ailurus/Cargo.toml"}"#.into(),
                signature: Some("ailurus.gemini.CiQB0e2Kb7dP0Vx9yQ3m4l2v1mZ8sEXAMPLEsignatureAAAAbase64==".into()),
            },
        ]
    );
    assert_eq!(
        req.messages[4],
        Message {
            role: Role::User,
            content: vec![Part::ToolResult {
                call_id: "call_read_file_0".into(),
                name: Some("read_file".into()),
                content: vec![Part::text("[package]\nname = \"ailurus\"\nversion = \"0.1.0\"\nedition = \"2021\"\n")],
                is_error: false,
            }],
        }
    );
    assert_eq!(
        req.thinking,
        Some(ThinkingConfig { enabled: true, budget_tokens: Some(8192), effort: None, include_thoughts: true })
    );
    assert_eq!((req.temperature, req.top_p), (Some(1.0), Some(0.95)));

    // …and back out to a real Gemini upstream.
    let body: Value = serde_json::from_slice(&build_request(&req, "gemini-2.5-pro").unwrap()).unwrap();
    assert_eq!(body["tools"][0]["functionDeclarations"], raw["tools"][0]["functionDeclarations"]);
    assert_eq!(body["contents"][3]["parts"][0]["thought"], json!(true));
    assert_eq!(
        body["contents"][3]["parts"][1],
        json!({"functionCall": {"name": "read_file", "args": {"absolute_path": "/home/dev/ailurus/Cargo.toml"}},
               "thoughtSignature": "CiQB0e2Kb7dP0Vx9yQ3m4l2v1mZ8sEXAMPLEsignatureAAAAbase64=="})
    );
    assert_eq!(
        body["contents"][4]["parts"][0],
        json!({"functionResponse": {"name": "read_file", "response": {"content": "[package]\nname = \"ailurus\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"}}})
    );
    assert_eq!(body["generationConfig"]["thinkingConfig"], json!({"thinkingBudget": 8192, "includeThoughts": true}));
    assert_eq!(body["systemInstruction"]["parts"][0]["text"], json!(req.system.unwrap()));
}

#[test]
fn parse_request_cases() {
    let g = Op::Generate;
    let cases: Vec<(&str, Op, Value, Value)> = vec![
        (
            "missing role is user; thought and signatures",
            g,
            json!({"contents": [
                {"parts": [{"text": "hi"}]},
                {"role": "model", "parts": [
                    {"text": "hmm", "thought": true, "thoughtSignature": "S1"},
                    {"text": "answer", "thoughtSignature": "S2"}]}]}),
            json!({"stream": false, "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "text": "hmm", "signature": "ailurus.gemini.S1"},
                    {"type": "thinking", "text": "", "signature": "ailurus.gemini.S2"},
                    {"type": "text", "text": "answer"}]}]}),
        ),
        (
            "images",
            g,
            user(json!([
                {"text": "what is this"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
                {"fileData": {"fileUri": "gs://bucket/cat.webp"}}])),
            json!({"messages": [{"role": "user", "content": [
                {"type": "text"},
                {"type": "image", "source": {"kind": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"kind": "url", "url": "https://generativelanguage.googleapis.com/v1beta/files/abc"}},
                {"type": "image", "source": {"kind": "url", "url": "gs://bucket/cat.webp"}}]}]}),
        ),
        (
            "snake_case fields, string systemInstruction",
            g,
            json!({"system_instruction": "be brief", "contents": [{"role": "user", "parts": [
                {"inline_data": {"mime_type": "image/gif", "data": "R0lG"}}]}],
                "generation_config": {"max_output_tokens": 10, "stop_sequences": ["END"], "top_p": 0.5}}),
            json!({"system": "be brief", "max_tokens": 10, "stop": ["END"], "top_p": 0.5, "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"kind": "base64", "media_type": "image/gif", "data": "R0lG"}}]}]}),
        ),
        (
            "parallel calls with ids and without; responses matched by id, then by name in order",
            g,
            json!({"contents": [
                {"role": "user", "parts": [{"text": "go"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "read", "args": {"p": "a"}}},
                    {"functionCall": {"name": "read", "args": {"p": "b"}}},
                    {"functionCall": {"name": "ls", "args": {}, "id": "given-1"}}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "ls", "id": "given-1", "response": {"result": "x y"}}},
                    {"functionResponse": {"name": "read", "id": "cli-made-up-id", "response": {"output": "A"}}},
                    {"functionResponse": {"name": "read", "response": {"error": "no such file"}}}]}]}),
            json!({"messages": [{}, {"content": [
                {"type": "tool_call", "id": "call_read_0", "name": "read", "arguments": "{\"p\":\"a\"}"},
                {"type": "tool_call", "id": "call_read_1", "name": "read", "arguments": "{\"p\":\"b\"}"},
                {"type": "tool_call", "id": "given-1", "name": "ls", "arguments": "{}"}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "call_id": "given-1", "name": "ls", "content": [{"type": "text", "text": "x y"}], "is_error": false},
                    {"type": "tool_result", "call_id": "call_read_0", "content": [{"type": "text", "text": "A"}], "is_error": false},
                    {"type": "tool_result", "call_id": "call_read_1", "content": [{"type": "text", "text": "no such file"}], "is_error": true}]}]}),
        ),
        (
            "structured function response is kept as JSON text; response images",
            g,
            json!({"contents": [
                {"role": "model", "parts": [{"functionCall": {"name": "shot", "args": {}}}]},
                {"role": "function", "parts": [{"functionResponse": {"name": "shot", "response": {"w": 2, "h": 3},
                    "parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]}}]}]}),
            json!({"messages": [{}, {"role": "user", "content": [{"type": "tool_result", "call_id": "call_shot_0", "content": [
                {"type": "text", "text": "{\"h\":3,\"w\":2}"},
                {"type": "image", "source": {"kind": "base64", "media_type": "image/png", "data": "AAAA"}}]}]}]}),
        ),
        (
            "OpenAPI parameters converted, ANY with one name",
            g,
            json!({"contents": [{"parts": [{"text": "x"}]}],
                "tools": [{"functionDeclarations": [
                    {"name": "f", "description": "d", "parameters": {"type": "OBJECT", "propertyOrdering": ["a", "b"], "properties": {
                        "a": {"type": "STRING", "nullable": true, "format": "enum", "enum": ["x", "y"]},
                        "b": {"type": "ARRAY", "items": {"type": "INTEGER"}, "minItems": "1", "max_items": "3"},
                        "type": {"type": "STRING"}}, "required": ["a"]}},
                    {"name": "g"}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}}}),
            json!({"tool_choice": {"mode": "tool", "name": "f"}, "tools": [
                {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {
                    "a": {"type": ["string", "null"], "enum": ["x", "y"]},
                    "b": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3},
                    "type": {"type": "string"}}, "required": ["a"]}},
                {"name": "g", "parameters": {"type": "object", "properties": {}}}]}),
        ),
        (
            "ANY with several names filters tools",
            g,
            json!({"contents": [{"parts": [{"text": "x"}]}],
                "tools": [{"functionDeclarations": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["a", "c"]}}}),
            json!({"tool_choice": {"mode": "required"}, "tools": [{"name": "a"}, {"name": "c"}]}),
        ),
        (
            "NONE",
            g,
            json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{"name": "a"}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}),
            json!({"tool_choice": {"mode": "none"}}),
        ),
        (
            "VALIDATED is auto",
            g,
            json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{"name": "a"}]}],
                "toolConfig": {"functionCallingConfig": {"mode": "VALIDATED"}}}),
            json!({"tool_choice": {"mode": "auto"}}),
        ),
        (
            "responseSchema (OpenAPI) and thinking disabled",
            g,
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {
                "responseMimeType": "application/json", "responseSchema": {"type": "ARRAY", "items": {"type": "NUMBER"}},
                "thinkingConfig": {"thinkingBudget": 0}, "topK": 40, "seed": 7, "candidateCount": 1}}),
            json!({"response_format": {"kind": "json_schema", "name": "response", "schema": {"type": "array", "items": {"type": "number"}}},
                "thinking": {"enabled": false, "include_thoughts": false}}),
        ),
        (
            "JSON mode without schema; dynamic thinking",
            g,
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {
                "responseMimeType": "application/json", "thinkingConfig": {"thinkingBudget": -1, "includeThoughts": true}}}),
            json!({"response_format": {"kind": "json_object"}, "thinking": {"enabled": true, "include_thoughts": true}}),
        ),
        (
            "thinkingLevel → effort (Gemini 3 CLI)",
            Op::StreamGenerate,
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {
                "thinkingConfig": {"thinkingLevel": "HIGH", "includeThoughts": true}}, "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}], "labels": {"a": "b"}}),
            json!({"stream": true, "thinking": {"enabled": true, "effort": "high", "include_thoughts": true}}),
        ),
        (
            "redacted-thinking marker comes back as RedactedThinking",
            g,
            json!({"contents": [{"role": "model", "parts": [{"text": "", "thought": true, "thoughtSignature": "ailurus-redacted:EqQBopaque"}, {"text": "ok"}]}]}),
            json!({"messages": [{"role": "assistant", "content": [{"type": "redacted_thinking", "data": "EqQBopaque"}, {"type": "text", "text": "ok"}]}]}),
        ),
        (
            "countTokens with contents",
            Op::CountTokens,
            json!({"contents": [{"parts": [{"text": "count me"}]}]}),
            json!({"model": "gemini-2.5-pro", "stream": false, "messages": [{"role": "user"}]}),
        ),
        ("countTokens with an empty body", Op::CountTokens, json!({}), json!({"messages": []})),
    ];
    for (name, op, body, expected) in cases {
        check_ok(name, op, body, expected);
    }
}

#[test]
fn count_tokens_wrapped_request() {
    let body = json!({"generateContentRequest": {"model": "models/gemini-2.5-flash",
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "sys"}]},
        "tools": [{"functionDeclarations": [{"name": "t", "parametersJsonSchema": {"type": "object"}}]}]}});
    let req = parse_request(body.to_string().as_bytes(), &ctx(Op::CountTokens, None)).unwrap();
    assert_eq!(req.model, "gemini-2.5-flash");
    assert_eq!(req.system.as_deref(), Some("sys"));
    assert_eq!(req.tools.len(), 1);
    assert!(!req.stream);
    let req = parse_request(body.to_string().as_bytes(), &ctx(Op::CountTokens, Some("from-url"))).unwrap();
    assert_eq!(req.model, "from-url");
    assert_eq!(render_count_tokens(42), br#"{"totalTokens":42}"#);
}

#[test]
fn parse_request_errors_name_the_field() {
    let text = json!([{"text": "x"}]);
    let cases: Vec<(&str, Option<&str>, Value, &str)> = vec![
        ("no model", None, user(text.clone()), "model is missing"),
        ("empty contents", Some("m"), json!({"contents": []}), "contents must not be empty"),
        ("not an object", Some("m"), json!([1]), "must be a JSON object"),
        ("contents type", Some("m"), json!({"contents": "hi"}), "contents must be an array, not a string"),
        ("role", Some("m"), json!({"contents": [{"role": "system", "parts": text}]}), "contents[0].role \"system\""),
        (
            "parts type",
            Some("m"),
            json!({"contents": [{"parts": {"text": 1}}]}),
            "contents[0].parts must be an array, not an object",
        ),
        (
            "text type",
            Some("m"),
            user(json!([{"text": 5}])),
            "contents[0].parts[0].text must be a string, not a number",
        ),
        ("empty part", Some("m"), user(json!([{}])), "contents[0].parts[0] has no supported data field"),
        (
            "executableCode",
            Some("m"),
            user(json!([{"executableCode": {"language": "PYTHON", "code": "1"}}])),
            "contents[0].parts[0].executableCode",
        ),
        (
            "codeExecutionResult",
            Some("m"),
            user(json!([{"codeExecutionResult": {"outcome": "OUTCOME_OK"}}])),
            "codeExecutionResult",
        ),
        (
            "videoMetadata",
            Some("m"),
            user(json!([{"fileData": {"mimeType": "video/mp4", "fileUri": "u"}, "videoMetadata": {}}])),
            "videoMetadata",
        ),
        (
            "pdf",
            Some("m"),
            user(json!([{"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}}])),
            "\"application/pdf\"",
        ),
        (
            "video file",
            Some("m"),
            user(json!([{"fileData": {"mimeType": "video/mp4", "fileUri": "https://youtu.be/x"}}])),
            "\"video/mp4\"",
        ),
        (
            "unknown file",
            Some("m"),
            user(json!([{"fileData": {"fileUri": "https://youtu.be/x"}}])),
            "does not look like an image",
        ),
        (
            "orphan response",
            Some("m"),
            user(json!([{"functionResponse": {"name": "f", "response": {}}}])),
            "answers no earlier functionCall",
        ),
        (
            "call args",
            Some("m"),
            user(json!([{"functionCall": {"name": "f", "args": [1]}}])),
            "functionCall.args must be an object, not an array",
        ),
        ("call name", Some("m"), user(json!([{"functionCall": {"args": {}}}])), "functionCall.name is required"),
        (
            "cachedContent",
            Some("m"),
            json!({"contents": [{"parts": text}], "cachedContent": "cachedContents/abc"}),
            "cachedContent is not supported",
        ),
        (
            "candidateCount",
            Some("m"),
            json!({"contents": [{"parts": text}], "generationConfig": {"candidateCount": 2}}),
            "generationConfig.candidateCount 2",
        ),
        (
            "enum mime",
            Some("m"),
            json!({"contents": [{"parts": text}], "generationConfig": {"responseMimeType": "text/x.enum"}}),
            "text/x.enum",
        ),
        (
            "other mime",
            Some("m"),
            json!({"contents": [{"parts": text}], "generationConfig": {"responseMimeType": "text/xml"}}),
            "\"text/xml\"",
        ),
        (
            "modalities",
            Some("m"),
            json!({"contents": [{"parts": text}], "generationConfig": {"responseModalities": ["TEXT", "IMAGE"]}}),
            "responseModalities[1] \"IMAGE\"",
        ),
        (
            "budget",
            Some("m"),
            json!({"contents": [{"parts": text}], "generationConfig": {"thinkingConfig": {"thinkingBudget": -5}}}),
            "thinkingBudget -5",
        ),
        (
            "huge max",
            Some("m"),
            json!({"contents": [{"parts": text}], "generationConfig": {"maxOutputTokens": 1e30}}),
            "generationConfig.maxOutputTokens must be an integer from 0 to 4294967295",
        ),
        (
            "temp type",
            Some("m"),
            json!({"contents": [{"parts": text}], "generationConfig": {"temperature": "hot"}}),
            "generationConfig.temperature must be a number, not a string",
        ),
        (
            "googleSearch",
            Some("m"),
            json!({"contents": [{"parts": text}], "tools": [{"googleSearch": {}}]}),
            "tools[0].googleSearch is not supported",
        ),
        (
            "googleSearchRetrieval",
            Some("m"),
            json!({"contents": [{"parts": text}], "tools": [{"google_search_retrieval": {}}]}),
            "tools[0].googleSearchRetrieval",
        ),
        (
            "codeExecution",
            Some("m"),
            json!({"contents": [{"parts": text}], "tools": [{"functionDeclarations": []}, {"codeExecution": {}}]}),
            "tools[1].codeExecution",
        ),
        (
            "urlContext",
            Some("m"),
            json!({"contents": [{"parts": text}], "tools": [{"urlContext": {}}]}),
            "tools[0].urlContext",
        ),
        (
            "retrieval",
            Some("m"),
            json!({"contents": [{"parts": text}], "tools": [{"retrieval": {}}]}),
            "tools[0].retrieval",
        ),
        (
            "decl name",
            Some("m"),
            json!({"contents": [{"parts": text}], "tools": [{"functionDeclarations": [{"description": "x"}]}]}),
            "functionDeclarations[0].name is required",
        ),
        (
            "mode",
            Some("m"),
            json!({"contents": [{"parts": text}], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}}),
            "mode \"SOMETIMES\"",
        ),
        (
            "allowed",
            Some("m"),
            json!({"contents": [{"parts": text}], "tools": [{"functionDeclarations": [{"name": "a"}]}], "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["x", "y"]}}}),
            "allowedFunctionNames names no declared function",
        ),
        (
            "system parts",
            Some("m"),
            json!({"contents": [{"parts": text}], "systemInstruction": {"parts": [{"inlineData": {}}]}}),
            "systemInstruction.parts[0] must be a text part",
        ),
    ];
    for (name, model, body, needle) in cases {
        let err = parse_request(body.to_string().as_bytes(), &ctx(Op::Generate, model)).unwrap_err();
        assert_eq!(err.status, 400, "{name}");
        assert!(err.message.contains(needle), "{name}: {:?} lacks {needle:?}", err.message);
    }
    let err = parse_request(b"{not json", &gen()).unwrap_err();
    assert!(err.message.contains("not valid JSON"));
}
