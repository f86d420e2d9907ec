//! The embedded default (no `[[channels]]`): the built-in mock answers every model name the
//! CLIs use by default, in every client format, lists them in `/v1/models`, and bills them
//! in token mode; with a real channel configured it is off unless turned on. The mock's
//! structured answers: JSON valid against the requested schema, and tool calls (forced, or
//! named by the user) with arguments valid against the tool's schema, in all four formats,
//! whole and streamed (each stream checked against its API's grammar).

mod common;

use ailurus::bridge::BridgeConfig;
use ailurus::config::Config;
use ailurus::formats::Format;
use ailurus::quota::account::QuotaStore;
use ailurus::quota::tokens::TokenStore;
use common::http::{auth_header, bridge, native};
use common::{funded, usage_records, Stack};
#[path = "support/grammar/mod.rs"]
mod grammar;
use grammar::ValidateStream;
use serde_json::{json, Value};
use std::time::Duration;

/// Longest any single wait may take.
const WAIT: Duration = Duration::from_secs(30);

/// The model names the CLIs use by default.
const CLI_MODELS: [&str; 3] = ["claude-sonnet-4-5", "gpt-5-codex", "gemini-2.5-pro"];

const FORMATS: [Format; 4] =
    [Format::AnthropicMessages, Format::OpenAiChat, Format::OpenAiResponses, Format::GeminiGenerate];

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).no_proxy().build().expect("http client")
}

