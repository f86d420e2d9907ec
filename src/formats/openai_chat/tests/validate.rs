//! The stream grammar checker accepts real streams and rejects broken ones.

use super::*;

#[test]
fn validate_accepts_real_openai_stream() {
    validate_stream(STREAM_TOOLS.as_bytes()).unwrap();
}

#[test]
fn validate_rejects_broken_streams() {
    let good = String::from_utf8(encode(
        &[
            start("chatcmpl-x", "u"),
            text("hi"),
            tstart(0, "c", "f"),
            targs(0, "{}"),
            StreamEvent::Finish(FinishReason::ToolUse),
            StreamEvent::Usage(usage(1, 1, 0, 0, 0)),
        ],
        None,
    ))
    .unwrap();
    validate_stream(good.as_bytes()).unwrap();
    let frames: Vec<&str> = good.split_terminator("\n\n").collect();
    let join = |fs: &[&str]| fs.iter().map(|f| format!("{f}\n\n")).collect::<String>();
    let chunk = |delta: &str, finish: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"client-model\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}"
        )
    };
    let role = chunk(r#"{"role":"assistant","content":""}"#, "null");
    let fin = chunk("{}", "\"stop\"");
    let done = "data: [DONE]";
    let cases: Vec<(&str, String)> = vec![
        ("missing [DONE]", join(&frames[..frames.len() - 1])),
        ("missing terminal: only role", join(&[&role])),
        ("delta before start", join(&[&chunk(r#"{"content":"x"}"#, "null"), &fin, done])),
        ("bad JSON", join(&[&role, "data: {\"id\":", &fin, done])),
        ("[DONE] before finish", join(&[&role, done])),
        ("event after [DONE]", join(&[&role, &fin, done, &fin])),
        ("content after finish", join(&[&role, &fin, &chunk(r#"{"content":"x"}"#, "null"), done])),
        (
            "bad tool index (skips)",
            join(&[
                &role,
                &chunk(
                    r#"{"tool_calls":[{"index":1,"id":"c","type":"function","function":{"name":"f","arguments":""}}]}"#,
                    "null",
                ),
                &fin,
                done,
            ]),
        ),
        (
            "args before tool start",
            join(&[&role, &chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}"#, "null"), &fin, done]),
        ),
        (
            "id repeated on later fragment",
            join(&[
                &role,
                &chunk(
                    r#"{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":""}}]}"#,
                    "null",
                ),
                &chunk(
                    r#"{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}"#,
                    "null",
                ),
                &fin,
                done,
            ]),
        ),
        ("bad finish reason", join(&[&role, &chunk("{}", "\"eos\""), done])),
        ("inconsistent id", join(&[&role, &fin.replace("chatcmpl-x", "chatcmpl-y"), done])),
        ("inconsistent model", join(&[&role, &fin.replace("client-model", "other"), done])),
        ("wrong object", join(&[&role.replace("chat.completion.chunk", "chat.completion"), &fin, done])),
        ("event names", format!("event: message\n{role}\n\n{fin}\n\n{done}\n\n")),
        ("error then more", join(&[&role, r#"data: {"error":{"message":"x","type":"server_error"}}"#, &fin])),
        ("error without type", join(&[&role, r#"data: {"error":{"message":"x"}}"#])),
        (
            "usage chunk before finish",
            join(&[
                &role,
                r#"data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"client-model","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#,
                &fin,
                done,
            ]),
        ),
        (
            "bad usage total",
            join(&[
                &role,
                &fin,
                r#"data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"client-model","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":3}}"#,
                done,
            ]),
        ),
        ("unterminated frame", format!("{role}\n\n{fin}\n\n{done}")),
        ("empty", String::new()),
    ];
    for (name, stream) in cases {
        assert!(validate_stream(stream.as_bytes()).is_err(), "{name} was accepted:\n{stream}");
    }
    // Sanity: the pieces themselves make a valid stream.
    validate_stream(join(&[&role, &fin, done]).as_bytes()).unwrap();
}
