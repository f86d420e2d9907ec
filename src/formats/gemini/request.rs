//! Client request (`generateContent`, `streamGenerateContent`, `countTokens`) → canonical.

use super::schema::convert_schema;
use super::{bare_model, guess_image_mime, to_camel, REDACTED_PREFIX};
use crate::formats::reasoning::{seal, seal_opt, unblock, Origin};
use crate::formats::walk::{array, bad, object, wrong_type, Fields};
use crate::formats::{FormatError, Op, ParseContext};
use crate::protocol::canonical::{
    ChatRequest, ImageSource, Message, Part, ResponseFormat, Role, ThinkingConfig, ToolChoice, ToolDef,
};
use serde_json::{json, Value};

/// Client request (`generateContent`, `streamGenerateContent`, `countTokens`) → canonical.
pub fn parse_request(body: &[u8], ctx: &ParseContext) -> Result<ChatRequest, FormatError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("request body is not valid JSON: {e}")))?;
    let root = v.as_object().ok_or_else(|| bad("request body must be a JSON object"))?;
    let root = Fields::proto3(root, "");
    let url_model = ctx.model.as_deref().map(bare_model).filter(|m| !m.is_empty());
    match ctx.op {
        Op::CountTokens => {
            if let Some(inner) = root.object("generateContentRequest")? {
                let inner = root.nested(inner, "generateContentRequest");
                let body_model = inner.str("model")?.map(bare_model);
                let model = url_model.or(body_model).unwrap_or_default();
                parse_generate(inner, model, false, true)
            } else {
                parse_generate(root, url_model.unwrap_or_default(), false, true)
            }
        }
        Op::Generate | Op::StreamGenerate => {
            let model = url_model.ok_or_else(|| {
                bad("the model is missing: it belongs in the URL, /v1beta/models/{model}:generateContent")
            })?;
            parse_generate(root, model, ctx.op == Op::StreamGenerate, false)
        }
    }
}

/// Function calls seen so far, for pairing `functionResponse`s with call ids.
#[derive(Default)]
struct CallBook {
    /// (id, name, answered), in order.
    calls: Vec<(String, String, bool)>,
    /// Index in `calls` where the latest model turn's calls start.
    turn_start: usize,
    /// Whether the previous content was a model turn.
    in_model_turn: bool,
}

impl CallBook {
    /// The call id a `functionResponse` (`given` id, `name`) answers; marks that call answered.
    fn resolve(&mut self, given: Option<&str>, name: &str) -> Option<String> {
        if let Some(id) = given {
            if let Some(c) = self.calls.iter_mut().find(|c| c.0 == id) {
                c.2 = true;
                return Some(id.to_string());
            }
        }
        let start = self.turn_start.min(self.calls.len());
        let latest = self.calls.get_mut(start..).and_then(|s| s.iter_mut().find(|c| !c.2 && c.1 == name));
        let found = match latest {
            Some(c) => Some(c),
            None => self.calls.iter_mut().rev().find(|c| !c.2 && c.1 == name),
        };
        if let Some(c) = found {
            c.2 = true;
            return Some(c.0.clone());
        }
        given.map(str::to_string)
    }
}