/// A nats-server with the streams, one worker on `toml`, an in-process bridge, and the
/// token and quota stores.
async fn gateway(toml: &str) -> (Stack, String, TokenStore, QuotaStore) {
    let config: Config = toml::from_str(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    config.validate().unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let mut stack = Stack::server_only().await;
    stack.apply_streams().await;
    stack.add_worker(config).await;
    let base = bridge(stack.client.clone(), BridgeConfig::default(), stack.shutdown.clone()).await;
    let js = async_nats::jetstream::new(stack.client.clone());
    let tokens = TokenStore::open(&js).await.expect("tokens");
    let quota = QuotaStore::open(stack.client.clone()).await.expect("quota");
    (stack, base, tokens, quota)
}

/// POST `body` to `path` as `format`'s client; status and body.
async fn post(base: &str, token: &str, format: Format, path: &str, body: &Value) -> (u16, Value) {
    let (k, v) = auth_header(format, token);
    let resp = http()
        .post(format!("{base}{path}"))
        .header(k, v)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The answer's text in `format`'s whole-body shape.
fn answer_text(format: Format, v: &Value) -> Option<String> {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    match format {
        Format::AnthropicMessages => s("/content/0/text"),
        Format::OpenAiChat => s("/choices/0/message/content"),
        Format::GeminiGenerate => s("/candidates/0/content/parts/0/text"),
        Format::OpenAiResponses => v["output"]
            .as_array()?
            .iter()
            .filter(|i| i["type"] == "message")
            .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
            .find(|c| c["type"] == "output_text")
            .and_then(|c| c["text"].as_str().map(str::to_string)),
    }
}

/// The answer's first tool call (name, arguments) in `format`'s whole-body shape.
fn tool_call(format: Format, v: &Value) -> Option<(String, Value)> {
    let parse = |a: &Value| a.as_str().and_then(|t| serde_json::from_str(t).ok());
    match format {
        Format::AnthropicMessages => {
            let c = v["content"].as_array()?.iter().find(|c| c["type"] == "tool_use")?;
            Some((c["name"].as_str()?.to_string(), c["input"].clone()))
        }
        Format::OpenAiChat => {
            let f = v.pointer("/choices/0/message/tool_calls/0/function")?;
            Some((f["name"].as_str()?.to_string(), parse(&f["arguments"])?))
        }
        Format::OpenAiResponses => {
            let c = v["output"].as_array()?.iter().find(|c| c["type"] == "function_call")?;
            Some((c["name"].as_str()?.to_string(), parse(&c["arguments"])?))
        }
        Format::GeminiGenerate => {
            let c = v.pointer("/candidates/0/content/parts")?.as_array()?.iter().find_map(|p| p.get("functionCall"))?;
            Some((c["name"].as_str()?.to_string(), c["args"].clone()))
        }
    }
}

/// Whether `v` satisfies `schema` (the subset these tests use: type, properties, required,
/// enum, items, minItems, minimum, anyOf, `$ref` to `#/$defs/*`).
fn check(root: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let target = root.pointer(r.trim_start_matches('#')).ok_or(format!("{at}: dangling {r}"))?;
        return check(root, target, v, at);
    }
    if let Some(branches) = schema["anyOf"].as_array() {
        return branches
            .iter()
            .any(|b| check(root, b, v, at).is_ok())
            .then_some(())
            .ok_or(format!("{at}: {v} matches no anyOf branch"));
    }
    if let Some(e) = schema["enum"].as_array() {
        if !e.contains(v) {
            return Err(format!("{at}: {v} not in {e:?}"));
        }
    }
    let ty = schema["type"].as_str().map(str::to_lowercase);
    let ok = match ty.as_deref() {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some("null") => v.is_null(),
        _ => true,
    };
    if !ok {
        return Err(format!("{at}: {v} is not {ty:?}"));
    }
    if let Some(min) = schema["minimum"].as_f64() {
        if v.as_f64().is_some_and(|n| n < min) {
            return Err(format!("{at}: {v} < {min}"));
        }
    }
    for key in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if v.get(key).is_none() {
            return Err(format!("{at}: required {key:?} missing from {v}"));
        }
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), v.as_object()) {
        for (k, sub) in props {
            if let Some(x) = obj.get(k) {
                check(root, sub, x, &format!("{at}.{k}"))?;
            }
        }
    }
    if let Some(items) = v.as_array() {
        if items.len() < schema["minItems"].as_u64().unwrap_or(0) as usize {
            return Err(format!("{at}: fewer items than minItems"));
        }
        for (i, x) in items.iter().enumerate() {
            check(root, &schema["items"], x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

fn satisfies(schema: &Value, v: &Value) -> Result<(), String> {
    check(schema, schema, v, "$")
}

#[tokio::test]
async fn the_default_worker_answers_and_bills_the_clis_default_models_in_every_format() {
    // The default config: token mode, no channels.
    let (stack, base, tokens, quota) = gateway("[worker]\nrequest_timeout_ms = 20000\n").await;
    let (user, token) = funded(&tokens, &quota, "cli", 5_000_000).await;
    let mut asked = 0;
    for format in FORMATS {
        for model in CLI_MODELS {
            for stream in [false, true] {
                let (path, body) = native(format, model, stream, "hello from a CLI");
                let (k, v) = auth_header(format, &token);
                let resp = http()
                    .post(format!("{base}{path}"))
                    .header(k, v)
                    .header("anthropic-version", "2023-06-01")
                    .json(&body)
                    .send()
                    .await
                    .expect("post");
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.expect("body");
                let text = String::from_utf8_lossy(&bytes);
                assert_eq!(status, 200, "{format:?} {model} stream={stream}: {text}");
                if stream {
                    format.validate_stream(&bytes).unwrap_or_else(|e| panic!("{format:?} {model}: {e}\n{text}"));
                    assert!(text.contains("Mock answer"), "{format:?} {model}: {text}");
                } else {
                    let v: Value = serde_json::from_slice(&bytes).expect("json");
                    let answer = answer_text(format, &v).unwrap_or_default();
                    assert!(answer.starts_with("Mock answer to \"hello from a CLI\""), "{format:?} {model}: {v}");
                }
                asked += 1;
            }
        }
    }
    let recs = usage_records(&stack.client, &user, asked, WAIT).await;
    assert_eq!(recs.len(), asked, "one ledger record per request");
    for r in &recs {
        assert!(r.cost_usd > 0.0 && r.quota > 0, "billed at the mock's demo price: {r:?}");
        assert_eq!(r.channel, "mock", "{r:?}");
        assert!(CLI_MODELS.contains(&r.model.as_str()), "{r:?}");
    }
    let used = common::quiet_balance(&quota, &user).await.used;
    assert_eq!(used, recs.iter().map(|r| r.quota).sum::<i64>(), "the balance paid what the ledger says");

    // `/v1/models` in each shape lists them.
    let listings = [
        ("/v1/models", Some(("anthropic-version", "2023-06-01")), Format::AnthropicMessages, "/data", "id"),
        ("/v1/models", None, Format::OpenAiChat, "/data", "id"),
        ("/v1beta/models", None, Format::GeminiGenerate, "/models", "baseModelId"),
    ];
    for (path, extra, format, list, key) in listings {
        let (k, v) = auth_header(format, &token);
        let mut req = http().get(format!("{base}{path}")).header(k, v);
        if let Some((hk, hv)) = extra {
            req = req.header(hk, hv);
        }
        let resp = req.send().await.expect("models");
        assert_eq!(resp.status().as_u16(), 200, "{path} {format:?}");
        let v: Value = resp.json().await.expect("json");
        let ids: Vec<&str> =
            v.pointer(list).and_then(Value::as_array).into_iter().flatten().filter_map(|m| m[key].as_str()).collect();
        for model in CLI_MODELS.iter().chain(&["gemini-2.5-flash", "gpt-5", "claude-haiku-4-5", "mock"]) {
            assert!(ids.contains(model), "{path} {format:?} lists {model}: {ids:?}");
        }
    }
}

#[tokio::test]
async fn with_a_real_channel_the_builtin_mock_is_off_unless_turned_on() {
    let channel = "[[channels]]\nname = \"real\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\
                   api_key_env = [\"MOCK_DEFAULT_REAL_KEY\"]\nmodels = [\"gpt-real\"]\n";
    std::env::set_var("MOCK_DEFAULT_REAL_KEY", "sk-unused");
    let cases = [
        // (routing, model, status)
        ("", "mock", 404),
        ("", "claude-sonnet-4-5", 404),
        ("[routing]\nbuiltin_mock = false\n", "mock", 404),
        ("[routing]\nbuiltin_mock = true\n", "mock", 200),
        ("[routing]\nbuiltin_mock = true\n", "mock-c3", 200),
        // Beside a real channel it serves `mock*` only.
        ("[routing]\nbuiltin_mock = true\n", "claude-sonnet-4-5", 404),
    ];
    for (routing, model, want) in cases {
        let toml = format!("[auth]\nmode = \"open\"\n{routing}{channel}");
        let (_stack, base, _, _) = gateway(&toml).await;
        let (path, body) = native(Format::OpenAiChat, model, false, "hi");
        let (status, v) = post(&base, "unused", Format::OpenAiChat, &path, &body).await;
        assert_eq!(status, want, "{routing:?} {model}: {v}");
        if want == 404 {
            assert!(v.to_string().contains("no channel serves model"), "{v}");
        }
    }
}

/// A request in `format` whose answer must be JSON valid against `schema`.
fn structured(format: Format, schema: &Value, gemini_json_schema: bool) -> (String, Value) {
    let (path, mut body) = native(format, "gemini-2.5-flash-lite", false, "classify this request");
    match format {
        Format::AnthropicMessages => body["output_format"] = json!({"type": "json_schema", "schema": schema}),
        Format::OpenAiChat => {
            body["response_format"] =
                json!({"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": true}})
        }
        Format::OpenAiResponses => {
            body["text"] = json!({"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": true}})
        }
        Format::GeminiGenerate => {
            let key = if gemini_json_schema { "responseJsonSchema" } else { "responseSchema" };
            body["generationConfig"]["responseMimeType"] = json!("application/json");
            body["generationConfig"][key] = schema.clone();
        }
    }
    (path, body)
}

#[tokio::test]
async fn structured_output_is_json_valid_against_the_schema_in_every_format() {
    let (_stack, base, _, _) = gateway("[auth]\nmode = \"open\"\n").await;
    // Gemini CLI's classifier schema (upper-case types, as it sends them), and a richer one.
    let classifier = json!({"type": "OBJECT", "properties": {
        "reasoning": {"type": "STRING"},
        "model_choice": {"type": "STRING", "enum": ["flash", "pro"]}},
        "required": ["reasoning", "model_choice"]});
    let rich = json!({"type": "object", "additionalProperties": false,
        "required": ["title", "count", "score", "done", "tags", "kind", "owner", "maybe"],
        "properties": {
            "title": {"type": "string"},
            "count": {"type": "integer", "minimum": 2},
            "score": {"type": "number"},
            "done": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "owner": {"$ref": "#/$defs/person"},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer"}]}},
        "$defs": {"person": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}}});
    let mut cases: Vec<(Format, Value, bool)> = Vec::new();
    for format in FORMATS {
        if format != Format::GeminiGenerate {
            // Gemini's `responseSchema` has no `$ref` or `anyOf` with null; only the others.
            cases.push((format, rich.clone(), false));
        }
        cases.push((format, classifier.clone(), false));
    }
    cases.push((Format::GeminiGenerate, classifier.clone(), true));
    cases.push((Format::GeminiGenerate, rich.clone(), true));
    for (format, schema, json_schema) in cases {
        let (path, body) = structured(format, &schema, json_schema);
        let (status, v) = post(&base, "unused", format, &path, &body).await;
        assert_eq!(status, 200, "{format:?}: {v}");
        let text = answer_text(format, &v).unwrap_or_else(|| panic!("{format:?}: no text in {v}"));
        let answer: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{format:?}: not JSON ({e}): {text}"));
        satisfies(&schema, &answer).unwrap_or_else(|e| panic!("{format:?} {schema}: {e}"));
    }
}

/// A request in `format` offering `get_weather` and `search`, forcing `force` when given.
fn with_tools(format: Format, prompt: &str, force: Option<&str>) -> (String, Value) {
    let params = json!({"type": "object", "required": ["city", "days", "units"], "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1},
        "units": {"type": "string", "enum": ["celsius", "fahrenheit"]}}});
    let search = json!({"type": "object", "required": ["query"], "properties": {"query": {"type": "string"}}});
    let (path, mut body) = native(format, "claude-haiku-4-5", false, prompt);
    match format {
        Format::AnthropicMessages => {
            body["tools"] = json!([{"name": "get_weather", "input_schema": params},
                                   {"name": "search", "input_schema": search}]);
            if let Some(name) = force {
                body["tool_choice"] = json!({"type": "tool", "name": name});
            }
        }
        Format::OpenAiChat => {
            body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": params}},
                                   {"type": "function", "function": {"name": "search", "parameters": search}}]);
            if let Some(name) = force {
                body["tool_choice"] = json!({"type": "function", "function": {"name": name}});
            }
        }
        Format::OpenAiResponses => {
            body["tools"] = json!([{"type": "function", "name": "get_weather", "parameters": params},
                                   {"type": "function", "name": "search", "parameters": search}]);
            if let Some(name) = force {
                body["tool_choice"] = json!({"type": "function", "name": name});
            }
        }
        Format::GeminiGenerate => {
            body["tools"] = json!([{"functionDeclarations": [
                {"name": "get_weather", "parametersJsonSchema": params},
                {"name": "search", "parametersJsonSchema": search}]}]);
            if let Some(name) = force {
                body["toolConfig"] = json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}});
            }
        }
    }
    (path, body)
}

