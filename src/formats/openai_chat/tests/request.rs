//! `parse_request`: fixtures, conversation shapes, and 400s that name the field.

use super::*;

#[test]
fn fixture_requests_parse_to_canonical() {
    for (name, body, expected) in FIX_REQ {
        let got = parse(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, canonical(expected), "fixture {name}");
    }
}

#[test]
fn request_cases() {
    // (body, check)
    type Check = fn(ChatRequest);
    let cases: Vec<(&str, Check)> = vec![
        (
            // Tool messages with no user message after them, then an assistant turn.
            r#"{"model":"m","messages":[{"role":"user","content":"hi"},
               {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
               {"role":"tool","tool_call_id":"c1","content":"ok"},
               {"role":"assistant","content":"done"},
               {"role":"tool","tool_call_id":"zz","content":null},
               {"role":"user","content":"a"},{"role":"user","content":"b"}]}"#,
            |r| {
                assert_eq!(r.messages.len(), 6);
                assert_eq!(
                    r.messages[2].content,
                    vec![Part::ToolResult {
                        call_id: "c1".into(),
                        name: Some("f".into()),
                        content: vec![Part::text("ok")],
                        is_error: false
                    }]
                );
                // Unknown call id: no name; the next user message merges in, the one after does not.
                assert_eq!(r.messages[4].content.len(), 2);
                assert!(matches!(&r.messages[4].content[0], Part::ToolResult { name: None, .. }));
                assert_eq!(r.messages[5], Message::text(Role::User, "b"));
            },
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"none",
               "tool_choice":{"type":"function","function":{"name":"f"}},"stop":"END",
               "response_format":{"type":"json_object"},"safety_identifier":"s1","max_tokens":5,
               "max_completion_tokens":7,"n":1,"logprobs":false,"top_logprobs":0,"modalities":["text"]}"#,
            |r| {
                assert_eq!(r.thinking.as_ref().map(|t| t.enabled), Some(false));
                assert_eq!(r.tool_choice, Some(ToolChoice::Tool { name: "f".into() }));
                assert_eq!(r.stop, vec!["END".to_string()]);
                assert_eq!(r.response_format, Some(ResponseFormat::JsonObject));
                assert_eq!(r.user.as_deref(), Some("s1"));
                assert_eq!(r.max_tokens, Some(7));
            },
        ),
        (
            r#"{"model":"qwen3","messages":[{"role":"user","content":"x"}],"enable_thinking":true,"thinking_budget":4096,
               "tool_choice":"required"}"#,
            |r| {
                let t = r.thinking.unwrap();
                assert!(t.enabled);
                assert_eq!(t.budget_tokens, Some(4096));
                assert_eq!(r.tool_choice, Some(ToolChoice::Required));
            },
        ),
        (
            // Assistant refusal part and field become text; non-base64 data URL stays a URL.
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":"data:text/plain,hi"}]},
               {"role":"assistant","content":[{"type":"refusal","refusal":"No."}],"refusal":"Sorry."}]}"#,
            |r| {
                assert_eq!(
                    r.messages[0].content,
                    vec![Part::Image { source: ImageSource::Url { url: "data:text/plain,hi".into() } }]
                );
                assert_eq!(r.messages[1].content, vec![Part::text("No."), Part::text("Sorry.")]);
            },
        ),
        (r#"{"model":"m","messages":[{"role":"system","content":"only system"}]}"#, |r| {
            assert_eq!(r.system.as_deref(), Some("only system"));
            assert!(r.messages.is_empty());
        }),
    ];
    for (i, (body, check)) in cases.into_iter().enumerate() {
        let r = parse(body).unwrap_or_else(|e| panic!("case {i}: {e}"));
        check(r);
    }
}

