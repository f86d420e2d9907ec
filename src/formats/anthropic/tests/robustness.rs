//! Garbage, wrong JSON types, deep nesting and huge numbers never panic.

use super::*;

fn poke_everything(bytes: &[u8]) {
    let _ = parse_request(bytes, &ParseContext::default());
    let _ = parse_request(bytes, &ParseContext { model: Some("x".into()), op: Op::CountTokens });
    let _ = parse_response(bytes);
    let _ = validate_stream(bytes);
    let text = String::from_utf8_lossy(bytes);
    for event in [None, Some("message_start"), Some("content_block_delta"), Some("error")] {
        let mut d = decoder();
        let _ = d.feed(event, &text);
        let _ = d.end();
    }
    let _ = decode(bytes);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = fastrand::Rng::with_seed(42);
    for _ in 0..500 {
        let len = rng.usize(0..300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        poke_everything(&bytes);
    }
    // Mutations of a real body and a real stream.
    for base in [CLAUDE_CODE.as_bytes(), UPSTREAM_STREAM.as_bytes(), UPSTREAM_RESPONSE.as_bytes()] {
        for _ in 0..150 {
            let mut b = base.to_vec();
            for _ in 0..rng.usize(1..6) {
                let i = rng.usize(..b.len());
                b[i] = b"{}[]\":,0a-\\ \n"[rng.usize(..13)];
            }
            b.truncate(rng.usize(b.len() / 2..=b.len()));
            poke_everything(&b);
        }
    }
}

#[test]
fn deep_nesting_and_huge_numbers() {
    // Deeper than serde_json's recursion limit: a clean 400.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(parse_request(deep.as_bytes(), &ParseContext::default()).unwrap_err().status, 400);
    assert_eq!(parse_response(deep.as_bytes()).unwrap_err().status, 502);
    let mut d = decoder();
    assert_eq!(d.feed(None, &deep).unwrap_err().status, 502);
    // Deep but legal tool input survives parse → build → render.
    let input = format!("{}1{}", "{\"a\":".repeat(100), "}".repeat(100));
    let body = format!(
        r#"{{"model":"m","messages":[{{"role":"assistant","content":[{{"type":"tool_use","id":"t","name":"n","input":{input}}}]}}]}}"#
    );
    let req = parse_request(body.as_bytes(), &ParseContext::default()).unwrap();
    let built = build_request(&req, "m").unwrap();
    assert!(parse_request(&built, &ParseContext::default()).is_ok());
    let resp = ChatResponse {
        id: "x".into(),
        model: "m".into(),
        content: req.messages[0].content.clone(),
        finish: FinishReason::ToolUse,
        usage: Usage::default(),
    };
    assert_eq!(parse_response(&render_response(&resp, "m")).unwrap().content, resp.content);
    // Huge numbers.
    for (field, value) in [("max_tokens", "1e400"), ("temperature", "1e400"), ("max_tokens", "-0"), ("top_p", "-1e308")]
    {
        let body = format!(r#"{{"model":"m","{field}":{value},"messages":[{{"role":"user","content":"x"}}]}}"#);
        let r = parse_request(body.as_bytes(), &ParseContext::default());
        drop(r); // any answer is fine; it must not panic
    }
    let big = r#"{"model":"m","max_tokens":4294967295,"temperature":1e308,"messages":[{"role":"user","content":"x"}],"thinking":{"type":"enabled","budget_tokens":4294967295}}"#;
    let req = parse_request(big.as_bytes(), &ParseContext::default()).unwrap();
    let built: Value = serde_json::from_slice(&build_request(&req, "m").unwrap()).unwrap();
    assert_eq!(built["max_tokens"], u32::MAX);
    assert!(built.get("temperature").is_none());
    let huge_usage = r#"{"type":"message","content":[],"usage":{"input_tokens":18446744073709551615,"output_tokens":1e300,"cache_read_input_tokens":-5}}"#;
    let resp = parse_response(huge_usage.as_bytes()).unwrap();
    assert_eq!(resp.usage.input_tokens, u64::MAX);
    assert_eq!(resp.usage.output_tokens, 0);
    let mut enc = encoder("m");
    let mut out = Vec::new();
    enc.event(&StreamEvent::Usage(resp.usage), &mut out);
    enc.finish(&mut out);
    validate_stream(&out).unwrap();
}
