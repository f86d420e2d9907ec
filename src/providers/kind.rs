//! The closed set of upstream kinds, matched exhaustively, and the wire format each speaks.

use crate::protocol::Format;

/// The closed set of upstream kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI Chat Completions and compatibles (DeepSeek, Qwen, Ollama, vLLM, OpenRouter, NEW-API).
    OpenAi,
    /// The OpenAI Responses API.
    OpenAiResponses,
    /// The Anthropic Messages API (also a NEW-API host's `/v1/messages`).
    Anthropic,
    /// The Gemini API.
    Gemini,
    /// The built-in deterministic provider.
    Mock,
}

impl ProviderKind {
    /// Every kind.
    pub const ALL: [ProviderKind; 5] = [Self::OpenAi, Self::OpenAiResponses, Self::Anthropic, Self::Gemini, Self::Mock];

    /// The config spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::OpenAiResponses => "openai_responses",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Mock => "mock",
        }
    }

    /// Parse the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The wire format this kind speaks (`None` for the mock, which yields canonical events).
    pub const fn format(self) -> Option<Format> {
        match self {
            Self::OpenAi => Some(Format::OpenAiChat),
            Self::OpenAiResponses => Some(Format::OpenAiResponses),
            Self::Anthropic => Some(Format::AnthropicMessages),
            Self::Gemini => Some(Format::GeminiGenerate),
            Self::Mock => None,
        }
    }
}