#[test]
fn bad_requests_name_the_field() {
    let m = r#""model":"m""#;
    let user = r#"{"role":"user","content":"x"}"#;
    let cases: Vec<(String, &str)> = vec![
        (format!(r#"{{{m},"messages":[{{"role":"function","name":"f","content":"x"}}]}}"#), "\"function\""),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"user","content":[{{"type":"input_audio","input_audio":{{"data":"AA","format":"wav"}}}}]}}]}}"#
            ),
            "messages[0].content[0].type \"input_audio\"",
        ),
        (
            format!(r#"{{{m},"messages":[{{"role":"user","content":[{{"type":"file","file":{{"file_id":"f"}}}}]}}]}}"#),
            "messages[0].content[0].type \"file\"",
        ),
        (format!(r#"{{{m},"messages":[{user}],"n":2}}"#), "n:"),
        (format!(r#"{{{m},"messages":[{user}],"logprobs":true}}"#), "logprobs"),
        (format!(r#"{{{m},"messages":[{user}],"top_logprobs":3}}"#), "top_logprobs"),
        (format!(r#"{{{m},"messages":[{user}],"audio":{{"voice":"alloy","format":"wav"}}}}"#), "audio"),
        (format!(r#"{{{m},"messages":[{user}],"modalities":["text","audio"]}}"#), "modalities"),
        (format!(r#"{{{m},"messages":[{user}],"prediction":{{"type":"content","content":"x"}}}}"#), "prediction"),
        (format!(r#"{{{m},"messages":[{user}],"functions":[]}}"#), "functions"),
        (
            format!(r#"{{{m},"messages":[{user}],"tools":[{{"type":"custom","custom":{{"name":"x"}}}}]}}"#),
            "tools[0].type",
        ),
        (format!(r#"{{{m},"messages":[{user}],"tool_choice":"sometimes"}}"#), "tool_choice"),
        (format!(r#"{{{m},"messages":[{user}],"tool_choice":{{"type":"allowed_tools"}}}}"#), "tool_choice.type"),
        (format!(r#"{{{m},"messages":[{user}],"max_tokens":-1}}"#), "max_tokens"),
        (format!(r#"{{{m},"messages":[{user}],"max_completion_tokens":99999999999}}"#), "max_completion_tokens"),
        (format!(r#"{{{m},"messages":[{user}],"temperature":"hot"}}"#), "temperature"),
        (format!(r#"{{{m},"messages":[{user}],"stop":[1]}}"#), "stop[0]"),
        (format!(r#"{{{m},"messages":[{user}],"response_format":{{"type":"yaml"}}}}"#), "response_format.type"),
        (format!(r#"{{{m},"messages":[{user}],"web_search_options":{{}}}}"#), "web_search_options"),
        (format!(r#"{{{m},"messages":[]}}"#), "messages"),
        (r#"{"messages":[{"role":"user","content":"x"}]}"#.to_string(), "model"),
        (format!(r#"{{{m},"messages":[{{"role":"robot","content":"x"}}]}}"#), "messages[0].role"),
        (format!(r#"{{{m},"messages":[{{"role":"user","content":7}}]}}"#), "messages[0].content"),
        (format!(r#"{{{m},"messages":[{{"role":"user"}}]}}"#), "messages[0].content"),
        (format!(r#"{{{m},"messages":[{user},{{"role":"tool","content":"x"}}]}}"#), "messages[1].tool_call_id"),
        (
            format!(
                r#"{{{m},"messages":[{user},{{"role":"assistant","tool_calls":[{{"type":"function","function":{{"name":"f"}}}}]}}]}}"#
            ),
            "messages[1].tool_calls[0].id",
        ),
        (
            format!(
                r#"{{{m},"messages":[{user},{{"role":"assistant","content":null,"function_call":{{"name":"f","arguments":"{{}}"}}}}]}}"#
            ),
            "messages[1].function_call",
        ),
        (
            format!(
                r#"{{{m},"messages":[{{"role":"system","content":[{{"type":"image_url","image_url":{{"url":"x"}}}}]}}]}}"#
            ),
            "messages[0].content[0].type",
        ),
        ("[1,2]".to_string(), "JSON object"),
        ("{".to_string(), "not valid JSON"),
    ];
    for (body, needle) in cases {
        let err = parse(&body).expect_err(&body);
        assert_eq!(err.status, 400, "{body}");
        assert!(err.message.contains(needle), "{body}: {:?} lacks {needle:?}", err.message);
    }
}

#[test]
fn dispatch_goes_through_format() {
    let (_, body, expected) = FIX_REQ[0];
    let got = Format::OpenAiChat.parse_request(body.as_bytes(), &ParseContext::default()).unwrap();
    assert_eq!(got, canonical(expected));
}