#[tokio::test]
async fn forced_or_named_tools_are_called_with_schema_valid_arguments() {
    let (_stack, base, _, _) = gateway("[auth]\nmode = \"open\"\n").await;
    let weather = json!({"type": "object", "required": ["city", "days", "units"], "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1},
        "units": {"type": "string", "enum": ["celsius", "fahrenheit"]}}});
    for format in FORMATS {
        // (prompt, forced tool, the tool called: None for prose)
        let cases = [
            ("what is the weather in Paris?", Some("get_weather"), Some("get_weather")),
            ("please use get_weather for Paris", None, Some("get_weather")),
            ("hello there", None, None),
        ];
        for (prompt, force, want) in cases {
            let (path, body) = with_tools(format, prompt, force);
            let (status, v) = post(&base, "unused", format, &path, &body).await;
            assert_eq!(status, 200, "{format:?} {prompt}: {v}");
            match want {
                Some(name) => {
                    let (called, args) =
                        tool_call(format, &v).unwrap_or_else(|| panic!("{format:?} {prompt}: no tool call in {v}"));
                    assert_eq!(called, name, "{format:?} {prompt}");
                    satisfies(&weather, &args).unwrap_or_else(|e| panic!("{format:?} {prompt}: {e}"));
                }
                None => {
                    assert!(tool_call(format, &v).is_none(), "{format:?} {prompt}: {v}");
                    assert!(answer_text(format, &v).is_some_and(|t| t.starts_with("Mock answer")), "{v}");
                }
            }
        }
    }
}

#[tokio::test]
async fn streamed_tool_calls_and_json_answers_keep_each_stream_grammar() {
    let (_stack, base, _, _) = gateway("[auth]\nmode = \"open\"\n").await;
    let schema = json!({"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}});
    for format in FORMATS {
        let cases = [
            (with_tools(format, "weather?", Some("get_weather")), "get_weather"),
            (structured(format, &schema, true), "ok"),
        ];
        for ((path, mut body), want) in cases {
            let path = if format == Format::GeminiGenerate {
                path.replace(":generateContent", ":streamGenerateContent?alt=sse")
            } else {
                body["stream"] = json!(true);
                path
            };
            let resp = http().post(format!("{base}{path}")).json(&body).send().await.expect("post");
            assert_eq!(resp.status().as_u16(), 200, "{format:?} {want}");
            let bytes = resp.bytes().await.expect("body");
            let text = String::from_utf8_lossy(&bytes);
            format.validate_stream(&bytes).unwrap_or_else(|e| panic!("{format:?} {want}: {e}\n{text}"));
            assert!(text.contains(want), "{format:?}: {text}");
        }
    }
}
