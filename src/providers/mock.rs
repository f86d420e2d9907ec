//! The built-in `mock` provider: a deterministic answer derived from the prompt, with
//! realistic token counts. Behaviour is chosen by the model name, as dash-separated
//! options after `mock` (path-safe, so it also works in Gemini URLs):
//!
//! | option | effect |
//! |---|---|
//! | `slow` | 200 ms between chunks |
//! | `error` | fails with upstream 500 before the first byte |
//! | `flaky` | every other call (per process) fails with 503 before the first byte |
//! | `midfail` | fails after two chunks |
//! | `hang` | sends one chunk, then never finishes |
//! | `c<N>` | N chunks (default 8, at most 100,000) |
//! | `d<MS>` | MS milliseconds between chunks |
//! | `f<MS>` | MS milliseconds before the first chunk |
//!
//! Example: `mock-c100-d5` streams 100 chunks 5 ms apart; `mock-slow` is `mock-d200`.
//! Any other name (`claude-sonnet-4-5`, `gpt-5-codex`, `gemini-2.5-pro`: the mock serves
//! every name when no channel is configured) gets the default behaviour.
//!
//! The answer is prose, except: when the request asks for JSON with a schema
//! (`response_format`), it is a minimal JSON instance of the schema (any JSON object: an
//! object holding the prose); when `tool_choice` forces a tool, or the user's last message
//! asks for an offered tool by name ("use get_weather", "the search tool"), it is one call
//! of that tool with arguments valid against its schema (see [`super::mock_schema`]).
//! Every answer is deterministic.

use super::call::EventStream;
use super::error::{ProviderError, ProviderErrorKind};
use super::mock_schema;
use crate::protocol::canonical::StreamEvent;
use crate::protocol::canonical::{estimate_tokens, ChatRequest, FinishReason, ResponseFormat, Usage};
use futures::stream::{self, StreamExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Words the mock draws its answers from.
const WORDS: [&str; 32] = [
    "the", "gateway", "routes", "every", "request", "through", "NATS", "and", "streams", "tokens", "back", "quickly",
    "while", "quota", "stays", "exact", "workers", "scale", "out", "by", "joining", "a", "queue", "group", "so",
    "nothing", "is", "lost", "when", "one", "fails", "today",
];

/// Model names the CLIs use by default (Claude Code's sonnet / opus / haiku, Codex CLI's,
/// Gemini CLI's), listed by `/v1/models` when the built-in mock serves every name.
pub const CLIENT_DEFAULT_MODELS: &[&str] = &[
    "claude-sonnet-4-5",
    "claude-opus-4-5",
    "claude-haiku-4-5",
    "gpt-5-codex",
    "gpt-5",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
];

/// Mock names `/v1/models` lists for a mock channel.
pub const LISTED_MODELS: &[&str] = &["mock", "mock-slow", "mock-flaky", "mock-error"];

/// Options parsed from a mock model name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockOptions {
    /// How many text chunks to send.
    pub chunks: u32,
    /// Pause between chunks.
    pub delay: Duration,
    /// Pause before the first chunk.
    pub first_delay: Duration,
    /// Fail with 500 before the first byte.
    pub error: bool,
    /// Fail every other call with 503.
    pub flaky: bool,
    /// Fail after two chunks.
    pub midfail: bool,
    /// Never finish after the first chunk.
    pub hang: bool,
}

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            chunks: 8,
            delay: Duration::ZERO,
            first_delay: Duration::ZERO,
            error: false,
            flaky: false,
            midfail: false,
            hang: false,
        }
    }
}

impl MockOptions {
    /// The options of any model name: `mock[-opt]*` parsed, any other name the defaults.
    pub fn for_model(model: &str) -> Result<Self, String> {
        if model.split('-').next() == Some("mock") {
            Self::parse(model)
        } else {
            Ok(Self::default())
        }
    }

    /// Parse `mock[-opt]*`; unknown options are an error naming them.
    pub fn parse(model: &str) -> Result<Self, String> {
        let mut opts = Self::default();
        let mut parts = model.split('-');
        if parts.next() != Some("mock") {
            return Err(format!("{model:?} is not a mock model (it must start with \"mock\")"));
        }
        for part in parts {
            let num = |prefix: char| -> Option<u64> { part.strip_prefix(prefix).and_then(|n| n.parse().ok()) };
            match part {
                "slow" => opts.delay = Duration::from_millis(200),
                "error" => opts.error = true,
                "flaky" => opts.flaky = true,
                "midfail" => opts.midfail = true,
                "hang" => opts.hang = true,
                // Plain names such as `mock-fast` or `mock-large` are aliases of the default.
                p if p.chars().all(|c| c.is_ascii_alphabetic()) => {}
                _ => {
                    if let Some(n) = num('c') {
                        opts.chunks = n.clamp(1, 100_000) as u32;
                    } else if let Some(ms) = num('d') {
                        opts.delay = Duration::from_millis(ms.min(60_000));
                    } else if let Some(ms) = num('f') {
                        opts.first_delay = Duration::from_millis(ms.min(600_000));
                    } else {
                        return Err(format!("unknown mock option {part:?} in model {model:?}"));
                    }
                }
            }
        }
        Ok(opts)
    }
}

