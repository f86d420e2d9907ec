//! The upstream stream decoder: a real stream, truncation, error events, edge cases.

use super::*;

const UPSTREAM_STREAM: &str = include_str!("../../../../tests/fixtures/openai_responses/upstream_stream.sse");

#[test]
fn decodes_a_real_upstream_stream() {
    validate_stream(UPSTREAM_STREAM.as_bytes()).unwrap();
    let got = decode(UPSTREAM_STREAM.as_bytes()).unwrap();
    let want = vec![
        StreamEvent::Start { id: "resp_68f1c2a9b0d88193a1b2c3d4e5f60718".into(), model: "gpt-5-2025-08-07".into() },
        think("**Checking the weather**\n\n"),
        think("I need both cities."),
        think("\n\n"),
        think("Calling the tool twice."),
        StreamEvent::ThinkingSignature("ailurus.responses.gAAAAABo8sEnc_Reasoning_Blob==".into()),
        text("Checking "),
        text("both "),
        text("cities."),
        tstart(0, "call_AbC123", "get_weather"),
        targs(0, "{\"city\":"),
        targs(0, "\"Paris\"}"),
        tstart(1, "call_DeF456", "get_weather"),
        targs(1, "{\"city\":\"Ber"),
        targs(1, "lin\"}"),
        StreamEvent::Usage(usage(176, 310, 1024, 256)),
        StreamEvent::Finish(FinishReason::ToolUse),
    ];
    assert_eq!(got, want);
    // The thinking text equals the done item's summaries joined, so signatures stay valid.
    let thinking: String =
        got.iter().filter_map(|e| if let StreamEvent::Thinking(t) = e { Some(t.as_str()) } else { None }).collect();
    assert_eq!(thinking, "**Checking the weather**\n\nI need both cities.\n\nCalling the tool twice.");
}

#[test]
fn truncated_upstream_streams_error() {
    let events = sse::parse(UPSTREAM_STREAM.as_bytes()).unwrap();
    for cut in 0..events.len() {
        let mut dec = decoder();
        for ev in &events[..cut] {
            dec.feed(ev.event.as_deref(), &ev.data).unwrap();
        }
        let err = dec.end().unwrap_err();
        assert_eq!(err.status, 502, "cut at {cut}");
    }
}

#[test]
fn decoder_error_events_map_to_statuses() {
    let cases: Vec<(Option<&str>, Value, u16)> = vec![
        (
            Some("error"),
            json!({"type": "error", "code": "rate_limit_exceeded", "message": "Rate limit reached", "param": null, "sequence_number": 2}),
            429,
        ),
        (Some("error"), json!({"type": "error", "code": "insufficient_quota", "message": "quota"}), 429),
        (Some("error"), json!({"type": "error", "code": "server_error", "message": "oops"}), 500),
        (Some("error"), json!({"type": "error", "code": "invalid_prompt", "message": "bad"}), 400),
        (Some("error"), json!({"type": "error", "code": "context_length_exceeded", "message": "long"}), 400),
        (Some("error"), json!({"type": "error", "code": "server_is_overloaded", "message": "busy"}), 503),
        (Some("error"), json!({"type": "error", "code": "brand_new_code", "message": "?"}), 502),
        (
            Some("error"),
            json!({"type": "error", "error": {"type": "server_error", "code": null, "message": "nested"}}),
            500,
        ),
        (None, json!({"error": {"type": "invalid_request_error", "code": null, "message": "chat-style"}}), 400),
        (
            Some("response.failed"),
            json!({"type": "response.failed", "response": {"status": "failed", "error": {"code": "rate_limit_exceeded", "message": "slow"}}}),
            429,
        ),
        (
            Some("response.failed"),
            json!({"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error", "message": "x"}}}),
            500,
        ),
        (
            Some("response.failed"),
            json!({"type": "response.failed", "response": {"status": "failed", "error": {"code": "invalid_image_url", "message": "x"}}}),
            400,
        ),
        (
            Some("response.failed"),
            json!({"type": "response.failed", "response": {"status": "failed", "error": null}}),
            502,
        ),
    ];
    for (event, data, status) in cases {
        let mut dec = decoder();
        dec.feed(Some("response.created"), r#"{"type":"response.created","response":{"id":"resp_1","model":"m"}}"#)
            .unwrap();
        let err = dec.feed(event, &data.to_string()).expect_err(&data.to_string());
        assert_eq!(err.status, status, "{data}");
        // After an error the stream is over: end() does not report a second error.
        assert!(dec.end().unwrap().is_empty());
    }
}

