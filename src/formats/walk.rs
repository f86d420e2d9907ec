//! Small helpers the format parsers share for walking client JSON, so that a wrong type or
//! a missing field becomes a 400 naming the field's path.

use super::FormatError;
use serde_json::{Map, Value};

/// A JSON object.
pub(crate) type Obj = Map<String, Value>;

/// A 400 for a client's bad request.
pub(crate) fn bad(message: impl Into<String>) -> FormatError {
    FormatError::bad_request(message)
}

/// The path of `key` under `path` (`messages[2]` + `content` → `messages[2].content`).
pub(crate) fn at(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A field, with JSON `null` treated as absent.
pub(crate) fn get<'a>(o: &'a Obj, key: &str) -> Option<&'a Value> {
    o.get(key).filter(|v| !v.is_null())
}
