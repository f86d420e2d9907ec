//! Gemini schemas (`parameters`, `responseSchema`, `parametersJsonSchema`, `responseJsonSchema`) → JSON Schema.

use super::{int_of, to_camel};
use crate::formats::walk::Obj;
use serde_json::{json, Value};

/// Gemini's upper-case type names.
const GEMINI_TYPES: [&str; 8] =
    ["TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"];

/// A type name with Gemini's upper-case names lowercased (any case when `openapi`);
/// `None` for `TYPE_UNSPECIFIED` (no type). Other names are kept.
fn lower_type(t: &str, openapi: bool) -> Option<String> {
    if GEMINI_TYPES.contains(&t) || (openapi && GEMINI_TYPES.contains(&t.to_ascii_uppercase().as_str())) {
        let l = t.to_ascii_lowercase();
        (l != "type_unspecified").then_some(l)
    } else {
        Some(t.to_string())
    }
}

/// Gemini schema → JSON Schema. `openapi`: the OpenAPI subset of `parameters` /
/// `responseSchema` (upper-case types, `nullable`, int64 as strings, snake_case keys);
/// otherwise a JSON Schema in which only Gemini's upper-case type names are lowercased.
pub(super) fn convert_schema(v: &Value, openapi: bool) -> Value {
    let Value::Object(m) = v else { return v.clone() };
    let mut out = Obj::new();
    let mut nullable = false;
    for (k, val) in m {
        let key = if openapi && k.contains('_') { to_camel(k) } else { k.clone() };
        match key.as_str() {
            "type" => match val {
                Value::String(t) => {
                    if let Some(t) = lower_type(t, openapi) {
                        out.insert(key, Value::String(t));
                    }
                }
                Value::Array(ts) => {
                    let ts = ts
                        .iter()
                        .filter_map(|t| {
                            t.as_str().map_or_else(|| Some(t.clone()), |s| lower_type(s, openapi).map(Value::String))
                        })
                        .collect();
                    out.insert(key, Value::Array(ts));
                }
                other => {
                    out.insert(key, other.clone());
                }
            },
            "nullable" if openapi => nullable = val.as_bool() == Some(true),
            "propertyOrdering" if openapi => {}
            "properties" | "$defs" | "definitions" | "patternProperties" => {
                let mapped = match val {
                    Value::Object(props) => {
                        Value::Object(props.iter().map(|(n, s)| (n.clone(), convert_schema(s, openapi))).collect())
                    }
                    other => other.clone(),
                };
                out.insert(key, mapped);
            }
            "items" | "additionalProperties" | "not" | "if" | "then" | "else" | "contains" | "propertyNames" => {
                let mapped = match val {
                    Value::Array(a) => Value::Array(a.iter().map(|s| convert_schema(s, openapi)).collect()),
                    other => convert_schema(other, openapi),
                };
                out.insert(key, mapped);
            }
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                let mapped = match val {
                    Value::Array(a) => Value::Array(a.iter().map(|s| convert_schema(s, openapi)).collect()),
                    other => other.clone(),
                };
                out.insert(key, mapped);
            }
            "minItems" | "maxItems" | "minLength" | "maxLength" | "minProperties" | "maxProperties" if openapi => {
                let n = int_of(m, k).map_or_else(|| val.clone(), |n| json!(n));
                out.insert(key, n);
            }
            "format" if openapi && val.as_str() == Some("enum") => {}
            _ => {
                out.insert(key, val.clone());
            }
        }
    }
    if nullable {
        match out.get("type").cloned() {
            Some(Value::String(t)) => {
                out.insert("type".into(), json!([t, "null"]));
            }
            _ => {
                if let Some(Value::Array(any)) = out.get_mut("anyOf") {
                    any.push(json!({"type": "null"}));
                }
            }
        }
    }
    Value::Object(out)
}
