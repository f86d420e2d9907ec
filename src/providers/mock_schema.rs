//! The mock's structured answers: a minimal, deterministic JSON instance of a JSON Schema
//! (for `response_format` and tool-call arguments), and which offered tool, if any, an answer
//! calls.
//!
//! The instance: objects get their required properties (every listed property when the
//! schema names none as required, as Gemini schemas often do), `const` and `enum` their first
//! value, strings a short word (or a sample of their `format`), numbers 0 moved inside
//! `minimum` / `maximum`, booleans `false`, arrays `minItems` items (one when there is an
//! `items` schema and no minimum), `$ref` the local definition it points to, `anyOf` /
//! `oneOf` their first branch that is not `null`, `allOf` its branches merged.

use crate::protocol::canonical::{ChatRequest, Part, Role, ToolChoice, ToolDef};
use serde_json::{json, Map, Value};

/// Deepest nesting followed (`$ref` cycles end here with `null`).
const MAX_DEPTH: usize = 24;

/// A minimal instance of `schema`.
pub fn instance(schema: &Value) -> Value {
    gen(schema, schema, 0)
}

/// The schema a local `$ref` (`#/$defs/x`, `#/definitions/x`, `#`) points to.
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

/// The first type a schema names, `null` last (`["string", "null"]` is a string), in lower
/// case (Gemini's `"OBJECT"` reaches other formats too).
fn first_type(schema: &Map<String, Value>) -> Option<String> {
    let name = match schema.get("type")? {
        Value::String(t) => Some(t.as_str()),
        Value::Array(ts) => {
            let names: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
            names.iter().find(|t| !t.eq_ignore_ascii_case("null")).or(names.first()).copied()
        }
        _ => None,
    };
    name.map(str::to_ascii_lowercase)
}

fn gen(root: &Value, schema: &Value, depth: usize) -> Value {
    let Some(s) = schema.as_object() else {
        // `true` (anything) or `false` (nothing): a word is as good as anything.
        return json!("mock");
    };
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    if let Some(v) = s.get("const") {
        return v.clone();
    }
    if let Some(first) = s.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(target) = s.get("$ref").and_then(Value::as_str).and_then(|r| resolve(root, r)) {
        return gen(root, target, depth + 1);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = s.get(key).and_then(Value::as_array) {
            let is_null =
                |b: &&Value| b.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case("null"));
            if let Some(b) = branches.iter().find(|b| !is_null(b)).or(branches.first()) {
                return gen(root, b, depth + 1);
            }
        }
    }
    if let Some(branches) = s.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for b in branches {
            match gen(root, b, depth + 1) {
                Value::Object(o) => merged.extend(o),
                other if merged.is_empty() => return other,
                _ => {}
            }
        }
        return Value::Object(merged);
    }
    let ty = first_type(s).unwrap_or_else(|| {
        if s.contains_key("properties") {
            "object"
        } else if s.contains_key("items") {
            "array"
        } else {
            "string"
        }
        .to_string()
    });
    match ty.as_str() {
        "object" => object(root, s, depth),
        "array" => {
            let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0).min(8);
            let items = s.get("items").filter(|i| i.is_object());
            let n = match items {
                Some(_) => min.max(1).min(s.get("maxItems").and_then(Value::as_u64).unwrap_or(u64::MAX)),
                None => min,
            };
            let item = items.cloned().unwrap_or(Value::Bool(true));
            Value::Array((0..n).map(|_| gen(root, &item, depth + 1)).collect())
        }
        "integer" => {
            let n = number(s).ceil();
            json!(n as i64)
        }
        "number" => json!(number(s)),
        "boolean" => json!(false),
        "null" => Value::Null,
        _ => string(s),
    }
}

fn object(root: &Value, s: &Map<String, Value>, depth: usize) -> Value {
    let props = s.get("properties").and_then(Value::as_object);
    let required: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_else(|| props.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default());
    let mut out = Map::new();
    for name in required {
        let sub = props.and_then(|p| p.get(name)).cloned().unwrap_or(Value::Bool(true));
        out.insert(name.to_string(), gen(root, &sub, depth + 1));
    }
    Value::Object(out)
}

