//! Codex CLI's default request: its namespace tool group and hosted web search.

use super::super::items::function_call_item;
use super::*;

/// Codex CLI's default request (its multi-agent `namespace` tool group and hosted
/// `web_search`) parses; namespace calls render back with their namespace.
#[test]
fn codex_default_tools_parse_and_round_trip() {
    let body = include_bytes!("../../../../tests/fixtures/clients/codex_request.json");
    let req = parse_request(body, &ParseContext::default()).expect("codex default request parses");
    assert!(
        req.tools.iter().any(|t| t.name == "multi_agent_v1__close_agent"),
        "{:?}",
        req.tools.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    assert!(!req.tools.iter().any(|t| t.name.starts_with("web_search")));
    let item = function_call_item("fc_1", "call_1", "multi_agent_v1__close_agent", "{}", "completed");
    assert_eq!((item["namespace"].as_str(), item["name"].as_str()), (Some("multi_agent_v1"), Some("close_agent")));
    let history = serde_json::json!({"model": "m", "input": [
        {"type": "function_call", "call_id": "c1", "namespace": "multi_agent_v1", "name": "close_agent", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"}]});
    let req = parse_request(history.to_string().as_bytes(), &ParseContext::default()).unwrap();
    assert!(
        matches!(&req.messages[0].content[0], Part::ToolCall { name, .. } if name == "multi_agent_v1__close_agent")
    );
}
