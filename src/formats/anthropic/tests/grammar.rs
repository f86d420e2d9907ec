//! Tests of the Messages stream grammar checker the other tests rely on.

use super::*;

type Frames<'a> = Vec<(&'a str, &'a str)>;

fn frames(list: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (e, d) in list {
        sse::frame(&mut out, if e.is_empty() { None } else { Some(e) }, d);
    }
    out
}

#[test]
fn validate_stream_rejects_broken_streams() {
    const MS: (&str, &str) = (
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":0}}}"#,
    );
    const TS: (&str, &str) = (
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    );
    const TD: (&str, &str) =
        ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#);
    const STOP0: (&str, &str) = ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#);
    const MD: (&str, &str) = (
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}"#,
    );
    const MST: (&str, &str) = ("message_stop", r#"{"type":"message_stop"}"#);
    const PING: (&str, &str) = ("ping", r#"{"type":"ping"}"#);
    validate_stream(&frames(&[MS, PING, TS, TD, PING, STOP0, MD, MST])).unwrap();
    let tool_start = (
        "content_block_start",
        r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"n","input":{}}}"#,
    );
    let cases: Vec<(&str, Frames, &str)> = vec![
        ("missing terminal event", vec![MS, TS, TD, STOP0, MD], "without message_stop"),
        ("missing everything", vec![], "without message_stop"),
        (
            "bad first index",
            vec![
                MS,
                (
                    "content_block_start",
                    r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
                ),
            ],
            "expected 0",
        ),
        ("index reused", vec![MS, TS, STOP0, TS], "expected 1"),
        ("delta before start", vec![MS, TD], "no open block"),
        (
            "delta for another block",
            vec![
                MS,
                TS,
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"x"}}"#,
                ),
            ],
            "block 0 is open",
        ),
        ("bad JSON", vec![MS, ("content_block_delta", "{\"type\":")], "not JSON"),
        (
            "type differs from event",
            vec![MS, ("content_block_stop", r#"{"type":"content_block_start","index":0}"#)],
            "does not equal",
        ),
        (
            "overlapping blocks",
            vec![
                MS,
                TS,
                (
                    "content_block_start",
                    r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
                ),
            ],
            "still open",
        ),
        ("stop without start", vec![MS, STOP0], "does not close"),
        (
            "wrong delta kind",
            vec![
                MS,
                TS,
                STOP0,
                tool_start,
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"x"}}"#,
                ),
            ],
            "does not fit",
        ),
        ("message_stop before message_delta", vec![MS, MST], "before message_delta"),
        ("message_delta with open block", vec![MS, TS, MD], "still open"),
        ("event after message_stop", vec![MS, MD, MST, PING], "follows the terminal"),
        (
            "event after error",
            vec![MS, ("error", r#"{"type":"error","error":{"type":"api_error","message":"x"}}"#), MD],
            "follows the terminal",
        ),
        ("ping before message_start", vec![PING, MS], "before message_start"),
        ("no event name", vec![MS, ("", r#"{"type":"ping"}"#)], "no event: name"),
        ("unknown event", vec![MS, ("message_pause", r#"{"type":"message_pause"}"#)], "unknown event"),
        ("second message_start", vec![MS, MS], "second message_start"),
        (
            "message_start with content",
            vec![(
                "message_start",
                r#"{"type":"message_start","message":{"id":"a","type":"message","role":"assistant","model":"m","content":[1],"usage":{}}}"#,
            )],
            "empty array",
        ),
        (
            "error without message",
            vec![("error", r#"{"type":"error","error":{"type":"api_error"}}"#)],
            "message must be a string",
        ),
        (
            "tool_use without input",
            vec![
                MS,
                (
                    "content_block_start",
                    r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"n"}}"#,
                ),
            ],
            "input must be an object",
        ),
        (
            "message_delta without usage",
            vec![MS, ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":null}}"#)],
            "no usage",
        ),
    ];
    for (name, list, want) in cases {
        let e = validate_stream(&frames(&list)).unwrap_err();
        assert!(e.contains(want), "{name}: {e}");
    }
    // An event cut off mid-way (no blank line) is not a stream.
    let mut cut = frames(&[MS, TS]);
    cut.truncate(cut.len() - 1);
    assert!(validate_stream(&cut).is_err());
    assert!(validate_stream(&[0xff, 0xfe, b'\n', b'\n']).is_err());
}
