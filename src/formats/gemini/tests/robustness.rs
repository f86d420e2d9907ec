//! Mutated and random input never panics; random event sequences always encode to valid streams.

use super::*;

fn paths(v: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let mut p = prefix.clone();
                p.push(k.clone());
                paths(c, p, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let mut p = prefix.clone();
                p.push(i.to_string());
                paths(c, p, out);
            }
        }
        _ => {}
    }
}

fn replace_at(v: &mut Value, path: &[String], new: Value) {
    let mut cur = v;
    for k in path {
        let next = match cur {
            Value::Object(m) => m.get_mut(k),
            Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    *cur = new;
}

fn junk(rng: &mut fastrand::Rng) -> Value {
    let pool = [
        Value::Null,
        json!(true),
        json!(-1),
        json!(0),
        json!(1e300),
        json!(-9.5),
        json!(u64::MAX),
        json!(""),
        json!("OBJECT"),
        json!("ailurus-redacted:"),
        json!([]),
        json!({}),
        json!([{}]),
        json!([null, 1, "x"]),
        json!({"text": 1}),
        json!({"functionCall": {"name": "f"}}),
        json!({"parts": "x"}),
    ];
    pool[rng.usize(..pool.len())].clone()
}

#[test]
fn mutated_inputs_never_panic() {
    let mut rng = fastrand::Rng::with_seed(7);
    let sources = [CLI_GENERATE, CLI_STREAM, UP_RESPONSE];
    for src in sources {
        let base: Value = serde_json::from_str(src).unwrap();
        let mut all = Vec::new();
        paths(&base, vec![], &mut all);
        for _ in 0..600 {
            let mut v = base.clone();
            for _ in 0..rng.usize(1..4) {
                let p = &all[rng.usize(..all.len())];
                replace_at(&mut v, p, junk(&mut rng));
            }
            let bytes = v.to_string();
            for op in [Op::Generate, Op::StreamGenerate, Op::CountTokens] {
                if let Ok(req) = parse_request(bytes.as_bytes(), &ctx(op, Some("m"))) {
                    let _ = build_request(&req, "m");
                }
            }
            if let Ok(r) = parse_response(bytes.as_bytes()) {
                let _ = render_response(&r, "m");
            }
            let _ = decoder().feed(None, &bytes);
        }
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut inputs: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"contents\"".to_vec(),
        b"1e999".to_vec(),
        b"{\"contents\": 18446744073709551616}".to_vec(),
        b"{\"contents\":[{\"parts\":[{\"text\":\"\\ud800\"}]}]}".to_vec(),
        "[".repeat(100_000).into_bytes(),
        format!("{}1{}", "{\"a\":".repeat(5000), "}".repeat(5000)).into_bytes(),
    ];
    // A deeply nested schema inside the recursion limit.
    let mut schema = json!({"type": "STRING"});
    for _ in 0..35 {
        schema = json!({"type": "OBJECT", "properties": {"x": schema}, "anyOf": [{"nullable": true}]});
    }
    let nested =
        json!({"contents": [{"parts": [{"text": "x"}]}], "tools": [{"functionDeclarations": [{"name": "f", "parameters": schema}]}]})
            .to_string()
            .into_bytes();
    let req = parse_request(&nested, &gen()).unwrap();
    assert_eq!(req.tools[0].parameters["properties"]["x"]["type"], json!("object"));
    inputs.push(nested);
    for _ in 0..500 {
        let n = rng.usize(0..200);
        inputs.push((0..n).map(|_| rng.u8(..)).collect());
    }
    for bytes in &inputs {
        for op in [Op::Generate, Op::StreamGenerate, Op::CountTokens] {
            let _ = parse_request(bytes, &ctx(op, Some("m")));
        }
        let _ = parse_response(bytes);
        let _ = validate_stream(bytes);
        let text = String::from_utf8_lossy(bytes);
        let mut d = decoder();
        let _ = d.feed(None, &text);
        let _ = d.end();
    }
}

/// The encoder produces a valid stream for any event sequence, and it decodes back.
#[test]
fn random_event_sequences_encode_validly() {
    let mut rng = fastrand::Rng::with_seed(99);
    for round in 0..400 {
        let mut events = Vec::new();
        let mut next_tool = 0u32;
        for _ in 0..rng.usize(0..14) {
            let ev = match rng.u8(0..10) {
                0 => StreamEvent::Start { id: format!("id{round}"), model: "up".into() },
                1 => StreamEvent::Text(["", "a", "ü\n\"q\""][rng.usize(..3)].into()),
                2 => StreamEvent::Thinking(["", "t"][rng.usize(..2)].into()),
                3 => StreamEvent::ThinkingSignature(format!("s{}", rng.u8(..))),
                4 => StreamEvent::RedactedThinking("ailurus.gemini.r".into()),
                5 => {
                    next_tool += 1;
                    tool_start(next_tool - 1, &format!("c{next_tool}"), "f", rng.bool().then_some("ts"))
                }
                6 => args(rng.u32(0..next_tool.max(1)), ["{\"a\":1}", "{", "}", "null", ""][rng.usize(..5)]),
                7 => StreamEvent::Usage(usage(rng.u64(0..100), rng.u64(10..100), rng.u64(0..5), rng.u64(0..10))),
                8 => StreamEvent::Finish(
                    [FinishReason::Stop, FinishReason::Length, FinishReason::ToolUse, FinishReason::ContentFilter]
                        [rng.usize(..4)],
                ),
                _ => StreamEvent::Text("more".into()),
            };
            events.push(ev);
        }
        let mut e = encoder("m");
        let mut out = Vec::new();
        for ev in &events {
            e.event(ev, &mut out);
        }
        if rng.u8(0..5) == 0 {
            e.error(500, "mid-stream failure", &mut out);
        } else {
            e.finish(&mut out);
        }
        validate_stream(&out).unwrap_or_else(|err| panic!("{events:?}\n{err}\n{}", String::from_utf8_lossy(&out)));
        let decoded = decode_stream(&out);
        if out.windows(9).any(|w| w == b"\"error\":{") {
            assert_eq!(decoded.unwrap_err().status, 500);
        } else {
            let decoded = decoded.unwrap_or_else(|err| panic!("{events:?}\n{err}"));
            let text: String = events
                .iter()
                .filter_map(|e| if let StreamEvent::Text(t) = e { Some(t.as_str()) } else { None })
                .collect();
            let got: String = decoded
                .iter()
                .filter_map(|e| if let StreamEvent::Text(t) = e { Some(t.as_str()) } else { None })
                .collect();
            assert_eq!(got, text);
        }
    }
}
