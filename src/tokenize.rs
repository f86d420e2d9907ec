//! Local token counting for `count_tokens` / `countTokens` when no upstream answers it:
//! OpenAI's `o200k_base` BPE (tiktoken-rs; the vocabulary ships inside the crate, so it
//! works offline). It is exact for OpenAI's current models and a close estimate for
//! Claude and Gemini, whose tokenizers are not public.

use crate::protocol::canonical::{ChatRequest, Part};
use std::sync::OnceLock;

fn bpe() -> Option<&'static tiktoken_rs::CoreBPE> {
    static BPE: OnceLock<Option<tiktoken_rs::CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// Tokens in `text` (the byte estimate if the vocabulary failed to load).
pub fn count(text: &str) -> u64 {
    match bpe() {
        Some(b) => b.encode_ordinary(text).len() as u64,
        None => crate::protocol::canonical::estimate_tokens(text),
    }
}

/// Input tokens of a request: system, messages (with per-message framing), tool schemas;
/// images count a flat 1,000 tokens (the order of magnitude all three vendors charge for a
/// typical image).
pub fn count_request(req: &ChatRequest) -> u64 {
    let mut total = req.system.as_deref().map_or(0, count);
    for m in &req.messages {
        total += 4 + m.content.iter().map(count_part).sum::<u64>();
    }
    for t in &req.tools {
        total += 8 + count(&t.name) + t.description.as_deref().map_or(0, count) + count(&t.parameters.to_string());
    }
    total
}

fn count_part(p: &Part) -> u64 {
    match p {
        Part::Text { text } | Part::Thinking { text, .. } => count(text),
        Part::Image { .. } => 1_000,
        Part::ToolCall { name, arguments, .. } => 4 + count(name) + count(arguments),
        Part::ToolResult { content, .. } => 4 + content.iter().map(count_part).sum::<u64>(),
        Part::RedactedThinking { .. } => 0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_real_tokens() {
        assert_eq!(super::count("hello world"), 2);
        assert_eq!(super::count(""), 0);
    }
}