/// 0, moved inside the bounds.
fn number(s: &Map<String, Value>) -> f64 {
    let get = |k: &str| s.get(k).and_then(Value::as_f64);
    let mut n = 0.0f64;
    if let Some(min) = get("minimum") {
        n = n.max(min);
    }
    if let Some(min) = get("exclusiveMinimum") {
        if n <= min {
            n = min + 1.0;
        }
    }
    if let Some(max) = get("maximum") {
        n = n.min(max);
    }
    if let Some(max) = get("exclusiveMaximum") {
        if n >= max {
            n = max - 1.0;
        }
    }
    n
}

fn string(s: &Map<String, Value>) -> Value {
    let sample = match s.get("format").and_then(Value::as_str) {
        Some("date-time") => "2025-01-01T00:00:00Z",
        Some("date") => "2025-01-01",
        Some("time") => "00:00:00Z",
        Some("email") => "mock@example.com",
        Some("uri" | "url") => "https://example.com/",
        Some("uuid") => "00000000-0000-4000-8000-000000000000",
        _ => "mock",
    };
    let mut text = sample.to_string();
    let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0).min(1024) as usize;
    while text.chars().count() < min {
        text.push('x');
    }
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
        text = text.chars().take(max as usize).collect();
    }
    Value::String(text)
}

/// The text of the last user message's last text part, when that message is the user's
/// own turn (not a tool result): what the user typed last.
fn typed_last(req: &ChatRequest) -> Option<&str> {
    let last = req.messages.last().filter(|m| m.role == Role::User)?;
    if last.content.iter().any(|p| matches!(p, Part::ToolResult { .. })) {
        return None;
    }
    last.content.iter().rev().find_map(|p| match p {
        Part::Text { text } => Some(text.as_str()),
        _ => None,
    })
}

/// Whether `text` asks for `name`: the name as a whole word (case-sensitive), after "use",
/// "call", "run" or "invoke" (and an optional "the"), or before "tool" or "function". So
/// "use get_weather" and "the Read tool" ask for a tool, "Write a poem" does not ask for
/// `Write`.
fn names(text: &str, name: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    !name.is_empty()
        && text.match_indices(name).any(|(at, _)| {
            let (head, tail) = (&text[..at], &text[at + name.len()..]);
            if head.chars().next_back().is_some_and(word) || tail.chars().next().is_some_and(word) {
                return false;
            }
            let head = head.trim_end().to_lowercase();
            let head = head.strip_suffix(" the").unwrap_or(&head).trim_end();
            let verb = ["use", "call", "run", "invoke"]
                .iter()
                .any(|v| head.strip_suffix(v).is_some_and(|h| !h.chars().next_back().is_some_and(word)));
            let tail = tail.trim_start().to_lowercase();
            verb || tail.starts_with("tool") || tail.starts_with("function")
        })
}