#[test]
fn decoder_edge_cases() {
    // Unknown events and keepalives are ignored; non-JSON data is a 502.
    let mut dec = decoder();
    assert!(dec.feed(Some("keepalive"), r#"{"type":"keepalive","sequence_number":0}"#).unwrap().is_empty());
    assert!(dec
        .feed(Some("response.output_text.annotation.added"), r#"{"type":"response.output_text.annotation.added"}"#)
        .unwrap()
        .is_empty());
    assert!(dec.feed(None, "[DONE]").unwrap().is_empty());
    assert_eq!(dec.feed(Some("x"), "not json").unwrap_err().status, 502);

    // A server that only sends the final response object.
    let mut dec = decoder();
    let completed = json!({"type": "response.completed", "response": {"status": "completed", "output": [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hm"}], "encrypted_content": "enc"},
        {"type": "message", "content": [{"type": "output_text", "text": "hi"}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
    ], "usage": {"input_tokens": 3, "output_tokens": 4}}});
    let got = dec.feed(None, &completed.to_string()).unwrap();
    assert_eq!(
        got,
        vec![
            think("hm"),
            StreamEvent::ThinkingSignature("ailurus.responses.enc".into()),
            text("hi"),
            tstart(0, "c", "f"),
            targs(0, "{}"),
            StreamEvent::Usage(usage(3, 4, 0, 0)),
            StreamEvent::Finish(FinishReason::ToolUse),
        ]
    );

    // Arguments only in the done events; text only in the done item; refusal; incomplete.
    let mut dec = decoder();
    let feed = |dec: &mut Decoder, v: Value| dec.feed(None, &v.to_string()).unwrap();
    let mut got = Vec::new();
    got.extend(feed(&mut dec, json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": ""}})));
    got.extend(feed(&mut dec, json!({"type": "response.function_call_arguments.done", "output_index": 0, "item_id": "fc_1", "arguments": "{\"a\":1}"})));
    got.extend(feed(&mut dec, json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"}})));
    got.extend(feed(&mut dec, json!({"type": "response.output_item.added", "output_index": 1, "item": {"type": "message", "id": "m1", "content": []}})));
    got.extend(feed(
        &mut dec,
        json!({"type": "response.refusal.delta", "item_id": "m1", "output_index": 1, "delta": "no"}),
    ));
    got.extend(feed(&mut dec, json!({"type": "response.output_item.done", "output_index": 1, "item": {"type": "message", "id": "m1", "content": [{"type": "refusal", "refusal": "no"}]}})));
    got.extend(feed(&mut dec, json!({"type": "response.output_item.done", "output_index": 2, "item": {"type": "message", "id": "m2", "content": [{"type": "output_text", "text": "late"}]}})));
    got.extend(feed(&mut dec, json!({"type": "response.output_item.done", "output_index": 3, "item": {"type": "reasoning", "id": "r", "summary": [], "encrypted_content": "ailurus-redacted:ailurus.anthropic.abc"}})));
    got.extend(feed(&mut dec, json!({"type": "response.incomplete", "response": {"status": "incomplete", "incomplete_details": {"reason": "content_filter"}}})));
    assert_eq!(
        got,
        vec![
            tstart(0, "c1", "f"),
            targs(0, "{\"a\":1}"),
            text("no"),
            text("late"),
            StreamEvent::RedactedThinking("ailurus.anthropic.abc".into()),
            StreamEvent::Finish(FinishReason::ContentFilter),
        ]
    );
    // Events after the terminal one are ignored.
    assert!(dec.feed(None, r#"{"type":"response.output_text.delta","delta":"x"}"#).unwrap().is_empty());

    let mut dec = decoder();
    let got = dec
        .feed(
            None,
            r#"{"type":"response.incomplete","response":{"incomplete_details":{"reason":"max_output_tokens"}}}"#,
        )
        .unwrap();
    assert_eq!(got, vec![StreamEvent::Finish(FinishReason::Length)]);
}