/// A `GenerateContentRequest` (top level, or wrapped in a `countTokens` body) → canonical.
fn parse_generate(
    m: Fields<'_, '_>,
    model: String,
    stream: bool,
    count_only: bool,
) -> Result<ChatRequest, FormatError> {
    if m.has("cachedContent") {
        return Err(bad(format!(
            "{} is not supported: cached contents are stateful and cannot be converted",
            m.at("cachedContent")
        )));
    }
    let mut req = ChatRequest { model, stream, ..Default::default() };

    // systemInstruction
    if let Some(si) = m.get("systemInstruction") {
        let p = m.at("systemInstruction");
        let text = match si {
            Value::String(s) => s.clone(),
            Value::Object(o) => {
                let parts = m.nested(o, &p).array("parts")?.map(Vec::as_slice).unwrap_or_default();
                let mut texts = Vec::new();
                for (j, part) in parts.iter().enumerate() {
                    let pp = format!("{p}.parts[{j}]");
                    match m.nested(object(part, &pp)?, &pp).str("text")? {
                        Some(t) => texts.push(t.to_string()),
                        None => return Err(bad(format!("{pp} must be a text part"))),
                    }
                }
                texts.join("\n")
            }
            _ => return Err(bad(format!("{p} must be an object with parts"))),
        };
        if !text.is_empty() {
            req.system = Some(text);
        }
    }

    // contents
    let contents = match m.get("contents") {
        None => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(one @ Value::Object(_)) => std::slice::from_ref(one),
        Some(v) => return Err(m.wrong("contents", "an array", v)),
    };
    if contents.is_empty() && !count_only {
        return Err(bad(format!("{} must not be empty", m.at("contents"))));
    }
    let mut book = CallBook::default();
    for (i, c) in contents.iter().enumerate() {
        let cp = format!("{}[{i}]", m.at("contents"));
        if let Some(msg) = parse_content(m.nested(object(c, &cp)?, &cp), &mut book)? {
            req.messages.push(msg);
        }
    }
    if req.messages.is_empty() && !count_only {
        return Err(bad(format!("{} must hold at least one part", m.at("contents"))));
    }

    // tools
    if let Some(tools) = m.array("tools")? {
        for (i, t) in tools.iter().enumerate() {
            let tp = format!("{}[{i}]", m.at("tools"));
            for (k, v) in object(t, &tp)? {
                if v.is_null() {
                    continue;
                }
                match to_camel(k).as_str() {
                    "functionDeclarations" => {
                        let dp = format!("{tp}.functionDeclarations");
                        for (j, d) in array(v, &dp)?.iter().enumerate() {
                            let djp = format!("{dp}[{j}]");
                            req.tools.push(parse_function_decl(m.nested(object(d, &djp)?, &djp))?);
                        }
                    }
                    other => {
                        return Err(bad(format!(
                            "{tp}.{other} is not supported: only functionDeclarations tools can be converted"
                        )))
                    }
                }
            }
        }
    }

    // toolConfig
    if let Some(tc) = m.object("toolConfig")? {
        let tcp = m.at("toolConfig");
        let tc = m.nested(tc, &tcp);
        if let Some(fc) = tc.object("functionCallingConfig")? {
            let fp = tc.at("functionCallingConfig");
            let fc = tc.nested(fc, &fp);
            let mode = fc.str("mode")?.unwrap_or("AUTO").to_ascii_uppercase();
            let mut names = Vec::new();
            for (j, n) in fc.array("allowedFunctionNames")?.map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
                let n = n
                    .as_str()
                    .ok_or_else(|| wrong_type(format_args!("{fp}.allowedFunctionNames[{j}]"), "a string", n))?;
                names.push(n.to_string());
            }
            let restrict = |tools: &mut Vec<ToolDef>, names: &[String]| -> Result<(), FormatError> {
                if names.is_empty() {
                    return Ok(());
                }
                tools.retain(|t| names.contains(&t.name));
                if tools.is_empty() {
                    return Err(bad(format!("{fp}.allowedFunctionNames names no declared function")));
                }
                Ok(())
            };
            req.tool_choice = Some(match mode.as_str() {
                "AUTO" | "MODE_UNSPECIFIED" => ToolChoice::Auto,
                "NONE" => ToolChoice::None,
                "ANY" => match names.as_slice() {
                    [one] => ToolChoice::Tool { name: one.clone() },
                    _ => {
                        restrict(&mut req.tools, &names)?;
                        ToolChoice::Required
                    }
                },
                "VALIDATED" => {
                    restrict(&mut req.tools, &names)?;
                    ToolChoice::Auto
                }
                other => return Err(bad(format!("{fp}.mode {other:?} is not one of AUTO, ANY, NONE, VALIDATED"))),
            });
        }
    }

    // generationConfig
    if let Some(g) = m.object("generationConfig")? {
        let gp = m.at("generationConfig");
        parse_generation_config(m.nested(g, &gp), &mut req)?;
    }
    Ok(req)
}

