//! The one way the format parsers walk client JSON: a wrong type or a missing field becomes a
//! 400 that names the field's path, in one wording for every format.
//!
//! [`Fields`] is an object together with its path. Every getter takes the key only; `null`
//! counts as absent. Gemini's proto3 JSON ([`Fields::proto3`]) also accepts a field's
//! snake_case spelling and integers written as decimal strings. Upstream data is read leniently
//! with [`str_of`] (a wrong type there is the upstream's problem, not the caller's).
//!
//! The messages: `<path> is required`, `<path> must be <a type>, not <the type sent>`,
//! `<path> must be an integer from 0 to 4294967295`.

use super::FormatError;
use serde_json::{Map, Value};
use std::fmt;

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

/// A string field of upstream data, read leniently: absent or another type is `None`.
pub(crate) fn str_of<'a>(o: &'a Obj, key: &str) -> Option<&'a str> {
    o.get(key).and_then(Value::as_str)
}

/// How a value's JSON type is named in an error (`a string`, `an array`, …).
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `<path> must be <want>, not <what v is>`.
pub(crate) fn wrong_type(path: impl fmt::Display, want: &str, v: &Value) -> FormatError {
    bad(format!("{path} must be {want}, not {}", type_name(v)))
}

/// `v` as an object, or a 400 naming `path`.
pub(crate) fn object<'a>(v: &'a Value, path: &str) -> Result<&'a Obj, FormatError> {
    v.as_object().ok_or_else(|| wrong_type(path, "an object", v))
}

/// `v` as an array, or a 400 naming `path`.
pub(crate) fn array<'a>(v: &'a Value, path: &str) -> Result<&'a Vec<Value>, FormatError> {
    v.as_array().ok_or_else(|| wrong_type(path, "an array", v))
}

/// The path of a field, rendered only when an error needs it.
struct FieldPath<'p> {
    /// The object's own path (empty at the top level).
    parent: &'p str,
    /// The field's key.
    key: &'p str,
}

impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.parent.is_empty() {
            f.write_str(self.key)
        } else {
            write!(f, "{}.{}", self.parent, self.key)
        }
    }
}

/// An object of client JSON and where it sits, read field by field.
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a, 'p> {
    /// The object read.
    obj: &'a Obj,
    /// Its path in the body, for error messages (empty at the top level).
    path: &'p str,
    /// Gemini's proto3 JSON mapping: snake_case spellings and integers as decimal strings.
    proto3: bool,
}

impl<'a, 'p> Fields<'a, 'p> {
    /// Fields of `obj`, which sits at `path`.
    pub(crate) const fn new(obj: &'a Obj, path: &'p str) -> Self {
        Self { obj, path, proto3: false }
    }

    /// Fields of a proto3 JSON object (Gemini): a camelCase key also matches its snake_case
    /// spelling, and integers may be decimal strings.
    pub(crate) const fn proto3(obj: &'a Obj, path: &'p str) -> Self {
        Self { obj, path, proto3: true }
    }

