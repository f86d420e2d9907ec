//! Tests of `parse_request`: client body → canonical.

use super::*;

#[test]
fn parse_request_cases() {
    let cases: Vec<Value> = serde_json::from_str(PARSE_CASES).unwrap();
    assert!(cases.len() > 30);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let got = parse_request(case["body"].to_string().as_bytes(), &ctx_of(case.get("ctx")));
        if let Some(err) = case.get("error") {
            let e = got.expect_err(name);
            assert_eq!(u64::from(e.status), err[0].as_u64().unwrap(), "{name}: {e}");
            assert!(e.message.contains(err[1].as_str().unwrap()), "{name}: message was {:?}", e.message);
        } else {
            let want: ChatRequest = serde_json::from_value(case["expect"].clone()).unwrap();
            assert_eq!(got.unwrap_or_else(|e| panic!("{name}: {e}")), want, "{name}");
        }
    }
}

#[test]
fn claude_code_request_parses() {
    let req = parse_request(CLAUDE_CODE.as_bytes(), &ParseContext::default()).unwrap();
    assert_eq!(req.model, "claude-opus-4-5-20251101");
    assert!(req.stream);
    assert_eq!(req.max_tokens, Some(32000));
    let system = req.system.as_deref().unwrap();
    assert!(system.starts_with("x-anthropic-billing-header"));
    assert!(system.contains("\n\nYou are Claude Code, Anthropic's official CLI for Claude.\n\n"));
    assert_eq!(req.tools.len(), 22);
    assert!(req.tools.iter().any(|t| t.name == "mcp__ide__getDiagnostics"));
    assert_eq!(req.tools[1].name, "Bash");
    assert_eq!(req.tools[1].parameters["required"], json!(["command"]));
    assert_eq!(
        req.thinking,
        Some(ThinkingConfig {
            enabled: true,
            budget_tokens: None,
            effort: Some("high".into()),
            include_thoughts: true
        })
    );
    let user: Value = serde_json::from_str(req.user.as_deref().unwrap()).unwrap();
    assert!(user["session_id"].is_string());

    let roles: Vec<Role> = req.messages.iter().map(|m| m.role).collect();
    use Role::{Assistant as A, System as S, User as U};
    assert_eq!(roles, [U, A, U, A, U, S, U]);
    assert_eq!(req.messages[5].content, vec![Part::text("The user has changed the permission mode to acceptEdits.")]);
    let Part::Thinking { signature, .. } = &req.messages[1].content[0] else { panic!("thinking") };
    assert_eq!(
        signature.as_deref(),
        Some("ailurus.anthropic.EqQBCkgIBxABGAIqQKf0p3Vh9Jx1zGQx2m4yN0wqE3bXk5c1rG8sTtJ2uQ1w==")
    );
    assert!(matches!(&req.messages[1].content[2], Part::ToolCall { name, arguments, .. }
        if name == "Glob" && arguments == r#"{"pattern":"src/worker/**/*.rs"}"#));
    assert!(
        matches!(&req.messages[3].content[0], Part::RedactedThinking { data } if data.starts_with("ailurus.anthropic.EmwK"))
    );
    assert!(matches!(&req.messages[4].content[0], Part::ToolResult { content, .. }
        if content == &vec![Part::text("tool_reference: mcp__ide__getDiagnostics")]));
    assert!(
        matches!(&req.messages[6].content[1], Part::Image { source: ImageSource::Base64 { media_type, .. } } if media_type == "image/png")
    );

    // The older Claude Code shape: thinking enabled with a budget.
    let mut body: Value = serde_json::from_str(CLAUDE_CODE).unwrap();
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 31999});
    let req2 = parse_value(&body).unwrap();
    assert_eq!(req2.thinking.as_ref().and_then(|t| t.budget_tokens), Some(31999));
    // Through the dispatch, as the bridge calls it (POST /v1/messages?beta=true).
    let via = Format::AnthropicMessages.parse_request(CLAUDE_CODE.as_bytes(), &ParseContext::default()).unwrap();
    assert_eq!(via, req);
}

#[test]
fn wrong_json_types_are_400() {
    let bodies = [
        json!(null),
        json!("string"),
        json!(12),
        json!({"model": 1, "messages": []}),
        json!({"model": "m", "messages": {}}),
        json!({"model": "m", "messages": [1]}),
        json!({"model": "m", "messages": [{"role": 1, "content": "x"}]}),
        json!({"model": "m", "messages": [{"role": "user"}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [1]}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": 1}]}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image", "source": "x"}]}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image"}]}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": 5}]}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": 5}]}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "is_error": "yes"}]}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "thinking", "thinking": []}]}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "redacted_thinking"}]}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": "x"}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [1]}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"name": "a", "input_schema": 1}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"name": "a", "type": 3}]}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "auto", "disable_parallel_tool_use": 1}}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "thinking": []}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "enabled", "budget_tokens": 1_099_511_627_776u64}}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "enabled", "budget_tokens": 1.5}}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "system": 1}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "system": [1]}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "metadata": "x"}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "output_config": 1}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "output_config": {"effort": 1}}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "output_config": {"format": {"type": "json_schema"}}}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop_sequences": "x"}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_k": "x"}),
        json!({"model": "", "messages": [{"role": "user", "content": "x"}]}),
    ];
    for b in &bodies {
        let e = parse_value(b).expect_err(&b.to_string());
        assert_eq!(e.status, 400, "{b}: {e}");
    }
}
