//! One upstream `GenerateContentResponse` chunk → canonical events, for `parse_response` and the decoder.

use super::{int_of, new_id, REDACTED_PREFIX};
use crate::formats::reasoning::{seal, seal_opt, Origin};
use crate::formats::walk::{Fields, Obj};
use crate::formats::FormatError;
use crate::protocol::canonical::{FinishReason, StreamEvent, Usage};
use serde_json::Value;

/// `usageMetadata` → canonical usage (`toolUsePromptTokenCount` counts as input).
fn usage_from(v: &Value) -> Usage {
    let n = |k: &str| v.as_object().and_then(|o| int_of(o, k)).and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    let prompt = n("promptTokenCount").saturating_add(n("toolUsePromptTokenCount"));
    let cached = n("cachedContentTokenCount");
    let thoughts = n("thoughtsTokenCount");
    Usage {
        input_tokens: prompt.saturating_sub(cached),
        output_tokens: n("candidatesTokenCount").saturating_add(thoughts),
        cache_read_tokens: cached,
        cache_write_tokens: 0,
        reasoning_tokens: thoughts,
        estimated: false,
    }
}

/// The HTTP status for one of Google's canonical status strings.
fn status_code(name: &str) -> u16 {
    match name {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ABORTED" | "ALREADY_EXISTS" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

/// An upstream `{"error": {...}}` → an error with the upstream's status.
pub(super) fn upstream_error(e: &Value) -> FormatError {
    let o = e.as_object();
    let status_str = o.and_then(|o| o.get("status")).and_then(Value::as_str);
    let code = o
        .and_then(|o| int_of(o, "code"))
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..=599).contains(c))
        .or_else(|| status_str.map(status_code))
        .unwrap_or(502);
    let message = o
        .and_then(|o| o.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| e.as_str().map(str::to_string))
        .unwrap_or_else(|| "upstream error".into());
    let message = match status_str {
        Some(s) if !s.is_empty() => format!("Gemini upstream error {s}: {message}"),
        _ => format!("Gemini upstream error: {message}"),
    };
    FormatError { status: code, message }
}

/// A `thoughtSignature` as an event (our redacted-thinking marker becomes `RedactedThinking`,
/// so a chain of gateways keeps it).
fn signature_event(sig: &str) -> StreamEvent {
    match sig.strip_prefix(REDACTED_PREFIX) {
        Some(data) => StreamEvent::RedactedThinking(data.to_string()),
        None => StreamEvent::ThinkingSignature(seal(Origin::Gemini, sig)),
    }
}

/// Upstream chunk state shared by the decoder and `parse_response`.
#[derive(Default)]
pub(super) struct ChunkState {
    started: bool,
    next_tool: u32,
    /// Whether a function call was seen (a `STOP` then means tool use).
    pub(super) saw_tool: bool,
    /// Whether a candidate was seen.
    pub(super) saw_candidate: bool,
    /// Whether a chunk with a finish reason (or a blocked prompt) was seen.
    pub(super) finished: bool,
    /// The latest usage.
    pub(super) usage: Option<Usage>,
}

impl ChunkState {
    /// A `finishReason` → canonical (`None` when unspecified); a failed tool call is a 502.
    fn finish_reason(&self, reason: &str, cand: &Obj) -> Result<Option<FinishReason>, FormatError> {
        let stop = if self.saw_tool { FinishReason::ToolUse } else { FinishReason::Stop };
        Ok(Some(match reason {
            "" | "FINISH_REASON_UNSPECIFIED" => return Ok(None),
            "STOP" => stop,
            "MAX_TOKENS" => FinishReason::Length,
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "LANGUAGE"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION"
            | "IMAGE_OTHER" => FinishReason::ContentFilter,
            "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" | "TOO_MANY_TOOL_CALLS" => {
                let detail = cand.get("finishMessage").and_then(Value::as_str).unwrap_or("");
                return Err(FormatError::malformed(format!(
                    "Gemini upstream ended with {reason}{}{detail}",
                    if detail.is_empty() { "" } else { ": " }
                )));
            }
            _ => stop,
        }))
    }

