//! The client stream encoder: canonical events → Responses SSE.

use super::items::{
    finish_status, function_call_item, message_item, output_text_part, reasoning_item, response_id, response_object,
    ResponseMeta,
};
use super::{new_id, normalize_args, now, REDACTED_PREFIX};
use crate::formats::StreamEncoder;
use crate::protocol::canonical::{FinishReason, StreamEvent, Usage};
use crate::sse;
use serde_json::{json, Map, Value};

/// `response.failed` error code for an HTTP-like status.
fn failed_code(status: u16) -> &'static str {
    match status {
        429 => "rate_limit_exceeded",
        402 => "insufficient_quota",
        503 | 529 => "server_is_overloaded",
        400..=499 => "invalid_prompt",
        _ => "server_error",
    }
}

/// The output item being streamed.
enum OpenItem {
    Reasoning { id: String, index: usize, text: String, part_open: bool, signature: Option<String> },
    Message { id: String, index: usize, text: String },
    Call { id: String, index: usize, ordinal: u32, call_id: String, name: String, args: String },
}

/// A tool call that started while another call's item was open (parallel calls whose argument
/// fragments interleave); it is emitted whole when the run of calls ends.
struct PendingCall {
    ordinal: u32,
    call_id: String,
    name: String,
    signature: Option<String>,
    args: String,
}

/// Writes the Responses event grammar: `response.created`, `response.in_progress`, output items
/// (one open at a time; an item closes when an event of another kind starts), then
/// `response.completed` / `response.incomplete`, or `response.failed` on error.
pub struct Encoder {
    model: String,
    id: String,
    created_at: i64,
    seq: u64,
    started: bool,
    ended: bool,
    cur: Option<OpenItem>,
    pending: Vec<PendingCall>,
    output: Vec<Value>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
}

/// An encoder for a client that asked for `model`.
pub fn encoder(model: &str) -> Encoder {
    Encoder {
        model: model.to_string(),
        id: String::new(),
        created_at: now(),
        seq: 0,
        started: false,
        ended: false,
        cur: None,
        pending: Vec::new(),
        output: Vec::new(),
        usage: None,
        finish: None,
    }
}

fn emit(seq: &mut u64, out: &mut Vec<u8>, ty: &str, fields: Value) {
    let mut data = match fields {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    data.insert("type".into(), ty.into());
    data.insert("sequence_number".into(), (*seq).into());
    *seq += 1;
    sse::json_frame(out, Some(ty), &Value::Object(data));
}

impl Encoder {
    fn response(&self, status: &str, usage: Option<&Usage>, error: Option<Value>) -> Value {
        let meta = ResponseMeta { id: &self.id, created_at: self.created_at, model: &self.model };
        let output = if status == "in_progress" { Vec::new() } else { self.output.clone() };
        response_object(&meta, status, output, usage, self.finish, error)
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        if self.id.is_empty() {
            self.id = new_id("resp");
        }
        let r = self.response("in_progress", None, None);
        emit(&mut self.seq, out, "response.created", json!({ "response": r.clone() }));
        emit(&mut self.seq, out, "response.in_progress", json!({ "response": r }));
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(item) = self.cur.take() else { return };
        let seq = &mut self.seq;
        let (index, done) = match item {
            OpenItem::Reasoning { id, index, text, part_open, signature } => {
                if part_open {
                    let at = json!({"item_id": id, "output_index": index, "summary_index": 0});
                    let mut ev = at.clone();
                    ev["text"] = text.as_str().into();
                    emit(seq, out, "response.reasoning_summary_text.done", ev);
                    let mut ev = at;
                    ev["part"] = json!({"type": "summary_text", "text": text});
                    emit(seq, out, "response.reasoning_summary_part.done", ev);
                }
                (index, reasoning_item(&id, &text, signature.as_deref()))
            }
            OpenItem::Message { id, index, text } => {
                let ev =
                    json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []});
                emit(seq, out, "response.output_text.done", ev);
                let ev =
                    json!({"item_id": id, "output_index": index, "content_index": 0, "part": output_text_part(&text)});
                emit(seq, out, "response.content_part.done", ev);
                (index, message_item(&id, &text))
            }
            OpenItem::Call { id, index, call_id, name, args, .. } => {
                let args = normalize_args(&args);
                let ev = json!({"item_id": id, "output_index": index, "arguments": args});
                emit(seq, out, "response.function_call_arguments.done", ev);
                (index, function_call_item(&id, &call_id, &name, args, "completed"))
            }
        };
        emit(seq, out, "response.output_item.done", json!({"output_index": index, "item": done.clone()}));
        self.output.push(done);
    }

    /// Close the current item and emit the buffered calls whole.
    fn close_all(&mut self, out: &mut Vec<u8>) {
        self.close(out);
        for p in std::mem::take(&mut self.pending) {
            self.open_call(out, p.ordinal, p.call_id, p.name, p.signature);
            if let Some(OpenItem::Call { id, index, args, .. }) = &mut self.cur {
                if !p.args.is_empty() {
                    args.push_str(&p.args);
                    let ev = json!({"item_id": id, "output_index": index, "delta": p.args});
                    emit(&mut self.seq, out, "response.function_call_arguments.delta", ev);
                }
            }
            self.close(out);
        }
    }

    /// Open a function call item (after a reasoning item carrying the call's Gemini signature,
    /// which a client sends back as `encrypted_content` right before the call).
    fn open_call(&mut self, out: &mut Vec<u8>, ordinal: u32, call_id: String, name: String, sig: Option<String>) {
        if let Some(sig) = sig.filter(|s| !s.is_empty()) {
            self.open_reasoning(out, Some(sig));
            self.close(out);
        }
        let call_id = if call_id.is_empty() { new_id("call") } else { call_id };
        let item = OpenItem::Call { id: new_id("fc"), index: 0, ordinal, call_id, name, args: String::new() };
        self.open(out, item);
    }

    /// Close the current item and open `item` as the next output item (its index is set here).
    fn open(&mut self, out: &mut Vec<u8>, mut item: OpenItem) {
        self.close_all(out);
        let index = self.output.len();
        match &mut item {
            OpenItem::Reasoning { index: i, .. }
            | OpenItem::Message { index: i, .. }
            | OpenItem::Call { index: i, .. } => {
                *i = index;
            }
        }
        let added = match &item {
            OpenItem::Reasoning { id, .. } => json!({"id": id, "type": "reasoning", "summary": []}),
            OpenItem::Message { id, .. } => {
                json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []})
            }
            OpenItem::Call { id, call_id, name, .. } => function_call_item(id, call_id, name, "", "in_progress"),
        };
        emit(&mut self.seq, out, "response.output_item.added", json!({"output_index": index, "item": added}));
        if let OpenItem::Message { id, .. } = &item {
            let ev = json!({"item_id": id, "output_index": index, "content_index": 0, "part": output_text_part("")});
            emit(&mut self.seq, out, "response.content_part.added", ev);
        }
        self.cur = Some(item);
    }

    fn open_reasoning(&mut self, out: &mut Vec<u8>, signature: Option<String>) {
        let item = OpenItem::Reasoning { id: new_id("rs"), index: 0, text: String::new(), part_open: false, signature };
        self.open(out, item);
    }
}