/// The tool the answer calls: the one `tool_choice` forces; with `required`, the one the
/// user's last message asks for, else the first; with `auto` (or unset), the one the user's
/// last message asks for ("use get_weather", "the search tool"; longest name first), if any. Never after a tool result unless forced.
pub fn chosen_tool(req: &ChatRequest) -> Option<ToolDef> {
    let typed = typed_last(req);
    let named = || {
        let text = typed?;
        let mut tools: Vec<&ToolDef> = req.tools.iter().collect();
        tools.sort_by_key(|t| std::cmp::Reverse(t.name.len()));
        tools.into_iter().find(|t| names(text, &t.name)).cloned()
    };
    match &req.tool_choice {
        Some(ToolChoice::None) => None,
        Some(ToolChoice::Tool { name }) => {
            Some(req.tools.iter().find(|t| &t.name == name).cloned().unwrap_or(ToolDef {
                name: name.clone(),
                description: None,
                parameters: json!({"type": "object"}),
            }))
        }
        Some(ToolChoice::Required) => named().or_else(|| req.tools.first().cloned()),
        Some(ToolChoice::Auto) | None => named(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::canonical::Message;

    #[test]
    fn instances_satisfy_their_schemas() {
        let cases = [
            (json!({"type": "string"}), json!("mock")),
            (json!({"type": "integer", "minimum": 3}), json!(3)),
            (json!({"type": "number", "exclusiveMinimum": 0}), json!(1.0)),
            (json!({"type": "number", "maximum": -2}), json!(-2.0)),
            (json!({"type": "boolean"}), json!(false)),
            (json!({"type": ["string", "null"]}), json!("mock")),
            (json!({"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}}), json!({"n": 0})),
            (json!({"enum": ["flash", "pro"]}), json!("flash")),
            (json!({"const": 7}), json!(7)),
            (json!({"type": "string", "format": "date"}), json!("2025-01-01")),
            (json!({"type": "string", "minLength": 6, "maxLength": 8}), json!("mockxx")),
            (json!({"type": "array"}), json!([])),
            (json!({"type": "array", "items": {"type": "integer"}}), json!([0])),
            (json!({"type": "array", "items": {"type": "boolean"}, "minItems": 2}), json!([false, false])),
            (json!({"anyOf": [{"type": "null"}, {"type": "integer"}]}), json!(0)),
            (
                json!({"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                                  {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]}]}),
                json!({"a": "mock", "b": 0}),
            ),
            (
                json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["b"]}),
                json!({"b": 0}),
            ),
            // Gemini CLI's classifier: upper-case types become lower-case before this.
            (
                json!({"type": "object", "properties": {
                    "reasoning": {"type": "string"},
                    "model_choice": {"type": "string", "enum": ["flash", "pro"]}}}),
                json!({"reasoning": "mock", "model_choice": "flash"}),
            ),
            (
                json!({"type": "object", "properties": {"p": {"$ref": "#/$defs/point"}}, "required": ["p"],
                       "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}}}),
                json!({"p": {"x": 0.0}}),
            ),
        ];
        for (schema, want) in cases {
            assert_eq!(instance(&schema), want, "{schema}");
        }
        // A cycle ends.
        let cycle = json!({"$ref": "#/$defs/n",
            "$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}, "required": ["next"]}}});
        assert!(instance(&cycle).is_object());
    }

    fn tool(name: &str) -> ToolDef {
        ToolDef {
            name: name.into(),
            description: None,
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        }
    }

    fn req(text: &str, choice: Option<ToolChoice>) -> ChatRequest {
        ChatRequest {
            messages: vec![Message::text(Role::User, text)],
            tools: vec![tool("get"), tool("get_weather"), tool("search")],
            tool_choice: choice,
            ..Default::default()
        }
    }

    #[test]
    fn which_tool_is_called() {
        let name = |r: &ChatRequest| chosen_tool(r).map(|t| t.name);
        assert_eq!(name(&req("please use get_weather for Paris", None)), Some("get_weather".into()));
        assert_eq!(name(&req("use search.", Some(ToolChoice::Auto))), Some("search".into()));
        assert_eq!(name(&req("hello there", None)), None);
        assert_eq!(name(&req("the research is done", None)), None, "whole words only");
        assert_eq!(name(&req("search for cats", None)), None, "a name alone is not a request");
        assert_eq!(name(&req("Try the search tool", None)), Some("search".into()));
        assert_eq!(name(&req("please call the get function", None)), Some("get".into()));
        assert_eq!(name(&req("reuse search", None)), None);
        assert_eq!(name(&req("hello", Some(ToolChoice::Required))), Some("get".into()));
        assert_eq!(name(&req("use search", Some(ToolChoice::Required))), Some("search".into()));
        assert_eq!(name(&req("use search", Some(ToolChoice::Tool { name: "get".into() }))), Some("get".into()));
        assert_eq!(name(&req("use search", Some(ToolChoice::None))), None);
        let mut after_result = req("use search", None);
        after_result.messages.push(Message {
            role: Role::User,
            content: vec![Part::ToolResult {
                call_id: "c".into(),
                name: None,
                content: vec![Part::text("use search")],
                is_error: false,
            }],
        });
        assert_eq!(name(&after_result), None, "no loop after a tool result");
    }
}