/// The mock provider. Cheap to clone; the flaky counter is shared.
#[derive(Debug, Clone, Default)]
pub struct MockProvider {
    /// Calls seen, for `flaky`.
    calls: Arc<AtomicU64>,
}

/// FNV-1a, for a stable seed from the prompt.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The deterministic answer for a prompt, split into `chunks` pieces.
pub fn answer_chunks(prompt: &str, chunks: u32) -> Vec<String> {
    let excerpt: String = prompt.split_whitespace().take(8).collect::<Vec<_>>().join(" ");
    let mut out = Vec::with_capacity(chunks as usize);
    out.push(format!("Mock answer to \"{excerpt}\":"));
    let mut seed = fnv1a(prompt);
    for _ in 1..chunks {
        let mut piece = String::new();
        for _ in 0..3 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            piece.push(' ');
            piece.push_str(WORDS[(seed >> 59) as usize % WORDS.len()]);
        }
        out.push(piece);
    }
    if let Some(last) = out.last_mut() {
        last.push('.');
    }
    out
}

impl MockProvider {
    /// Start a mock answer.
    pub fn stream(&self, req: &ChatRequest, model: &str) -> Result<EventStream, ProviderError> {
        let opts =
            MockOptions::for_model(model).map_err(|m| ProviderError::new(ProviderErrorKind::InvalidRequest, m))?;
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        if opts.error {
            return Err(ProviderError::new(ProviderErrorKind::Status(500), "mock-error: simulated upstream failure"));
        }
        if opts.flaky && call.is_multiple_of(2) {
            let mut e = ProviderError::new(ProviderErrorKind::Status(503), "mock-flaky: simulated overload");
            e.retry_after = Some(Duration::from_secs(1));
            return Err(e);
        }
        let prompt = req.last_user_text().unwrap_or_default();
        if let Some(tool) = mock_schema::chosen_tool(req) {
            return Ok(tool_call(req, &prompt, &tool, opts));
        }
        let mut pieces = match &req.response_format {
            Some(ResponseFormat::JsonSchema { schema, .. }) => {
                split_even(&mock_schema::instance(schema).to_string(), opts.chunks)
            }
            Some(ResponseFormat::JsonObject) => {
                let answer = answer_chunks(&prompt, opts.chunks).concat();
                split_even(&serde_json::json!({ "answer": answer }).to_string(), opts.chunks)
            }
            Some(ResponseFormat::Text) | None => answer_chunks(&prompt, opts.chunks),
        };
        let mut finish = FinishReason::Stop;
        if let Some(max) = req.max_tokens {
            // Cut the answer where its token count would pass max_tokens.
            let mut total = 0u64;
            if let Some(cut) = pieces.iter().position(|p| {
                total += estimate_tokens(p);
                total > max as u64
            }) {
                pieces.truncate(cut.max(1));
                finish = FinishReason::Length;
            }
        }
        let usage = Usage {
            input_tokens: req.estimate_prompt_tokens(),
            output_tokens: pieces.iter().map(|p| estimate_tokens(p)).sum(),
            ..Default::default()
        };
        let events = pieces.into_iter().enumerate().map(move |(i, text)| {
            let pause = if i == 0 { opts.first_delay } else { opts.delay };
            (pause, i, text)
        });
        let text_stream = stream::iter(events).then(move |(pause, i, text)| async move {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            if opts.midfail && i == 2 {
                return Err(ProviderError::new(
                    ProviderErrorKind::Protocol,
                    "mock-midfail: connection reset mid-stream",
                ));
            }
            if opts.hang && i == 1 {
                futures::future::pending::<()>().await;
            }
            Ok(StreamEvent::Text(text))
        });
        // Stop after the first error, as a real connection would.
        let mut failed = false;
        let text_stream = text_stream.take_while(move |item| {
            let go = !failed;
            failed |= item.is_err();
            futures::future::ready(go)
        });
        let tail = stream::iter([Ok(StreamEvent::Usage(usage)), Ok(StreamEvent::Finish(finish))]);
        Ok(text_stream.chain(tail).boxed())
    }
}

/// `text` in at most `n` pieces of about equal length, split on character boundaries.
fn split_even(text: &str, n: u32) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(n.max(1) as usize).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