    /// A candidate's parts → events.
    fn parts(&mut self, parts: &[Value], out: &mut Vec<StreamEvent>) -> Result<(), FormatError> {
        for p in parts {
            let Some(po) = p.as_object() else {
                return Err(FormatError::malformed("Gemini upstream sent a part that is not an object"));
            };
            let po = Fields::proto3(po, "");
            let sig = po.get("thoughtSignature").and_then(Value::as_str).filter(|s| !s.is_empty());
            let thought = po.get("thought").and_then(Value::as_bool).unwrap_or(false);
            if let Some(fc) = po.get("functionCall") {
                let fco = fc.as_object().map(|o| Fields::proto3(o, ""));
                let name = fco.and_then(|o| o.get("name")).and_then(Value::as_str).filter(|n| !n.is_empty());
                let Some(name) = name else {
                    return Err(FormatError::malformed("Gemini upstream sent a functionCall without a name"));
                };
                let args = match fco.and_then(|o| o.get("args")) {
                    Some(a @ Value::Object(_)) => a.to_string(),
                    _ => "{}".to_string(),
                };
                let id = fco
                    .and_then(|o| o.get("id"))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map_or_else(|| format!("call_{}", new_id()), str::to_string);
                let index = self.next_tool;
                self.next_tool = self.next_tool.saturating_add(1);
                self.saw_tool = true;
                out.push(StreamEvent::ToolCallStart {
                    index,
                    id,
                    name: name.to_string(),
                    signature: seal_opt(Origin::Gemini, sig),
                });
                out.push(StreamEvent::ToolCallArgs { index, delta: args });
            } else if let Some(t) = po.get("text") {
                let t = t.as_str().unwrap_or("");
                if thought {
                    if !t.is_empty() {
                        out.push(StreamEvent::Thinking(t.to_string()));
                    }
                    out.extend(sig.map(signature_event));
                } else {
                    out.extend(sig.map(signature_event));
                    if !t.is_empty() {
                        out.push(StreamEvent::Text(t.to_string()));
                    }
                }
            } else if let Some(key) =
                ["inlineData", "fileData", "executableCode", "codeExecutionResult", "functionResponse"]
                    .into_iter()
                    .find(|k| po.has(k))
            {
                return Err(FormatError::malformed(format!(
                    "Gemini upstream returned a {key} part, which cannot be converted"
                )));
            } else if let Some(s) = sig {
                out.push(signature_event(s));
            }
        }
        Ok(())
    }

    /// One chunk (or a JSON array of chunks) → events.
    pub(super) fn chunk(&mut self, v: &Value) -> Result<Vec<StreamEvent>, FormatError> {
        let mut out = Vec::new();
        if let Value::Array(items) = v {
            for it in items {
                out.extend(self.chunk(it)?);
            }
            return Ok(out);
        }
        let Some(m) = v.as_object() else {
            return Err(FormatError::malformed("a Gemini response chunk must be a JSON object"));
        };
        let m = Fields::proto3(m, "");
        if let Some(e) = m.get("error") {
            return Err(upstream_error(e));
        }
        if !self.started {
            self.started = true;
            let id = m.get("responseId").and_then(Value::as_str).filter(|s| !s.is_empty());
            let model = m.get("modelVersion").and_then(Value::as_str).filter(|s| !s.is_empty());
            if id.is_some() || model.is_some() {
                out.push(StreamEvent::Start {
                    id: id.map_or_else(new_id, str::to_string),
                    model: model.unwrap_or_default().to_string(),
                });
            }
        }
        if let Some(u) = m.get("usageMetadata") {
            let u = usage_from(u);
            // The first usage (the prompt's) goes out at once, so a client stream that
            // starts with usage (Anthropic `message_start`) can carry it; later ones at the end.
            if self.finished || self.usage.is_none() {
                out.push(StreamEvent::Usage(u));
            }
            self.usage = Some(u);
        }
        if self.finished {
            return Ok(out);
        }
        let mut finish = None;
        match m.get("candidates") {
            None => {}
            Some(Value::Array(cands)) => {
                let cand = cands
                    .iter()
                    .find(|c| c.as_object().and_then(|o| int_of(o, "index")).unwrap_or(0) == 0)
                    .and_then(Value::as_object);
                if let Some(cand) = cand {
                    self.saw_candidate = true;
                    let fields = Fields::proto3(cand, "");
                    if let Some(parts) = fields.get("content").and_then(|c| c.get("parts")).and_then(Value::as_array) {
                        self.parts(parts, &mut out)?;
                    }
                    if let Some(r) = fields.get("finishReason").and_then(Value::as_str) {
                        finish = self.finish_reason(r, cand)?;
                    }
                }
            }
            Some(_) => return Err(FormatError::malformed("Gemini upstream sent candidates that are not an array")),
        }
        if finish.is_none() {
            let block = m
                .get("promptFeedback")
                .and_then(|p| p.as_object())
                .and_then(|p| Fields::proto3(p, "").get("blockReason"))
                .and_then(Value::as_str);
            if block.is_some_and(|b| !b.is_empty() && b != "BLOCK_REASON_UNSPECIFIED") {
                finish = Some(FinishReason::ContentFilter);
            }
        }
        if let Some(f) = finish {
            out.extend(self.usage.map(StreamEvent::Usage));
            out.push(StreamEvent::Finish(f));
            self.finished = true;
        }
        Ok(out)
    }
}
