//! The tags a request carries about its body: which wire API it is in (`Ailurus-Format`) and
//! what the caller asked for (`Ailurus-Op`). The bridge sets them from its route table; the
//! worker's [`crate::formats`] gives each format its parsers, renderers and error shapes.

use std::fmt;

/// A wire format (the `Ailurus-Format` header value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Anthropic Messages (`/v1/messages`).
    AnthropicMessages,
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    OpenAiChat,
    /// OpenAI Responses (`/v1/responses`).
    OpenAiResponses,
    /// Gemini `generateContent` / `streamGenerateContent` / `countTokens`.
    GeminiGenerate,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 4] =
        [Self::AnthropicMessages, Self::OpenAiChat, Self::OpenAiResponses, Self::GeminiGenerate];

    /// The header spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::AnthropicMessages => "anthropic.messages",
            Self::OpenAiChat => "openai.chat",
            Self::OpenAiResponses => "openai.responses",
            Self::GeminiGenerate => "gemini.generate",
        }
    }

    /// Parse the header spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the client asked to do (the `Ailurus-Op` header; the bridge sets it from the route).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Op {
    /// Generate an answer; streaming is decided by the body (`stream: true`).
    #[default]
    Generate,
    /// Generate, streamed (Gemini `streamGenerateContent`, where the URL decides).
    StreamGenerate,
    /// Count input tokens (Anthropic `count_tokens`, Gemini `countTokens`).
    CountTokens,
}

impl Op {
    /// The header spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Generate => "generate",
            Self::StreamGenerate => "stream",
            Self::CountTokens => "count_tokens",
        }
    }

    /// Parse the header spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Generate, Self::StreamGenerate, Self::CountTokens].into_iter().find(|o| o.as_str() == s)
    }
}