/// One call of `tool`, with arguments generated from its schema, after the first pause.
fn tool_call(
    req: &ChatRequest,
    prompt: &str,
    tool: &crate::protocol::canonical::ToolDef,
    opts: MockOptions,
) -> EventStream {
    let args = match mock_schema::instance(&tool.parameters) {
        v @ serde_json::Value::Object(_) => v.to_string(),
        _ => "{}".to_string(),
    };
    let id = format!("call_mock_{:016x}", fnv1a(&format!("{}\n{prompt}", tool.name)));
    let usage = Usage {
        input_tokens: req.estimate_prompt_tokens(),
        output_tokens: estimate_tokens(&tool.name) + estimate_tokens(&args),
        ..Default::default()
    };
    let first = opts.first_delay;
    let events = vec![
        Ok(StreamEvent::ToolCallStart { index: 0, id, name: tool.name.clone(), signature: None }),
        Ok(StreamEvent::ToolCallArgs { index: 0, delta: args }),
        Ok(StreamEvent::Usage(usage)),
        Ok(StreamEvent::Finish(FinishReason::ToolUse)),
    ];
    let pause = async move {
        if !first.is_zero() {
            tokio::time::sleep(first).await;
        }
    };
    stream::once(pause).flat_map(move |()| stream::iter(events.clone())).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_table() {
        let d = MockOptions::default();
        assert_eq!(MockOptions::parse("mock").unwrap(), d);
        assert_eq!(MockOptions::parse("mock-fast").unwrap(), d);
        assert_eq!(MockOptions::parse("mock-slow").unwrap().delay, Duration::from_millis(200));
        let o = MockOptions::parse("mock-c100-d5-f20").unwrap();
        assert_eq!((o.chunks, o.delay, o.first_delay), (100, Duration::from_millis(5), Duration::from_millis(20)));
        assert!(MockOptions::parse("mock-error").unwrap().error);
        assert!(MockOptions::parse("mock-c0").unwrap().chunks == 1);
        assert!(MockOptions::parse("mock-x9").is_err());
        assert!(MockOptions::parse("gpt-4o").is_err());
        // Any other name is the default mock; mock names keep their options.
        for name in ["claude-sonnet-4-5", "gpt-5-codex", "gemini-2.5-pro", "mockingbird", "m"] {
            assert_eq!(MockOptions::for_model(name).unwrap(), d, "{name}");
        }
        assert_eq!(MockOptions::for_model("mock-c3").unwrap().chunks, 3);
        assert!(MockOptions::for_model("mock-x9").is_err());
    }

    /// Every event of a mock answer to `req` on `model`.
    async fn events(req: &ChatRequest, model: &str) -> Vec<StreamEvent> {
        let stream = MockProvider::default().stream(req, model).unwrap();
        stream.map(|e| e.unwrap()).collect().await
    }

    #[tokio::test]
    async fn structured_answers_and_tool_calls() {
        use crate::protocol::canonical::{Message, Role, ToolChoice, ToolDef};
        let schema = serde_json::json!({"type": "object", "required": ["kind", "n"],
            "properties": {"kind": {"enum": ["x", "y"]}, "n": {"type": "integer"}}});
        let mut req = ChatRequest {
            messages: vec![Message::text(Role::User, "classify")],
            response_format: Some(ResponseFormat::JsonSchema {
                name: "r".into(),
                schema: schema.clone(),
                strict: None,
            }),
            ..Default::default()
        };
        for model in ["mock", "mock-c3", "gemini-2.5-flash-lite"] {
            let got = events(&req, model).await;
            let text: String =
                got.iter().filter_map(|e| if let StreamEvent::Text(t) = e { Some(t.as_str()) } else { None }).collect();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&text).unwrap(),
                serde_json::json!({"kind": "x", "n": 0}),
                "{model}"
            );
            assert_eq!(got.last(), Some(&StreamEvent::Finish(FinishReason::Stop)));
        }
        req.response_format = Some(ResponseFormat::JsonObject);
        let got = events(&req, "mock").await;
        let text: String =
            got.iter().filter_map(|e| if let StreamEvent::Text(t) = e { Some(t.as_str()) } else { None }).collect();
        assert!(serde_json::from_str::<serde_json::Value>(&text).unwrap()["answer"].is_string());
        req.tools = vec![ToolDef { name: "lookup".into(), description: None, parameters: schema }];
        req.tool_choice = Some(ToolChoice::Tool { name: "lookup".into() });
        let got = events(&req, "claude-sonnet-4-5").await;
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(matches!(&got[0], StreamEvent::ToolCallStart { index: 0, name, .. } if name == "lookup"));
        assert_eq!(got[1], StreamEvent::ToolCallArgs { index: 0, delta: r#"{"kind":"x","n":0}"#.into() });
        assert_eq!(got[3], StreamEvent::Finish(FinishReason::ToolUse));
        assert_eq!(got, events(&req, "claude-sonnet-4-5").await, "deterministic");
    }

    #[test]
    fn answers_are_deterministic_and_prompt_dependent() {
        let a = answer_chunks("hello there", 5);
        assert_eq!(a, answer_chunks("hello there", 5));
        assert_ne!(a, answer_chunks("something else", 5));
        assert_eq!(a.len(), 5);
        assert!(a[0].contains("hello there"));
    }
}
