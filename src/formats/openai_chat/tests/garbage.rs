//! Garbage in, no panic: mutated fixtures, random bytes, deep nesting, huge numbers.

use super::*;

/// Every node of `v` replaced by each value of `subs`, one at a time.
fn mutations(v: &Value, subs: &[Value]) -> Vec<Value> {
    fn walk(root: &Value, path: &mut Vec<String>, subs: &[Value], out: &mut Vec<Value>) {
        let node = path.iter().try_fold(root, |n, k| match n {
            Value::Object(o) => o.get(k),
            Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        });
        let Some(node) = node else { return };
        for s in subs {
            let mut copy = root.clone();
            let mut slot = &mut copy;
            for k in path.iter() {
                slot = match slot {
                    Value::Object(o) => o.get_mut(k).unwrap(),
                    Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
                    _ => unreachable!(),
                };
            }
            *slot = s.clone();
            out.push(copy);
        }
        let keys: Vec<String> = match node {
            Value::Object(o) => o.keys().cloned().collect(),
            Value::Array(a) => (0..a.len()).map(|i| i.to_string()).collect(),
            _ => vec![],
        };
        for k in keys {
            path.push(k);
            walk(root, path, subs, out);
            path.pop();
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), subs, &mut out);
    out
}

fn substitutes() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(-1),
        json!(1.5),
        json!(1e308),
        serde_json::from_str("18446744073709551616").unwrap(),
        json!(u64::MAX),
        json!(""),
        json!("x"),
        json!([]),
        json!([null]),
        json!({}),
    ]
}

#[test]
fn garbage_never_panics() {
    let subs = substitutes();
    for (_, body, _) in FIX_REQ {
        let v: Value = serde_json::from_str(body).unwrap();
        for m in mutations(&v, &subs) {
            let bytes = serde_json::to_vec(&m).unwrap();
            if let Ok(req) = parse_request(&bytes, &ParseContext::default()) {
                let _ = build_request(&req, "m");
            }
        }
    }
    for body in [RESP_TOOLS, RESP_DEEPSEEK] {
        let v: Value = serde_json::from_str(body).unwrap();
        for m in mutations(&v, &subs) {
            let bytes = serde_json::to_vec(&m).unwrap();
            if let Ok(r) = parse_response(&bytes) {
                let _ = render_response(&r, "m");
            }
        }
    }
    for stream in [STREAM_TOOLS, STREAM_DEEPSEEK, STREAM_OPENROUTER, STREAM_OLLAMA] {
        for ev in sse::parse(stream.as_bytes()).unwrap() {
            let Ok(v) = serde_json::from_str::<Value>(&ev.data) else { continue };
            for m in mutations(&v, &subs) {
                let mut d = decoder();
                let mut enc = encoder("m");
                let mut out = Vec::new();
                if let Ok(evs) = d.feed(None, &m.to_string()) {
                    for e in &evs {
                        enc.event(e, &mut out);
                    }
                }
                let _ = d.end();
                enc.finish(&mut out);
                validate_stream(&out).unwrap();
            }
        }
    }

    // Random bytes.
    let mut rng = fastrand::Rng::with_seed(42);
    for _ in 0..2000 {
        let len = rng.usize(0..256);
        let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        let _ = parse_request(&bytes, &ParseContext::default());
        let _ = parse_response(&bytes);
        let _ = validate_stream(&bytes);
        let _ = decoder().feed(None, &String::from_utf8_lossy(&bytes));
    }

    // Deep nesting and huge numbers.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_obj = format!(r#"{{"model":"m","messages":[{{"role":"user","content":{deep}}}]}}"#);
    for body in [deep.as_str(), deep_obj.as_str()] {
        assert!(parse_request(body.as_bytes(), &ParseContext::default()).is_err());
        assert!(parse_response(body.as_bytes()).is_err());
        assert!(decoder().feed(None, body).is_err());
    }
    let huge = r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1e400}"#;
    assert!(parse_request(huge.as_bytes(), &ParseContext::default()).is_err());
    let huge =
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":1e308,"max_tokens":4294967296}"#;
    assert_eq!(parse_request(huge.as_bytes(), &ParseContext::default()).unwrap_err().status, 400);
    let usage_huge = r#"{"id":"a","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551615,
        "prompt_tokens_details":{"cached_tokens":18446744073709551615,"cache_write_tokens":18446744073709551615}}}"#;
    let evs = decoder().feed(None, usage_huge).unwrap();
    let mut enc = encoder("m");
    let mut out = Vec::new();
    for e in &evs {
        enc.event(e, &mut out);
    }
    enc.finish(&mut out);
    let _ = validate_stream(&out);
    let r = parse_response(usage_huge.replace("\"delta\":{}", "\"message\":{}").as_bytes()).unwrap();
    let _ = render_response(&r, "m");
}
