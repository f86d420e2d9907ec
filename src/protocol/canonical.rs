//! The canonical chat model: what every client format converts into and every provider
//! speaks. Providers never see a wire format of another API.

use super::seed::LLMNATSRequest;
use serde::{Deserialize, Serialize};

/// Who produced a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions (system / developer).
    System,
    /// The human or calling program.
    User,
    /// The model.
    Assistant,
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
        Self { role, content: vec![Part::Text { text: text.into() }] }
    }

    /// All text parts joined.
    pub fn joined_text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            match part {
                Part::Text { text } => out.push_str(text),
            }
        }
        out
    }
}

/// A provider-neutral chat request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model as the caller named it (the router maps it per channel).
    pub model: String,
    /// Top-level instructions.
    pub system: Option<String>,
    /// The conversation, oldest first (system messages in the middle are kept in place).
    pub messages: Vec<Message>,
    /// Upper bound on output tokens.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Whether the caller wants the answer streamed.
    pub stream: bool,
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
}

impl FinishReason {
    /// The seed's / OpenAI's spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ToolUse => "tool_use",
            Self::ContentFilter => "content_filter",
        }
    }
}

/// Token usage of one request, by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens not served from cache.
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

/// Rough token estimate used when an upstream reports no usage: one token per four bytes
/// of UTF-8, at least one for non-empty text. Records using it are marked `estimated`.
pub fn estimate_tokens(text: &str) -> u64 {
    if text.is_empty() {
        0
    } else {
        (text.len() as u64).div_ceil(4)
    }
}

impl ChatRequest {
    /// Estimated prompt tokens (system + every message), for reservations and fallbacks.
    pub fn estimate_prompt_tokens(&self) -> u64 {
        let sys = self.system.as_deref().map_or(0, estimate_tokens);
        // ~4 tokens of framing per message, as the major tokenizers do.
        sys + self.messages.iter().map(|m| 4 + estimate_tokens(&m.joined_text())).sum::<u64>()
    }

    /// The text of the last user message, if any.
    pub fn last_user_text(&self) -> Option<String> {
        self.messages.iter().rev().find(|m| m.role == Role::User).map(Message::joined_text)
    }
}

/// Why a seed request cannot become a [`ChatRequest`].
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
        })
    }
}
