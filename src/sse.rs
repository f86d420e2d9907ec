//! Server-sent events: writing frames, and a whole-buffer parser for validators and tests.
//! (Upstream streams are read incrementally with `eventsource-stream` in the providers.)

/// Append one SSE frame. `data` must be a single line (compact JSON is).
pub fn frame(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Append a frame whose data is `value` serialised as compact JSON.
pub fn json_frame(out: &mut Vec<u8>, event: Option<&str>, value: &serde_json::Value) {
    frame(out, event, &value.to_string());
}

/// One parsed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Parse a whole SSE buffer (CRLF or LF line ends; comments and `id:`/`retry:` ignored).
/// Fails on invalid UTF-8 or a final event without its blank-line terminator.
pub fn parse(bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("stream is not UTF-8: {e}"))?;
    let mut events = Vec::new();
    let mut event: Option<String> = None;
    let mut data: Option<String> = None;
    let mut pending = false;
    // The piece after the last newline is not a line yet; it must be empty.
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.pop().is_some_and(|rest| !rest.is_empty()) {
        return Err("stream ends inside a line".into());
    }
    for line in lines {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if let Some(d) = data.take() {
                events.push(SseEvent { event: event.take(), data: d });
            }
            event = None;
            pending = false;
            continue;
        }
        pending = true;
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "event" => event = Some(value.to_string()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
    }
    if pending {
        return Err("stream ends inside an event (no blank line after it)".into());
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut out = Vec::new();
        frame(&mut out, Some("message_start"), "{\"a\":1}");
        frame(&mut out, None, "[DONE]");
        let events = parse(&out).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event.as_deref(), Some("message_start"));
        assert_eq!(events[1].data, "[DONE]");
        assert!(parse(b"data: x\n").is_err());
        assert_eq!(parse(b": comment\n\ndata: a\ndata: b\r\n\r\n").unwrap()[0].data, "a\nb");
    }
}