/// One `contents[i]` entry → a message; `None` when it holds no parts.
fn parse_content(co: Fields<'_, '_>, book: &mut CallBook) -> Result<Option<Message>, FormatError> {
    let cp = co.path();
    let role = match co.str("role")? {
        None | Some("user") | Some("function") | Some("tool") | Some("") => Role::User,
        Some("model") => Role::Assistant,
        Some(other) => return Err(bad(format!("{cp}.role {other:?} is not one of user, model"))),
    };
    if role == Role::Assistant {
        if !book.in_model_turn {
            book.turn_start = book.calls.len();
        }
        book.in_model_turn = true;
    } else {
        book.in_model_turn = false;
    }
    let Some(parts) = co.array("parts")? else { return Ok(None) };
    let mut out = Vec::new();
    let mut lead = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        let pp = format!("{cp}.parts[{j}]");
        parse_part(co.nested(object(p, &pp)?, &pp), book, &mut out, &mut lead)?;
    }
    if !lead.is_empty() {
        lead.append(&mut out);
        out = lead;
    }
    Ok((!out.is_empty()).then_some(Message { role, content: out }))
}

/// A `thoughtSignature` → a signature-only thinking part (our redacted marker → `RedactedThinking`).
fn signature_part(sig: &str) -> Part {
    match sig.strip_prefix(REDACTED_PREFIX) {
        Some(data) => Part::RedactedThinking { data: data.to_string() },
        None => Part::Thinking { text: String::new(), signature: Some(seal(Origin::Gemini, sig)) },
    }
}

/// One part of a content → canonical parts appended to `out`.
/// Another API's reasoning that came back in a block envelope goes where that API had it:
/// before the message's first call to `lead`, which the caller puts at the start of the
/// message (before its text); on a later call, right before that call.
fn parse_part(
    po: Fields<'_, '_>,
    book: &mut CallBook,
    out: &mut Vec<Part>,
    lead: &mut Vec<Part>,
) -> Result<(), FormatError> {
    let pp = po.path();
    for key in ["executableCode", "codeExecutionResult", "videoMetadata"] {
        if po.has(key) {
            return Err(bad(format!("{} is not supported by this gateway", po.at(key))));
        }
    }
    let mut sig = po.str("thoughtSignature")?;
    if let Some(parts) = sig.map(|s| unblock(s, &po.at("thoughtSignature"))).transpose()?.flatten() {
        if out.iter().any(|p| matches!(p, Part::ToolCall { .. })) {
            out.extend(parts);
        } else {
            lead.extend(parts);
        }
        sig = None;
    }
    let thought = po.bool("thought")?.unwrap_or(false);
    if let Some(text) = po.str("text")? {
        if thought {
            if text.is_empty() && sig.is_some_and(|s| s.starts_with(REDACTED_PREFIX)) {
                out.extend(sig.map(signature_part));
            } else if !text.is_empty() || sig.is_some() {
                out.push(Part::Thinking { text: text.to_string(), signature: seal_opt(Origin::Gemini, sig) });
            }
        } else {
            out.extend(sig.map(signature_part));
            if !text.is_empty() {
                out.push(Part::text(text));
            }
        }
        return Ok(());
    }
    if let Some(fc) = po.object("functionCall")? {
        let fp = po.at("functionCall");
        let fc = po.nested(fc, &fp);
        let name = fc.str("name")?.filter(|n| !n.is_empty()).ok_or_else(|| fc.required("name"))?;
        let args = match fc.get("args") {
            None => "{}".to_string(),
            Some(a @ Value::Object(_)) => a.to_string(),
            Some(v) => return Err(fc.wrong("args", "an object", v)),
        };
        let id = match fc.str("id")?.filter(|s| !s.is_empty()) {
            Some(id) => id.to_string(),
            None => format!("call_{name}_{}", book.calls.len()),
        };
        book.calls.push((id.clone(), name.to_string(), false));
        out.push(Part::ToolCall {
            id,
            name: name.to_string(),
            arguments: args,
            signature: seal_opt(Origin::Gemini, sig),
        });
        return Ok(());
    }
    if let Some(fr) = po.object("functionResponse")? {
        out.extend(sig.map(signature_part));
        let fp = po.at("functionResponse");
        let fr = po.nested(fr, &fp);
        let name = fr.str("name")?.filter(|n| !n.is_empty()).ok_or_else(|| fr.required("name"))?;
        let given = fr.str("id")?.filter(|s| !s.is_empty());
        let call_id = book
            .resolve(given, name)
            .ok_or_else(|| bad(format!("{fp} ({name:?}) answers no earlier functionCall and has no id")))?;
        let (text, is_error) = match fr.get("response") {
            None => (String::new(), false),
            Some(Value::String(s)) => (s.clone(), false),
            Some(r @ Value::Object(o)) => match (o.len(), o.iter().next()) {
                (1, Some((k, Value::String(s)))) if matches!(k.as_str(), "content" | "output" | "result") => {
                    (s.clone(), false)
                }
                (1, Some((k, Value::String(s)))) if k == "error" => (s.clone(), true),
                _ => (r.to_string(), false),
            },
            Some(other) => (other.to_string(), false),
        };
        let mut content = vec![Part::text(text)];
        for (k, rp) in fr.array("parts")?.map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
            let rpp = format!("{fp}.parts[{k}]");
            match media_part(fr.nested(object(rp, &rpp)?, &rpp))? {
                Some(img) => content.push(img),
                None => return Err(bad(format!("{rpp} must be an inlineData or fileData image part"))),
            }
        }
        out.push(Part::ToolResult { call_id, name: Some(name.to_string()), content, is_error });
        return Ok(());
    }
    if let Some(img) = media_part(po)? {
        out.extend(sig.map(signature_part));
        out.push(img);
        return Ok(());
    }
    if let Some(s) = sig {
        out.push(signature_part(s));
        return Ok(());
    }
    Err(bad(format!("{pp} has no supported data field (text, inlineData, fileData, functionCall, functionResponse)")))
}