impl StreamEncoder for Encoder {
    fn event(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match ev {
            StreamEvent::Start { id, .. } => {
                if !self.started && !id.is_empty() {
                    self.id = response_id(id);
                }
                self.start(out);
            }
            StreamEvent::Text(t) => {
                self.start(out);
                if !matches!(self.cur, Some(OpenItem::Message { .. })) {
                    self.open(out, OpenItem::Message { id: new_id("msg"), index: 0, text: String::new() });
                }
                if let Some(OpenItem::Message { id, index, text }) = &mut self.cur {
                    if !t.is_empty() {
                        text.push_str(t);
                        let ev = json!({"item_id": id, "output_index": index, "content_index": 0, "delta": t, "logprobs": []});
                        emit(&mut self.seq, out, "response.output_text.delta", ev);
                    }
                }
            }
            StreamEvent::Thinking(t) => {
                self.start(out);
                if !matches!(self.cur, Some(OpenItem::Reasoning { signature: None, .. })) {
                    self.open_reasoning(out, None);
                }
                if let Some(OpenItem::Reasoning { id, index, text, part_open, .. }) = &mut self.cur {
                    if t.is_empty() {
                        return;
                    }
                    let at = json!({"item_id": id, "output_index": index, "summary_index": 0});
                    if !*part_open {
                        *part_open = true;
                        let mut ev = at.clone();
                        ev["part"] = json!({"type": "summary_text", "text": ""});
                        emit(&mut self.seq, out, "response.reasoning_summary_part.added", ev);
                    }
                    text.push_str(t);
                    let mut ev = at;
                    ev["delta"] = t.as_str().into();
                    emit(&mut self.seq, out, "response.reasoning_summary_text.delta", ev);
                }
            }
            StreamEvent::ThinkingSignature(sig) => {
                self.start(out);
                match &mut self.cur {
                    Some(OpenItem::Reasoning { signature: signature @ None, .. }) => *signature = Some(sig.clone()),
                    _ => self.open_reasoning(out, Some(sig.clone())),
                }
            }
            StreamEvent::RedactedThinking(data) => {
                self.start(out);
                self.open_reasoning(out, Some(format!("{REDACTED_PREFIX}{data}")));
                self.close(out);
            }
            StreamEvent::ToolCallStart { index: ordinal, id, name, signature } => {
                self.start(out);
                if matches!(self.cur, Some(OpenItem::Call { .. })) {
                    self.pending.push(PendingCall {
                        ordinal: *ordinal,
                        call_id: id.clone(),
                        name: name.clone(),
                        signature: signature.clone(),
                        args: String::new(),
                    });
                } else {
                    self.open_call(out, *ordinal, id.clone(), name.clone(), signature.clone());
                }
            }
            StreamEvent::ToolCallArgs { index: ordinal, delta } => {
                self.start(out);
                match &mut self.cur {
                    Some(OpenItem::Call { id, index, ordinal: open, args, .. }) if open == ordinal => {
                        if !delta.is_empty() {
                            args.push_str(delta);
                            let ev = json!({"item_id": id, "output_index": index, "delta": delta});
                            emit(&mut self.seq, out, "response.function_call_arguments.delta", ev);
                        }
                    }
                    _ => {
                        if let Some(p) = self.pending.iter_mut().find(|p| p.ordinal == *ordinal) {
                            p.args.push_str(delta);
                        }
                    }
                }
            }
            StreamEvent::Usage(u) => self.usage = Some(*u),
            StreamEvent::Finish(f) => self.finish = Some(*f),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.start(out);
        self.close_all(out);
        self.ended = true;
        let status = finish_status(self.finish);
        let usage = self.usage.unwrap_or_default();
        let r = self.response(status, Some(&usage), None);
        emit(&mut self.seq, out, &format!("response.{status}"), json!({ "response": r }));
    }

    fn error(&mut self, status: u16, message: &str, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.start(out);
        self.cur = None;
        self.pending.clear();
        self.ended = true;
        let error = json!({"code": failed_code(status), "message": message});
        let r = self.response("failed", self.usage.as_ref(), Some(error));
        emit(&mut self.seq, out, "response.failed", json!({ "response": r }));
    }
}
