//! The canonical chat model: what every client format converts into and every provider
//! speaks. Providers never see another API's wire format.
//!
//! Opaque provider data (Anthropic thinking `signature`, Responses `encrypted_content`,
//! Gemini `thoughtSignature`) is carried in `signature` / `data` fields sealed with the API
//! that issued it (`ailurus.<origin>.<raw>`, see `formats::reasoning`), so it survives a
//! round trip through a client of another format and reaches only the upstream that can
//! verify it.

use super::seed::LLMNATSRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who produced a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions (system / developer) that appear inside the conversation.
    System,
    /// The human or calling program; also carries tool results.
    User,
    /// The model; carries its text, thinking and tool calls.
    Assistant,
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageSource {
    /// Inline bytes, base64 encoded.
    Base64 {
        /// MIME type, e.g. `image/png`.
        media_type: String,
        /// Base64 text (no `data:` prefix).
        data: String,
    },
    /// A URL the upstream fetches (may be a `data:` URL).
    Url {
        /// The URL.
        url: String,
    },
}

/// A piece of message content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// Plain text.
    Text {
        /// The text.
        text: String,
    },
    /// An image (user turns and tool results).
    Image {
        /// Where the bytes are.
        source: ImageSource,
    },
    /// The model asks for a tool (assistant turns).
    ToolCall {
        /// Call id, echoed by the result (`toolu_…`, `call_…`; made up for Gemini).
        id: String,
        /// Tool name.
        name: String,
        /// Arguments as JSON text (an object).
        arguments: String,
        /// Gemini `thoughtSignature` attached to the call, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// The result of a tool call (user turns).
    ToolResult {
        /// The id of the call this answers.
        call_id: String,
        /// Tool name, when the format carries it (Gemini needs it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Result content: text and images.
        content: Vec<Part>,
        /// Whether the tool failed.
        #[serde(default)]
        is_error: bool,
    },
    /// Visible reasoning (Anthropic `thinking`, Gemini `thought`, Responses reasoning summary).
    Thinking {
        /// The reasoning text (may be empty when only a signature exists).
        text: String,
        /// Opaque signature that must be sent back unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Reasoning the client cannot read (Anthropic `redacted_thinking`, Responses
    /// `encrypted_content`); sent back unchanged.
    RedactedThinking {
        /// Opaque data.
        data: String,
    },
}

impl Part {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Part::Text { text: text.into() }
    }
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// What was said, in order.
    pub content: Vec<Part>,
}

impl Message {
    /// A message holding one text part.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Self { role, content: vec![Part::text(text)] }
    }

    /// All text parts joined (tool results' text included; for estimates and chat sync).
    pub fn joined_text(&self) -> String {
        let mut out = String::new();
        append_text(&self.content, &mut out);
        out
    }
}

fn append_text(parts: &[Part], out: &mut String) {
    for part in parts {
        match part {
            Part::Text { text } | Part::Thinking { text, .. } => out.push_str(text),
            Part::ToolCall { name, arguments, .. } => {
                out.push_str(name);
                out.push_str(arguments);
            }
            Part::ToolResult { content, .. } => append_text(content, out),
            Part::Image { .. } | Part::RedactedThinking { .. } => {}
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    /// Name the model calls it by.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments (an object schema).
    pub parameters: Value,
}

/// How the model may use tools.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// No tool calls.
    None,
    /// At least one tool call, any tool.
    Required,
    /// This tool.
    Tool {
        /// Its name.
        name: String,
    },
}

/// Extended thinking / reasoning settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ThinkingConfig {
    /// Whether thinking is on.
    pub enabled: bool,
    /// Token budget (Anthropic `budget_tokens`, Gemini `thinkingBudget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u32>,
    /// Effort (`low`, `medium`, `high`; Responses `reasoning.effort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// Whether a summary / visible thoughts are wanted (Responses `reasoning.summary`,
    /// Gemini `includeThoughts`).
    #[serde(default)]
    pub include_thoughts: bool,
}

/// Structured output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// Schema name (OpenAI requires one; made up when absent).
        name: String,
        /// The JSON Schema.
        schema: Value,
        /// OpenAI `strict`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