/// `inlineData` / `fileData` → an image part; `None` when the part has neither.
fn media_part(po: Fields<'_, '_>) -> Result<Option<Part>, FormatError> {
    if let Some(d) = po.object("inlineData")? {
        let dp = po.at("inlineData");
        let d = po.nested(d, &dp);
        let mime = d.req_str("mimeType")?;
        if !mime.starts_with("image/") {
            return Err(bad(format!(
                "{dp}.mimeType {mime:?} is not supported: only image/* inline data can be converted"
            )));
        }
        let data = d.req_str("data")?;
        return Ok(Some(Part::Image {
            source: ImageSource::Base64 { media_type: mime.to_string(), data: data.to_string() },
        }));
    }
    if let Some(f) = po.object("fileData")? {
        let fp = po.at("fileData");
        let f = po.nested(f, &fp);
        let uri = f.req_str("fileUri")?;
        match f.str("mimeType")? {
            Some(mime) if !mime.starts_with("image/") => {
                return Err(bad(format!(
                    "{fp}.mimeType {mime:?} is not supported: only image/* files can be converted"
                )))
            }
            Some(_) => {}
            None if guess_image_mime(uri).is_some() => {}
            None => return Err(bad(format!("{fp} has no image mimeType and {uri:?} does not look like an image"))),
        }
        return Ok(Some(Part::Image { source: ImageSource::Url { url: uri.to_string() } }));
    }
    Ok(None)
}

/// `functionDeclarations[j]` → a tool.
fn parse_function_decl(o: Fields<'_, '_>) -> Result<ToolDef, FormatError> {
    let name = o.str("name")?.filter(|n| !n.is_empty()).ok_or_else(|| o.required("name"))?;
    let description = o.str("description")?.map(str::to_string);
    let parameters = if let Some(s) = o.get("parametersJsonSchema") {
        if !s.is_object() {
            return Err(o.wrong("parametersJsonSchema", "an object", s));
        }
        convert_schema(s, false)
    } else if let Some(s) = o.get("parameters") {
        if !s.is_object() {
            return Err(o.wrong("parameters", "an object", s));
        }
        convert_schema(s, true)
    } else {
        json!({"type": "object", "properties": {}})
    };
    Ok(ToolDef { name: name.to_string(), description, parameters })
}

