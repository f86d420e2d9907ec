//! Anthropic errors: `error.type` ↔ HTTP status, and the `{"type":"error",…}` bodies both ways.

use super::FormatError;
use crate::formats::walk::{str_of, Obj};
use serde_json::{json, Value};

/// Anthropic `error.type` → HTTP status.
pub fn status_for_error_type(t: &str) -> u16 {
    match t {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 502,
    }
}

/// HTTP status → Anthropic `error.type`.
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// An Anthropic error body for `status`.
pub(super) fn error_json(status: u16, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type_for_status(status), "message": message}})
}

/// An upstream `{"type":"error","error":{…}}` object → `FormatError` with the mapped status.
pub(super) fn upstream_error(o: &Obj) -> FormatError {
    let err = o.get("error").and_then(Value::as_object);
    let ty = err.and_then(|e| str_of(e, "type")).unwrap_or("unknown_error");
    let msg = err.and_then(|e| str_of(e, "message")).unwrap_or("upstream error");
    FormatError { status: status_for_error_type(ty), message: format!("upstream {ty}: {msg}") }
}