/// A provider-neutral chat request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatRequest {
    /// Model as the caller named it (the router maps it per channel).
    pub model: String,
    /// Top-level instructions (Anthropic `system`, Responses `instructions`, Gemini
    /// `systemInstruction`, leading OpenAI system/developer messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The conversation, oldest first. System messages in the middle stay in place as
    /// `Role::System`.
    pub messages: Vec<Message>,
    /// Upper bound on output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Whether the caller wants the answer streamed.
    pub stream: bool,
    /// Tools offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDef>,
    /// How tools may be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether several tool calls may come in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Extended thinking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingConfig>,
    /// Structured output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// End-user id for the upstream's abuse tracking (OpenAI `user`, Anthropic
    /// `metadata.user_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Why an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end of turn.
    Stop,
    /// Hit `max_tokens`.
    Length,
    /// The model asked for a tool.
    ToolUse,
    /// The upstream filtered the content.
    ContentFilter,
    /// A stop sequence matched.
    StopSequence,
}

impl FinishReason {
    /// The seed's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolUse => "tool_use",
            Self::ContentFilter => "content_filter",
            Self::StopSequence => "stop_sequence",
        }
    }
}

/// Token usage of one request, by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens not served from or written to cache.
    pub input_tokens: u64,
    /// Completion tokens (reasoning included).
    pub output_tokens: u64,
    /// Prompt tokens read from the upstream's cache.
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the upstream's cache.
    pub cache_write_tokens: u64,
    /// Of `output_tokens`, how many were reasoning.
    pub reasoning_tokens: u64,
    /// `true` when counted locally because the upstream reported nothing.
    pub estimated: bool,
}

impl Usage {
    /// All prompt tokens: uncached + cache read + cache write.
    pub fn prompt_total(&self) -> u64 {
        self.input_tokens.saturating_add(self.cache_read_tokens).saturating_add(self.cache_write_tokens)
    }
}

/// A whole (non-streamed) answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Upstream response id (made up when absent).
    pub id: String,
    /// Model that answered.
    pub model: String,
    /// The assistant's parts, in order: thinking, text, tool calls.
    pub content: Vec<Part>,
    /// Why it ended.
    pub finish: FinishReason,
    /// Token usage.
    pub usage: Usage,
}

/// One normalised piece of a streamed answer. Encoders turn a sequence of these into a
/// client's stream grammar; decoders produce them from an upstream's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The answer started (upstream id and model when known). At most once, first.
    Start {
        /// Upstream message / response id.
        id: String,
        /// Upstream model.
        model: String,
    },
    /// Answer text to append.
    Text(String),
    /// Reasoning text to append.
    Thinking(String),
    /// The signature of the reasoning just streamed (Anthropic `signature_delta`,
    /// Gemini `thoughtSignature` on a thought part).
    ThinkingSignature(String),
    /// An opaque reasoning block (redacted / encrypted).
    RedactedThinking(String),
    /// A tool call begins. `index` counts tool calls in this answer from 0.
    ToolCallStart {
        /// Ordinal of the call in this answer.
        index: u32,
        /// Call id.
        id: String,
        /// Tool name.
        name: String,
        /// Gemini `thoughtSignature` on the call.
        signature: Option<String>,
    },
    /// More argument JSON text for the call `index`.
    ToolCallArgs {
        /// Ordinal of the call.
        index: u32,
        /// JSON text fragment.
        delta: String,
    },
    /// Token usage (may come more than once; later values replace earlier ones).
    Usage(Usage),
    /// Why the answer ended; nothing but `Usage` follows.
    Finish(FinishReason),
}

/// Rough token estimate used when an upstream reports no usage: one token per four bytes
/// of UTF-8, at least one for non-empty text. Records using it are marked `estimated`.
pub fn estimate_tokens(text: &str) -> u64 {
    if text.is_empty() {
        0
    } else {
        (text.len() as u64).div_ceil(4)
    }
}

/// The most tokens one image fetched by URL is taken to cost: above what the major APIs
/// charge for one image at their largest accepted size.
pub const IMAGE_URL_TOKENS: u64 = 10_000;