/// `generationConfig` → the canonical sampling, output format and thinking fields.
fn parse_generation_config(g: Fields<'_, '_>, req: &mut ChatRequest) -> Result<(), FormatError> {
    let gp = g.path();
    req.max_tokens = g.u32("maxOutputTokens")?;
    req.temperature = g.f64("temperature")?;
    req.top_p = g.f64("topP")?;
    match g.get("stopSequences") {
        None => {}
        Some(Value::String(s)) => req.stop = vec![s.clone()],
        Some(Value::Array(a)) => {
            for (i, s) in a.iter().enumerate() {
                let s = s.as_str().ok_or_else(|| wrong_type(format_args!("{gp}.stopSequences[{i}]"), "a string", s))?;
                req.stop.push(s.to_string());
            }
        }
        Some(_) => return Err(bad(format!("{gp}.stopSequences must be an array of strings"))),
    }
    if let Some(n) = g.i64("candidateCount")? {
        if n > 1 {
            return Err(bad(format!("{gp}.candidateCount {n} is not supported: only one candidate can be generated")));
        }
    }
    for key in ["speechConfig", "imageConfig"] {
        if g.has(key) {
            return Err(bad(format!("{} is not supported by this gateway", g.at(key))));
        }
    }
    if let Some(mods) = g.array("responseModalities")? {
        for (i, md) in mods.iter().enumerate() {
            let md =
                md.as_str().ok_or_else(|| wrong_type(format_args!("{gp}.responseModalities[{i}]"), "a string", md))?;
            if !md.eq_ignore_ascii_case("TEXT") {
                return Err(bad(format!("{gp}.responseModalities[{i}] {md:?} is not supported: only TEXT")));
            }
        }
    }
    let mime = g.str("responseMimeType")?;
    let schema = if let Some(s) = g.get("responseJsonSchema") {
        Some(convert_schema(s, false))
    } else {
        g.get("responseSchema").map(|s| convert_schema(s, true))
    };
    match (mime, schema) {
        (Some("text/x.enum"), _) => {
            return Err(bad(format!("{gp}.responseMimeType \"text/x.enum\" is not supported by this gateway")))
        }
        (Some(m), _) if !matches!(m, "application/json" | "text/plain" | "") => {
            return Err(bad(format!("{gp}.responseMimeType {m:?} is not supported (application/json or text/plain)")))
        }
        (_, Some(schema)) => {
            req.response_format = Some(ResponseFormat::JsonSchema { name: "response".into(), schema, strict: None })
        }
        (Some("application/json"), None) => req.response_format = Some(ResponseFormat::JsonObject),
        _ => {}
    }
    if let Some(tc) = g.object("thinkingConfig")? {
        let tp = g.at("thinkingConfig");
        let tc = g.nested(tc, &tp);
        let mut cfg = ThinkingConfig {
            enabled: true,
            include_thoughts: tc.bool("includeThoughts")?.unwrap_or(false),
            ..Default::default()
        };
        match tc.i64("thinkingBudget")? {
            None | Some(-1) => {}
            Some(0) => cfg.enabled = false,
            Some(n) => {
                cfg.budget_tokens = Some(u32::try_from(n).map_err(|_| {
                    bad(format!(
                        "{tp}.thinkingBudget {n} is out of range (-1 for dynamic, 0 to disable, or a token count)"
                    ))
                })?)
            }
        }
        if let Some(level) = tc.str("thinkingLevel")? {
            let level = level.to_ascii_lowercase();
            if !matches!(level.as_str(), "" | "thinking_level_unspecified") {
                cfg.effort = Some(level);
            }
        }
        req.thinking = Some(cfg);
    }
    Ok(())
}
