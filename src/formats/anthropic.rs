//! SCAFFOLD — being replaced by the full implementation of this format.

use super::{FormatError, ParseContext, StreamDecoder, StreamEncoder};
use crate::protocol::canonical::{ChatRequest, ChatResponse, StreamEvent};

fn todo_err() -> FormatError {
    FormatError { status: 501, message: "format not implemented yet".into() }
}
pub fn parse_request(_body: &[u8], _ctx: &ParseContext) -> Result<ChatRequest, FormatError> {
    Err(todo_err())
}
pub fn render_response(_resp: &ChatResponse, _model: &str) -> Vec<u8> {
    Vec::new()
}
pub struct Encoder;
impl StreamEncoder for Encoder {
    fn event(&mut self, _ev: &StreamEvent, _out: &mut Vec<u8>) {}
    fn finish(&mut self, _out: &mut Vec<u8>) {}
    fn error(&mut self, _status: u16, _message: &str, _out: &mut Vec<u8>) {}
}
pub fn encoder(_model: &str) -> Encoder {
    Encoder
}
pub fn render_error(_status: u16, _message: &str) -> Vec<u8> {
    Vec::new()
}
pub fn build_request(_req: &ChatRequest, _model: &str) -> Result<Vec<u8>, FormatError> {
    Err(todo_err())
}
pub fn parse_response(_body: &[u8]) -> Result<ChatResponse, FormatError> {
    Err(todo_err())
}
pub struct Decoder;
impl StreamDecoder for Decoder {
    fn feed(&mut self, _event: Option<&str>, _data: &str) -> Result<Vec<StreamEvent>, FormatError> {
        Err(todo_err())
    }
    fn end(&mut self) -> Result<Vec<StreamEvent>, FormatError> {
        Err(todo_err())
    }
}
pub fn decoder() -> Decoder {
    Decoder
}
pub fn validate_stream(_bytes: &[u8]) -> Result<(), String> {
    Err("not implemented".into())
}
