//! Garbage never panics: random bytes, deep nesting, huge numbers, wrong JSON types.

use super::*;

fn poke(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = parse_request(bytes, &ParseContext::default());
    let _ = parse_response(bytes);
    let _ = validate_stream(bytes);
    let mut dec = decoder();
    for name in [None, Some("response.completed"), Some("error")] {
        let _ = dec.feed(name, &text);
    }
    let _ = dec.end();
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = fastrand::Rng::with_seed(42);
    let alphabet = b"{}[]\":,0123456789.-eE truefalsnl\\\n\rabc_type";
    for _ in 0..2000 {
        let len = rng.usize(0..200);
        let bytes: Vec<u8> = if rng.bool() {
            (0..len).map(|_| rng.u8(..)).collect()
        } else {
            (0..len).map(|_| alphabet[rng.usize(0..alphabet.len())]).collect()
        };
        poke(&bytes);
    }
}

#[test]
fn deep_nesting_and_huge_numbers_never_panic() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    poke(deep.as_bytes());
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    poke(deep_obj.as_bytes());
    let nested =
        format!(r#"{{"model":"m","input":[{{"role":"user","content":{}{}}}]}}"#, "[".repeat(120), "]".repeat(120));
    assert_eq!(parse(&nested).unwrap_err().status, 400);
    for n in ["1e400", "-1e400", "18446744073709551616", "-0", "1.5", "NaN"] {
        poke(format!(r#"{{"model":"m","input":"x","max_output_tokens":{n},"temperature":{n}}}"#).as_bytes());
    }
    let huge = json!({"type": "response.completed", "response": {"usage": {
        "input_tokens": u64::MAX, "input_tokens_details": {"cached_tokens": u64::MAX},
        "output_tokens": u64::MAX, "output_tokens_details": {"reasoning_tokens": u64::MAX}}}});
    let events = decoder().feed(None, &huge.to_string()).unwrap();
    let mut enc = encoder("m");
    let mut out = Vec::new();
    for ev in &events {
        enc.event(ev, &mut out);
    }
    enc.finish(&mut out);
    validate_stream(&out).unwrap();
    let big =
        Usage { input_tokens: u64::MAX, cache_read_tokens: u64::MAX, cache_write_tokens: u64::MAX, ..Usage::default() };
    let resp =
        ChatResponse { id: String::new(), model: "m".into(), content: vec![], finish: FinishReason::Stop, usage: big };
    assert!(parse_response(&render_response(&resp, "m")).is_ok());
}

#[test]
fn wrong_json_types_never_panic() {
    let wrong = [
        json!(null),
        json!(1),
        json!(-1),
        json!(1.5e300),
        json!("s"),
        json!([]),
        json!({}),
        json!(true),
        json!([{}]),
        json!([1, "x", null]),
    ];
    let base: Value = serde_json::from_str(CODEX).unwrap();
    // Every top-level field, and every field of every input item and of every tool.
    let mut paths: Vec<Vec<Value>> = base.as_object().unwrap().keys().map(|k| vec![json!(k)]).collect();
    for (i, item) in base["input"].as_array().unwrap().iter().enumerate() {
        for k in item.as_object().unwrap().keys() {
            paths.push(vec![json!("input"), json!(i), json!(k)]);
        }
        paths.push(vec![json!("input"), json!(i)]);
    }
    for (i, tool) in base["tools"].as_array().unwrap().iter().enumerate() {
        for k in tool.as_object().unwrap().keys() {
            paths.push(vec![json!("tools"), json!(i), json!(k)]);
        }
    }
    for path in &paths {
        for w in &wrong {
            let mut req = base.clone();
            let mut slot = &mut req;
            for p in path {
                slot = match p {
                    Value::String(k) => &mut slot[k.as_str()],
                    Value::Number(i) => &mut slot[i.as_u64().unwrap() as usize],
                    _ => unreachable!(),
                };
            }
            *slot = w.clone();
            if let Err(e) = parse(&req.to_string()) {
                assert_eq!(e.status, 400, "{path:?} = {w}: {e}");
            }
        }
    }
    // Upstream events with wrong field types.
    let kinds = [
        "response.created",
        "response.output_item.added",
        "response.output_item.done",
        "response.output_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_part.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.completed",
        "response.incomplete",
        "response.failed",
        "error",
    ];
    for kind in kinds {
        for w in &wrong {
            for key in
                ["response", "item", "output_index", "item_id", "delta", "arguments", "summary_index", "code", "error"]
            {
                let mut dec = decoder();
                let _ = dec.feed(None, r#"{"type":"response.output_item.added","output_index":0,"item":{"type":"function_call","id":"fc","call_id":"c","name":"f"}}"#);
                let mut data = json!({"type": kind, "output_index": 0, "item_id": "fc"});
                data[key] = w.clone();
                let _ = dec.feed(Some(kind), &data.to_string());
                let item = json!({"type": kind, "item": {"type": w, "summary": w, "content": w, "arguments": w, "encrypted_content": w}, "response": {"output": w, "usage": w, "error": w, "incomplete_details": w}});
                let _ = dec.feed(Some(kind), &item.to_string());
                let _ = dec.end();
                let _ = parse_response(
                    json!({"status": w, "output": [{"type": "message", "content": w}], "usage": w})
                        .to_string()
                        .as_bytes(),
                );
            }
        }
    }
}
