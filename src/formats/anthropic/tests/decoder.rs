//! Tests of the upstream stream decoder.

use super::*;

#[test]
fn decoder_reads_real_stream() {
    use StreamEvent::*;
    validate_stream(UPSTREAM_STREAM.as_bytes()).unwrap();
    let got = decode(UPSTREAM_STREAM.as_bytes()).unwrap();
    let want = vec![
        Start { id: "msg_01HCnXoqhC1wdBZ1xXo9a5Rj".into(), model: "claude-sonnet-4-5-20250929".into() },
        // The prompt's usage from message_start, at once.
        Usage(crate::protocol::canonical::Usage {
            input_tokens: 472,
            output_tokens: 2,
            cache_read_tokens: 20480,
            cache_write_tokens: 1024,
            ..Default::default()
        }),
        Thinking("The user wants weather ".into()),
        Thinking("for two cities.".into()),
        ThinkingSignature("ailurus.anthropic.EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds=".into()),
        Text("Let me check ".into()),
        Text("both.".into()),
        ToolCallStart {
            index: 0,
            id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
            name: "get_weather".into(),
            signature: None,
        },
        args(0, "{\"city\": \"Pa"),
        args(0, "ris\"}"),
        ToolCallStart { index: 1, id: "toolu_01AbCdEfGh".into(), name: "get_weather".into(), signature: None },
        args(1, "{\"city\":\"Rome\"}"),
        Usage(crate::protocol::canonical::Usage {
            input_tokens: 472,
            output_tokens: 89,
            cache_read_tokens: 20480,
            cache_write_tokens: 1024,
            ..Default::default()
        }),
        Finish(FinishReason::ToolUse),
    ];
    assert_eq!(got, want);
    // Re-encoding what we decoded gives a stream that decodes to the same answer.
    check_stream("re-encode", &got);
}

#[test]
fn decoder_truncated_streams_error() {
    let events = sse::parse(UPSTREAM_STREAM.as_bytes()).unwrap();
    for cut in 0..events.len() {
        let mut d = decoder();
        for ev in &events[..cut] {
            d.feed(ev.event.as_deref(), &ev.data).unwrap();
        }
        let e = d.end().unwrap_err();
        assert_eq!(e.status, 502, "cut at {cut}");
    }
    let mut d = decoder();
    for ev in &events {
        d.feed(ev.event.as_deref(), &ev.data).unwrap();
    }
    assert_eq!(d.end().unwrap(), vec![]);
}

#[test]
fn decoder_edge_events() {
    // message_stop without message_delta still finishes.
    let mut d = decoder();
    d.feed(
        Some("message_start"),
        r#"{"type":"message_start","message":{"id":"msg_1","model":"c","usage":{"input_tokens":4}}}"#,
    )
    .unwrap();
    let out = d.feed(Some("message_stop"), r#"{"type":"message_stop"}"#).unwrap();
    assert_eq!(
        out,
        vec![
            StreamEvent::Usage(Usage { input_tokens: 4, ..Default::default() }),
            StreamEvent::Finish(FinishReason::Stop)
        ]
    );
    assert_eq!(d.feed(Some("ping"), "not even json").unwrap(), vec![]); // after the end: ignored
    assert!(d.end().unwrap().is_empty());

    let start = r#"{"type":"message_start","message":{"id":"msg_1","model":"c"}}"#;
    let table: &[(&str, &str, u16)] = &[
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"server_tool_use","id":"s","name":"web_search","input":{}}}"#,
            502,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"web_search_tool_result"}}"#,
            502,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":5,"delta":{"type":"text_delta","text":"x"}}"#,
            502,
        ),
        ("content_block_start", r#"{"type":"content_block_start","content_block":{"type":"text","text":""}}"#, 502),
        ("message_delta", "{not json", 502),
        ("error", r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#, 529),
        ("error", r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#, 429),
        ("error", r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#, 500),
        ("error", r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long"}}"#, 400),
        ("error", r#"{"type":"error","error":{"type":"authentication_error","message":"x"}}"#, 401),
        ("error", r#"{"type":"error","error":{"type":"permission_error","message":"x"}}"#, 403),
        ("error", r#"{"type":"error","error":{"type":"not_found_error","message":"x"}}"#, 404),
        ("error", r#"{"type":"error","error":{"type":"request_too_large","message":"x"}}"#, 413),
        ("error", r#"{"type":"error"}"#, 502),
    ];
    for (event, data, status) in table {
        let mut d = decoder();
        d.feed(Some("message_start"), start).unwrap();
        let e = d.feed(Some(event), data).unwrap_err();
        assert_eq!(e.status, *status, "{data}");
    }
    // Block deltas that do not fit the block are malformed; citations are ignored.
    let mut d = decoder();
    d.feed(None, start).unwrap();
    d.feed(None, r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"Hi"}}"#).unwrap();
    let c = d
        .feed(None, r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{}}}"#)
        .unwrap();
    assert!(c.is_empty());
    let e = d.feed(
        None,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{"}}"#,
    );
    assert_eq!(e.unwrap_err().status, 502);
    // A tool_use start that carries its input whole.
    let out = d
        .feed(None, r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"n","input":{"a":1}}}"#)
        .unwrap();
    assert_eq!(out[1], args(0, "{\"a\":1}"));
    // Unknown event types are ignored (Anthropic may add some).
    assert!(d.feed(Some("brand_new"), r#"{"type":"brand_new"}"#).unwrap().is_empty());
}

#[test]
fn decoder_wrong_types_never_panic() {
    let datas = [
        r#"{"type":"message_start","message":5}"#,
        r#"{"type":"message_start","message":{"id":7,"usage":"x"}}"#,
        r#"{"type":"content_block_start","index":-1,"content_block":{"type":"text"}}"#,
        r#"{"type":"content_block_start","index":18446744073709551615,"content_block":{"type":"tool_use","input":[1]}}"#,
        r#"{"type":"content_block_start","index":0,"content_block":"text"}"#,
        r#"{"type":"content_block_delta","index":0,"delta":"x"}"#,
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":5}}"#,
        r#"{"type":"content_block_delta","index":"0"}"#,
        r#"{"type":"message_delta","delta":[],"usage":{"output_tokens":1e300}}"#,
        r#"{"type":"message_delta","delta":{"stop_reason":5},"usage":5}"#,
        r#"{"type":"error","error":"x"}"#,
        r#"{"type":5}"#,
        r#"[]"#,
        r#""string""#,
        "",
    ];
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..300 {
        let mut d = decoder();
        for _ in 0..rng.usize(0..10) {
            let data = datas[rng.usize(..datas.len())];
            let _ = d.feed(if rng.bool() { Some("content_block_delta") } else { None }, data);
        }
        let _ = d.end();
    }
    let responses = [
        r#"{"content":"x"}"#,
        r#"{"content":[5]}"#,
        r#"{"content":[{"type":"tool_use","input":"x"}],"stop_reason":7,"usage":[]}"#,
        r#"{"id":5,"model":[],"content":null}"#,
        r#"{"type":"error","error":5}"#,
    ];
    for r in responses {
        let _ = parse_response(r.as_bytes());
    }
}