    /// The object's path.
    pub(crate) const fn path(&self) -> &'p str {
        self.path
    }

    /// The path of `key` in this object, for a nested walk or an error.
    pub(crate) fn at(&self, key: &str) -> String {
        at(self.path, key)
    }

    /// Fields of a nested object at `path` in the same JSON mapping as this one.
    pub(crate) const fn nested<'b, 'q>(&self, obj: &'b Obj, path: &'q str) -> Fields<'b, 'q> {
        Fields { obj, path, proto3: self.proto3 }
    }

    fn field_path<'k>(&'k self, key: &'k str) -> FieldPath<'k> {
        FieldPath { parent: self.path, key }
    }

    /// A field; `null` counts as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        let found = match self.obj.get(key) {
            Some(v) => Some(v),
            None if self.proto3 => self.obj.get(&to_snake(key)),
            None => None,
        };
        found.filter(|v| !v.is_null())
    }

    /// Whether the field is present (and not `null`).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A 400 for a field that must be present.
    pub(crate) fn required(&self, key: &str) -> FormatError {
        bad(format!("{} is required", self.field_path(key)))
    }

    /// A 400 for a field of the wrong type.
    pub(crate) fn wrong(&self, key: &str, want: &str, v: &Value) -> FormatError {
        wrong_type(self.field_path(key), want, v)
    }

    /// An optional string.
    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, "a string", v)),
        }
    }

    /// A required string.
    pub(crate) fn req_str(&self, key: &str) -> Result<&'a str, FormatError> {
        self.str(key)?.ok_or_else(|| self.required(key))
    }

    /// An optional boolean.
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, "a boolean", v)),
        }
    }

    /// An optional finite number.
    pub(crate) fn f64(&self, key: &str) -> Result<Option<f64>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => {
                n.as_f64().filter(|f| f.is_finite()).map(Some).ok_or_else(|| self.wrong(key, "a finite number", v))
            }
            Some(v) => Err(self.wrong(key, "a number", v)),
        }
    }

    /// An optional integer (in proto3 JSON also a decimal string).
    pub(crate) fn i64(&self, key: &str) -> Result<Option<i64>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => self.int(v).map(Some).ok_or_else(|| self.wrong(key, "an integer", v)),
        }
    }

    /// An optional integer from 0 to `u32::MAX`.
    pub(crate) fn u32(&self, key: &str) -> Result<Option<u32>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => self
                .int(v)
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| bad(format!("{} must be an integer from 0 to {}", self.field_path(key), u32::MAX))),
        }
    }

    /// An optional array.
    pub(crate) fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.wrong(key, "an array", v)),
        }
    }

    /// An optional object.
    pub(crate) fn object(&self, key: &str) -> Result<Option<&'a Obj>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(v) => Err(self.wrong(key, "an object", v)),
        }
    }

    /// An integer value: a JSON integer; in proto3 JSON also a number without fraction
    /// (`1024.0`) or a decimal string (`"1024"`), as that mapping allows.
    fn int(&self, v: &Value) -> Option<i64> {
        match v {
            Value::Number(n) if self.proto3 => {
                n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
            }
            Value::Number(n) => n.as_i64(),
            Value::String(s) if self.proto3 => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// `maxOutputTokens` → `max_output_tokens`.
pub(crate) fn to_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Obj {
        match v {
            Value::Object(o) => o,
            _ => unreachable!("test input is an object"),
        }
    }

    /// `check(input, call, expected)`: the getter's result, or its error message.
    fn check(input: Value, proto3: bool, call: impl Fn(Fields<'_, '_>) -> Result<String, FormatError>, want: &str) {
        let o = obj(input);
        let f = if proto3 { Fields::proto3(&o, "a.b") } else { Fields::new(&o, "a.b") };
        let got = match call(f) {
            Ok(s) => s,
            Err(e) => format!("error {}: {}", e.status, e.message),
        };
        assert_eq!(got, want);
    }

    #[test]
    fn getters_and_their_messages() {
        let s = |f: Fields<'_, '_>| f.str("k").map(|v| format!("{v:?}"));
        check(json!({"k": "x"}), false, s, "Some(\"x\")");
        check(json!({"k": null}), false, s, "None");
        check(json!({}), false, s, "None");
        check(json!({"k": 1}), false, s, "error 400: a.b.k must be a string, not a number");
        let r = |f: Fields<'_, '_>| f.req_str("k").map(str::to_string);
        check(json!({}), false, r, "error 400: a.b.k is required");
        let b = |f: Fields<'_, '_>| f.bool("k").map(|v| format!("{v:?}"));
        check(json!({"k": "true"}), false, b, "error 400: a.b.k must be a boolean, not a string");
        let n = |f: Fields<'_, '_>| f.f64("k").map(|v| format!("{v:?}"));
        check(json!({"k": 0.5}), false, n, "Some(0.5)");
        check(json!({"k": []}), false, n, "error 400: a.b.k must be a number, not an array");
        let u = |f: Fields<'_, '_>| f.u32("k").map(|v| format!("{v:?}"));
        check(json!({"k": 7}), false, u, "Some(7)");
        check(json!({"k": -1}), false, u, "error 400: a.b.k must be an integer from 0 to 4294967295");
        check(json!({"k": 4294967296u64}), false, u, "error 400: a.b.k must be an integer from 0 to 4294967295");
        check(json!({"k": "7"}), false, u, "error 400: a.b.k must be an integer from 0 to 4294967295");
        check(json!({"k": "7"}), true, u, "Some(7)");
        check(json!({"k": 7.0}), true, u, "Some(7)");
        check(json!({"k": 7.0}), false, u, "error 400: a.b.k must be an integer from 0 to 4294967295");
        let a = |f: Fields<'_, '_>| f.array("k").map(|v| format!("{v:?}"));
        check(json!({"k": {}}), false, a, "error 400: a.b.k must be an array, not an object");
        let o = |f: Fields<'_, '_>| f.object("k").map(|v| format!("{}", v.is_some()));
        check(json!({"k": 1}), false, o, "error 400: a.b.k must be an object, not a number");
    }

    #[test]
    fn proto3_reads_snake_case_spellings() {
        let m = |f: Fields<'_, '_>| f.u32("maxOutputTokens").map(|v| format!("{v:?}"));
        check(json!({"max_output_tokens": 9}), true, m, "Some(9)");
        check(json!({"max_output_tokens": 9}), false, m, "None");
        assert_eq!(to_snake("responseMimeType"), "response_mime_type");
    }

    #[test]
    fn top_level_paths_have_no_dot() {
        let o = obj(json!({"k": 1}));
        let e = Fields::new(&o, "").str("k").expect_err("a number is not a string");
        assert_eq!(e.message, "k must be a string, not a number");
        assert_eq!(at("", "k"), "k");
        assert_eq!(at("m[0]", "k"), "m[0].k");
    }
}