impl ChatRequest {
    /// Estimated prompt tokens (system, messages, tool schemas), for reservations and
    /// fallbacks.
    pub fn estimate_prompt_tokens(&self) -> u64 {
        let sys = self.system.as_deref().map_or(0, estimate_tokens);
        let tools: u64 = self.tools.iter().map(|t| 8 + estimate_tokens(&t.parameters.to_string())).sum();
        // ~4 tokens of framing per message, as the major tokenizers do.
        sys + tools + self.messages.iter().map(|m| 4 + estimate_tokens(&m.joined_text())).sum::<u64>()
    }

    /// A proven upper bound of the prompt's tokens for any byte-level tokenizer (every token
    /// is at least one byte): the UTF-8 bytes of everything sent as the prompt, plus framing
    /// per message and tool, plus [`IMAGE_URL_TOKENS`] for each image the upstream fetches
    /// by URL (inline images count their base64 bytes, more than their tokens).
    pub fn prompt_token_bound(&self) -> u64 {
        fn parts(ps: &[Part]) -> u64 {
            ps.iter()
                .map(|p| match p {
                    Part::Text { text } => text.len() as u64,
                    Part::Thinking { text, signature } => {
                        (text.len() + signature.as_ref().map_or(0, String::len)) as u64
                    }
                    Part::RedactedThinking { data } => data.len() as u64,
                    Part::ToolCall { id, name, arguments, signature } => {
                        (id.len() + name.len() + arguments.len() + signature.as_ref().map_or(0, String::len)) as u64
                    }
                    Part::ToolResult { call_id, name, content, .. } => {
                        (call_id.len() + name.as_ref().map_or(0, String::len)) as u64 + parts(content)
                    }
                    Part::Image { source: ImageSource::Base64 { media_type, data } } => {
                        (media_type.len() + data.len()) as u64
                    }
                    Part::Image { source: ImageSource::Url { url } } => url.len() as u64 + IMAGE_URL_TOKENS,
                })
                .sum::<u64>()
                + 4 * ps.len() as u64
        }
        let sys = self.system.as_ref().map_or(0, |s| s.len() as u64);
        let tools: u64 = self
            .tools
            .iter()
            .map(|t| {
                16 + (t.name.len() + t.description.as_ref().map_or(0, String::len)) as u64
                    + t.parameters.to_string().len() as u64
            })
            .sum();
        16 + sys + tools + self.messages.iter().map(|m| 8 + parts(&m.content)).sum::<u64>()
    }

    /// How many images the upstream fetches by URL (each billed up to [`IMAGE_URL_TOKENS`]).
    pub fn url_images(&self) -> u64 {
        fn count(ps: &[Part]) -> u64 {
            ps.iter()
                .map(|p| match p {
                    Part::Image { source: ImageSource::Url { .. } } => 1,
                    Part::ToolResult { content, .. } => count(content),
                    _ => 0,
                })
                .sum()
        }
        self.messages.iter().map(|m| count(&m.content)).sum()
    }

    /// The text of the last user message, if any.
    pub fn last_user_text(&self) -> Option<String> {
        self.messages.iter().rev().find(|m| m.role == Role::User).map(Message::joined_text)
    }
}

/// Why a request cannot become a [`ChatRequest`]. Safe to show a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidMessage(pub String);

impl TryFrom<&LLMNATSRequest> for ChatRequest {
    type Error = InvalidMessage;

    fn try_from(req: &LLMNATSRequest) -> Result<Self, Self::Error> {
        let mut messages = Vec::with_capacity(req.messages.len());
        for (i, m) in req.messages.iter().enumerate() {
            let role = match m.role.as_str() {
                "system" | "developer" => Role::System,
                "user" => Role::User,
                "assistant" | "model" => Role::Assistant,
                other => {
                    return Err(InvalidMessage(format!(
                        "messages[{i}].role {other:?} is not one of system, user, assistant"
                    )))
                }
            };
            messages.push(Message::text(role, m.content.clone()));
        }
        if !messages.iter().any(|m| m.role != Role::System) {
            return Err(InvalidMessage("messages must hold at least one user or assistant turn".into()));
        }
        Ok(ChatRequest {
            model: req.model.clone(),
            system: req.system.clone(),
            messages,
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            stream: req.stream,
            ..Default::default()
        })
    }
}
