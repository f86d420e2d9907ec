//! The client stream encoder: canonical events → `streamGenerateContent?alt=sse` chunks.

use super::new_id;
use super::parts::{args_object, function_name, sig_part, with_sig};
use super::response::{error_json, finish_str, usage_json};
use crate::formats::reasoning::{self, is_foreign, Origin};
use crate::formats::walk::Obj;
use crate::formats::StreamEncoder;
use crate::protocol::canonical::{FinishReason, Part, StreamEvent, Usage};
use crate::sse;
use serde_json::{json, Value};

/// A tool call being streamed: sent whole once its arguments are complete.
struct OpenTool {
    index: u32,
    id: String,
    name: String,
    args: String,
    sig: Option<String>,
}

/// Encodes canonical events as `streamGenerateContent?alt=sse` chunks.
pub struct Encoder {
    model: String,
    id: Option<String>,
    /// A Gemini signature waiting for the next part.
    pending_sig: Option<String>,
    /// Another API's reasoning since the last call, sent as one block envelope on the next
    /// call (Gemini clients keep `thoughtSignature` on calls, not thought text).
    block: Vec<Part>,
    tools: Vec<OpenTool>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    closed: bool,
}

/// A stream encoder for a Gemini client; `model` is the name the client asked for.
pub fn encoder(model: &str) -> Encoder {
    Encoder {
        model: model.to_string(),
        id: None,
        pending_sig: None,
        block: Vec::new(),
        tools: Vec::new(),
        finish: None,
        usage: None,
        closed: false,
    }
}

impl Encoder {
    fn response_id(&mut self) -> String {
        self.id.get_or_insert_with(new_id).clone()
    }

    fn emit(&mut self, parts: Vec<Value>, finish: Option<&str>, out: &mut Vec<u8>) {
        let mut cand = Obj::new();
        cand.insert("content".into(), json!({"role": "model", "parts": parts}));
        if let Some(f) = finish {
            cand.insert("finishReason".into(), json!(f));
        }
        cand.insert("index".into(), json!(0));
        let mut chunk = Obj::new();
        chunk.insert("candidates".into(), json!([cand]));
        if finish.is_some() {
            if let Some(u) = &self.usage {
                chunk.insert("usageMetadata".into(), usage_json(u));
            }
        }
        chunk.insert("modelVersion".into(), json!(self.model));
        chunk.insert("responseId".into(), json!(self.response_id()));
        sse::json_frame(out, None, &Value::Object(chunk));
    }

    /// The buffered tool calls as whole `functionCall` parts.
    fn take_tools(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.tools)
            .into_iter()
            .map(|t| {
                let mut fc = Obj::new();
                fc.insert("name".into(), Value::String(function_name(&t.name)));
                fc.insert("args".into(), args_object(&t.args));
                if !t.id.is_empty() {
                    fc.insert("id".into(), Value::String(t.id));
                }
                let mut p = Obj::new();
                p.insert("functionCall".into(), Value::Object(fc));
                with_sig(p, t.sig)
            })
            .collect()
    }

    /// The pending Gemini signature and any block envelope left, as parts of their own.
    fn take_loose(&mut self, parts: &mut Vec<Value>) {
        if let Some(s) = self.pending_sig.take() {
            parts.push(sig_part(&s));
        }
        if let Some(env) = reasoning::block(&std::mem::take(&mut self.block)) {
            parts.push(sig_part(&env));
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        let mut parts = self.take_tools();
        self.take_loose(&mut parts);
        if !parts.is_empty() {
            self.emit(parts, None, out);
        }
    }
}

impl StreamEncoder for Encoder {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        match ev {
            StreamEvent::Start { id, .. } => {
                if self.id.is_none() && !id.is_empty() {
                    self.id = Some(id.clone());
                }
            }
            StreamEvent::Text(t) => {
                if t.is_empty() {
                    return;
                }
                let mut parts = self.take_tools();
                let mut p = Obj::new();
                p.insert("text".into(), Value::String(t.clone()));
                parts.push(with_sig(p, self.pending_sig.take()));
                self.emit(parts, None, out);
            }
            StreamEvent::Thinking(t) => {
                if t.is_empty() {
                    return;
                }
                let mut parts = self.take_tools();
                if let Some(s) = self.pending_sig.take() {
                    parts.push(sig_part(&s));
                }
                parts.push(json!({"text": t, "thought": true}));
                self.emit(parts, None, out);
                match self.block.last_mut() {
                    Some(Part::Thinking { text, signature: None }) => text.push_str(t),
                    _ => self.block.push(Part::Thinking { text: t.clone(), signature: None }),
                }
            }
            StreamEvent::ThinkingSignature(s) if is_foreign(s, Origin::Gemini) => match self.block.last_mut() {
                Some(Part::Thinking { signature: sig @ None, .. }) => *sig = Some(s.clone()),
                _ => self.block.push(Part::Thinking { text: String::new(), signature: Some(s.clone()) }),
            },
            StreamEvent::ThinkingSignature(s) => {
                let mut parts = self.take_tools();
                if let Some(old) = self.pending_sig.replace(s.clone()) {
                    parts.push(sig_part(&old));
                }
                if !parts.is_empty() {
                    self.emit(parts, None, out);
                }
            }
            StreamEvent::RedactedThinking(d) => self.block.push(Part::RedactedThinking { data: d.clone() }),
            StreamEvent::ToolCallStart { index, id, name, signature } => {
                let mut early = Vec::new();
                if self.tools.iter().any(|t| t.index == *index) {
                    early = self.take_tools();
                }
                let sig = match (signature, self.pending_sig.take()) {
                    (Some(s), Some(p)) => {
                        early.push(sig_part(&p));
                        Some(s.clone())
                    }
                    (Some(s), None) => Some(s.clone()),
                    (None, p) => p,
                };
                let sig = match (sig, reasoning::block(&std::mem::take(&mut self.block))) {
                    (Some(s), Some(env)) => {
                        early.push(sig_part(&env));
                        Some(s)
                    }
                    (s, env) => s.or(env),
                };
                if !early.is_empty() {
                    self.emit(early, None, out);
                }
                self.tools.push(OpenTool {
                    index: *index,
                    id: id.clone(),
                    name: name.clone(),
                    args: String::new(),
                    sig,
                });
            }
            StreamEvent::ToolCallArgs { index, delta } => {
                if let Some(t) = self.tools.iter_mut().find(|t| t.index == *index) {
                    t.args.push_str(delta);
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => {
                self.flush(out);
                self.finish = Some(*f);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        let mut parts = self.take_tools();
        self.take_loose(&mut parts);
        let reason = finish_str(self.finish.unwrap_or(FinishReason::Stop));
        self.emit(parts, Some(reason), out);
        self.closed = true;
    }

    fn error(&mut self, status: u16, message: &str, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        sse::json_frame(out, None, &error_json(status, message));
        self.closed = true;
    }
}
