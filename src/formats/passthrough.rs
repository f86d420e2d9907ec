//! Pass-through bodies: when the client speaks the upstream's format, the body goes upstream
//! byte for byte except the top-level `model` (and, for OpenAI Chat streams,
//! `stream_options.include_usage`, which billing needs). Unknown fields, betas,
//! `cache_control`, thinking signatures and encrypted reasoning are untouched because
//! nothing is re-encoded: values are spliced by byte offsets. A body that has a rewritten key
//! twice at the top level (also when one spelling is escaped, `"mod\u0065l"`) is a 400: JSON
//! parsers keep the last one, so a rewrite could not decide what the upstream reads.

use super::{Format, FormatError};

/// Byte span of the value of top-level `key` in a JSON object, if present. A key that
/// occurs twice is a 400: JSON parsers keep the last one, so rewriting one of them would
/// not decide what the upstream reads.
pub fn top_level_value(body: &[u8], key: &str) -> Result<Option<(usize, usize)>, FormatError> {
    let bad = || FormatError::bad_request("request body is not a JSON object");
    let mut found = None;
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return Err(bad());
    }
    i += 1;
    loop {
        i = skip_ws(body, i);
        match body.get(i) {
            Some(b'}') => return Ok(found),
            Some(b'"') => {}
            _ => return Err(bad()),
        }
        let key_start = i;
        let key_end = skip_string(body, i).ok_or_else(bad)?;
        let this_key = &body[key_start + 1..key_end - 1];
        i = skip_ws(body, key_end);
        if body.get(i) != Some(&b':') {
            return Err(bad());
        }
        i = skip_ws(body, i + 1);
        let value_end = skip_value(body, i).ok_or_else(bad)?;
        // An escaped spelling of `key` (`"mod\u0065l"`) is the same key to a JSON parser.
        let same = this_key == key.as_bytes()
            || (this_key.contains(&b'\\')
                && serde_json::from_slice::<String>(&body[key_start..key_end]).is_ok_and(|k| k == key));
        if same {
            if found.is_some() {
                return Err(FormatError::bad_request(format!("request body has more than one top-level {key:?}")));
            }
            found = Some((i, value_end));
        }
        i = skip_ws(body, value_end);
        match body.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(found),
            _ => return Err(bad()),
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// End (exclusive) of the string starting at `i` (which is `"`).
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while let Some(&c) = b.get(i) {
        match c {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// End (exclusive) of the value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while let Some(&c) = b.get(j) {
                match c {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while let Some(&c) = b.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// Set top-level `key` to the JSON text `value`: replace its value in place, or insert it
/// first when absent.
fn set_top_level(body: &[u8], key: &str, value: &str) -> Result<Vec<u8>, FormatError> {
    match top_level_value(body, key)? {
        Some((s, e)) => {
            let mut out = Vec::with_capacity(body.len() + value.len());
            out.extend_from_slice(&body[..s]);
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(&body[e..]);
            Ok(out)
        }
        None => {
            let open = body.iter().position(|c| *c == b'{').ok_or_else(|| FormatError::bad_request("not an object"))?;
            let empty = body[open + 1..].iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'}');
            let mut out = Vec::with_capacity(body.len() + key.len() + value.len() + 4);
            out.extend_from_slice(&body[..=open]);
            out.extend_from_slice(serde_json::Value::from(key).to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
            if !empty {
                out.push(b',');
            }
            out.extend_from_slice(&body[open + 1..]);
            Ok(out)
        }
    }
}

/// The upstream body for a pass-through request.
pub fn body(format: Format, raw: &[u8], model: &str, stream: bool) -> Result<Vec<u8>, FormatError> {
    // Validate once: pass-through must still refuse what is not JSON.
    serde_json::from_slice::<serde::de::IgnoredAny>(raw)
        .map_err(|e| FormatError::bad_request(format!("request body is not valid JSON: {e}")))?;
    let model_json = serde_json::Value::from(model).to_string();
    match format {
        // Gemini names the model in the URL.
        Format::GeminiGenerate => Ok(raw.to_vec()),
        Format::AnthropicMessages | Format::OpenAiResponses => set_top_level(raw, "model", &model_json),
        Format::OpenAiChat => {
            let with_model = set_top_level(raw, "model", &model_json)?;
            if !stream {
                return Ok(with_model);
            }
            let has_usage = match top_level_value(&with_model, "stream_options")? {
                Some((s, e)) => serde_json::from_slice::<serde_json::Value>(&with_model[s..e])
                    .ok()
                    .and_then(|v| v.get("include_usage").and_then(|b| b.as_bool()))
                    .unwrap_or(false),
                None => false,
            };
            if has_usage {
                Ok(with_model)
            } else {
                set_top_level(&with_model, "stream_options", "{\"include_usage\":true}")
            }
        }
    }
}

/// `body` (already a pass-through body for `model`) with the answer capped at `cap` tokens,
/// for a request that set no cap of its own (billing bounds every answer): Anthropic
/// `max_tokens`, OpenAI Chat `max_tokens` (`max_completion_tokens` for the reasoning models
/// that refuse it), Responses `max_output_tokens` (at least 16, its minimum), Gemini
/// `generationConfig.maxOutputTokens`. Everything else stays byte for byte; Gemini's
/// `generationConfig` object, when present, is re-encoded with the key added.
pub fn with_output_cap(format: Format, body: &[u8], model: &str, cap: u32) -> Result<Vec<u8>, FormatError> {
    match format {
        Format::AnthropicMessages => set_top_level(body, "max_tokens", &cap.to_string()),
        Format::OpenAiChat => {
            let key = if super::openai_chat::wants_max_completion_tokens(model) {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            set_top_level(body, key, &cap.to_string())
        }
        Format::OpenAiResponses => set_top_level(body, "max_output_tokens", &cap.max(16).to_string()),
        Format::GeminiGenerate => {
            for key in ["generationConfig", "generation_config"] {
                if let Some((s, e)) = top_level_value(body, key)? {
                    let mut gc: serde_json::Value = serde_json::from_slice(&body[s..e])
                        .map_err(|e| FormatError::bad_request(format!("{key} is not valid JSON: {e}")))?;
                    let Some(obj) = gc.as_object_mut() else {
                        return Err(FormatError::bad_request(format!("{key} must be an object")));
                    };
                    obj.remove("max_output_tokens");
                    obj.insert("maxOutputTokens".into(), cap.into());
                    return set_top_level(body, key, &gc.to_string());
                }
            }
            set_top_level(body, "generationConfig", &format!("{{\"maxOutputTokens\":{cap}}}"))
        }
    }
}

/// The little a gateway needs of a body it forwards without understanding it: the model
/// (URL first, then the body's `model`), whether to stream, and `max_tokens` for the
/// reservation. Used when strict parsing refused a field that only a same-format upstream
/// can take (Gemini `cachedContent`, Responses `previous_response_id`, …).
pub fn minimal_request(
    format: Format,
    raw: &[u8],
    ctx: &super::ParseContext,
) -> Option<crate::protocol::canonical::ChatRequest> {
    let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
    let obj = v.as_object()?;
    let model = ctx.model.clone().or_else(|| obj.get("model").and_then(|m| m.as_str()).map(str::to_string))?;
    let stream = match format {
        Format::GeminiGenerate => ctx.op == super::Op::StreamGenerate,
        _ => obj.get("stream").and_then(|s| s.as_bool()).unwrap_or(false),
    };
    let max_tokens = ["max_tokens", "max_output_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(|m| m.as_u64()))
        .and_then(|m| u32::try_from(m).ok());
    Some(crate::protocol::canonical::ChatRequest { model, stream, max_tokens, ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_caps_go_where_each_api_reads_them() {
        let check = |format, body: &str, model, want: &str| {
            let out = with_output_cap(format, body.as_bytes(), model, 300).expect(body);
            assert_eq!(String::from_utf8(out).expect("utf-8"), want, "{body}");
        };
        check(Format::AnthropicMessages, r#"{"model":"c","x":1}"#, "c", r#"{"max_tokens":300,"model":"c","x":1}"#);
        check(Format::OpenAiChat, r#"{"model":"g"}"#, "gpt-4o", r#"{"max_tokens":300,"model":"g"}"#);
        check(Format::OpenAiChat, r#"{"model":"o"}"#, "o3-mini", r#"{"max_completion_tokens":300,"model":"o"}"#);
        check(Format::OpenAiResponses, r#"{"model":"r"}"#, "r", r#"{"max_output_tokens":300,"model":"r"}"#);
        check(
            Format::GeminiGenerate,
            r#"{"contents":[]}"#,
            "g",
            r#"{"generationConfig":{"maxOutputTokens":300},"contents":[]}"#,
        );
        check(
            Format::GeminiGenerate,
            r#"{"contents":[],"generationConfig":{"temperature":0.5}}"#,
            "g",
            r#"{"contents":[],"generationConfig":{"maxOutputTokens":300,"temperature":0.5}}"#,
        );
        check(
            Format::GeminiGenerate,
            r#"{"generation_config":{"max_output_tokens":9}}"#,
            "g",
            r#"{"generation_config":{"maxOutputTokens":300}}"#,
        );
        assert!(with_output_cap(Format::GeminiGenerate, br#"{"generationConfig":3}"#, "g", 1).is_err());
    }

    #[test]
    fn only_the_model_changes() {
        let raw = br#"{ "model" : "claude-x", "messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{"type":"ephemeral"}}]}],
  "thinking":{"type":"enabled","budget_tokens":1024}, "x-unknown": [1, {"model":"inner"}], "signature":"abc\"def" }"#;
        let out = body(Format::AnthropicMessages, raw, "claude-sonnet-4-5", true).unwrap();
        let expected = String::from_utf8(raw.to_vec()).unwrap().replace("\"claude-x\"", "\"claude-sonnet-4-5\"");
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn model_inserted_and_usage_requested() {
        let out = body(Format::OpenAiChat, br#"{"messages":[],"stream":true}"#, "gpt-4o", true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "gpt-4o");
        assert_eq!(v["stream_options"]["include_usage"], true);
        let out =
            body(Format::OpenAiChat, br#"{"model":"a","stream_options":{"include_usage":true}}"#, "b", true).unwrap();
        assert_eq!(out, br#"{"model":"b","stream_options":{"include_usage":true}}"#);
        let out =
            body(Format::OpenAiChat, br#"{"model":"a","stream_options":{"include_usage":false}}"#, "b", true).unwrap();
        assert_eq!(out, br#"{"model":"b","stream_options":{"include_usage":true}}"#);
        assert_eq!(body(Format::GeminiGenerate, br#"{"contents":[]}"#, "g", true).unwrap(), br#"{"contents":[]}"#);
        assert_eq!(body(Format::OpenAiResponses, b"{}", "m", false).unwrap(), br#"{"model":"m"}"#);
    }

    #[test]
    fn a_repeated_or_escaped_model_key_cannot_slip_past_the_rewrite() {
        // Found by tests/fuzz_formats.rs: JSON parsers keep the last of repeated keys, so
        // rewriting only the first let the client's own model name reach the upstream.
        for raw in [&br#"{"model":"a","model":"b"}"#[..], br#"{"model":"a","x":1,"mod\u0065l":"b"}"#] {
            let err = body(Format::AnthropicMessages, raw, "m", false).unwrap_err();
            assert_eq!(err.status, 400, "{}", String::from_utf8_lossy(raw));
        }
        // An escaped spelling alone is the model: it is replaced, not shadowed by a new key.
        let out = body(Format::OpenAiResponses, br#"{"mod\u0065l":"b","input":"hi"}"#, "m", false).unwrap();
        assert_eq!(out, br#"{"mod\u0065l":"m","input":"hi"}"#);
        let out = body(
            Format::OpenAiChat,
            br#"{"model":"a","stream_options":{},"stream_options":{"include_usage":false}}"#,
            "m",
            true,
        );
        assert_eq!(out.unwrap_err().status, 400);
    }

    #[test]
    fn not_json_is_a_400() {
        for bad in [&b"[1]"[..], b"", b"{\"model\":", b"nope", b"{\"a\":1}}"] {
            assert_eq!(body(Format::OpenAiChat, bad, "m", false).unwrap_err().status, 400, "{bad:?}");
        }
    }
}
