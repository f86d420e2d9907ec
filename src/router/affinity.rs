//! Session affinity, the pure part: which session a request belongs to, and where a session
//! is pinned (a channel and one of its keys). The table itself (the `ROUTE_AFFINITY` KV
//! bucket behind a local cache) is the worker's (`worker/routing.rs`).
//!
//! A session is named, first match wins, by: the `Ailurus-Session`,
//! `x-claude-code-session-id`, `session_id` (Codex) or `x-session-id` header; the seed's
//! `session_id`; the session part of Claude Code's `metadata.user_id`
//! (`user_…_account_…_session_<uuid>`, or the JSON form with `session_id`); Codex's
//! `prompt_cache_key`; else a hash of the system prompt and the first message (stable
//! for the whole of a coding agent's session, which only ever appends). The table's key is
//! sha256(user, session), so it reveals neither.

use crate::protocol::canonical::{ChatRequest, Role};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Headers that name a session, in the order they are trusted.
pub const SESSION_HEADERS: [&str; 4] = ["Ailurus-Session", "x-claude-code-session-id", "session_id", "x-session-id"];

/// Where a session is pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Channel name.
    #[serde(rename = "c")]
    pub channel: String,
    /// Index of the channel's key (the order of `api_key_env`).
    #[serde(rename = "k")]
    pub key: usize,
}

/// Where the session's name came from (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A session header.
    Header,
    /// The seed's `session_id`.
    Seed,
    /// Claude Code's `metadata.user_id`.
    Metadata,
    /// Codex's `prompt_cache_key`.
    PromptCacheKey,
    /// The hash of the first messages.
    FirstMessages,
}

/// The session part of Claude Code's `metadata.user_id`: `…_session_<id>`, or a JSON object
/// with `session_id`.
pub fn metadata_session(user: &str) -> Option<String> {
    if user.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(user).ok()?;
        return v.get("session_id").and_then(|s| s.as_str()).filter(|s| !s.is_empty()).map(str::to_string);
    }
    let (_, id) = user.rsplit_once("_session_")?;
    (!id.is_empty()).then(|| id.to_string())
}

/// Codex's `prompt_cache_key` at the top level of a Responses or Chat body (only the key is
/// read; the rest is skipped).
pub fn prompt_cache_key(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Only {
        prompt_cache_key: Option<String>,
    }
    serde_json::from_slice::<Only>(body).ok()?.prompt_cache_key.filter(|k| !k.is_empty())
}

/// A name for a session that sends none: the hash of its system prompt and first message.
fn first_messages(chat: &ChatRequest) -> String {
    let mut h = Sha256::new();
    h.update(chat.system.as_deref().unwrap_or_default().as_bytes());
    h.update([0]);
    if let Some(m) = chat.messages.iter().find(|m| m.role == Role::User) {
        h.update(m.joined_text().as_bytes());
    }
    hex16(&h.finalize())
}

fn hex16(bytes: &[u8]) -> String {
    bytes.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// What a request says about its session.
pub struct Evidence<'a> {
    /// A header's value by name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The seed's `session_id`.
    pub seed_session: Option<&'a str>,
    /// The canonical request.
    pub chat: &'a ChatRequest,
    /// The native body of an OpenAI-format client (Responses, Chat), for `prompt_cache_key`
    /// (read only when nothing before names the session).
    pub body: Option<&'a [u8]>,
}

/// The session of a request and where its name came from.
pub fn session(ev: &Evidence<'_>) -> (String, Source) {
    if let Some(s) = SESSION_HEADERS.iter().find_map(|h| (ev.header)(h).filter(|v| !v.trim().is_empty())) {
        return (s, Source::Header);
    }
    if let Some(s) = ev.seed_session.filter(|s| !s.is_empty()) {
        return (s.to_string(), Source::Seed);
    }
    if let Some(s) = ev.chat.user.as_deref().and_then(metadata_session) {
        return (s, Source::Metadata);
    }
    if let Some(s) = ev.body.and_then(prompt_cache_key) {
        return (s, Source::PromptCacheKey);
    }
    (first_messages(ev.chat), Source::FirstMessages)
}

/// The table key of `user`'s `session`: 32 hex digits of sha256 (a valid KV key that
/// reveals neither).
pub fn table_key(user: &str, session: &str) -> String {
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([b'\n']);
    h.update(session.as_bytes());
    hex16(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::canonical::Message;

    fn chat(system: &str, first: &str, user: Option<&str>) -> ChatRequest {
        ChatRequest {
            system: Some(system.into()),
            messages: vec![Message::text(Role::User, first)],
            user: user.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn every_kind_of_session_name_is_found_in_order() {
        let none = |_: &str| None;
        let c = chat("sys", "hi", Some("user_ab12_account_9f_session_3c9d-77"));
        let hdr = |h: &str| (h == "session_id").then(|| "codex-1".to_string());
        let body = br#"{"model":"gpt-5","prompt_cache_key":"pck-7","input":[]}"#;
        let cases: [(Evidence<'_>, &str, Source); 5] = [
            (Evidence { header: &hdr, seed_session: Some("s"), chat: &c, body: None }, "codex-1", Source::Header),
            (Evidence { header: &none, seed_session: Some("seed-9"), chat: &c, body: None }, "seed-9", Source::Seed),
            (Evidence { header: &none, seed_session: None, chat: &c, body: None }, "3c9d-77", Source::Metadata),
            (
                Evidence { header: &none, seed_session: None, chat: &chat("s", "x", None), body: Some(body) },
                "pck-7",
                Source::PromptCacheKey,
            ),
            (
                Evidence { header: &none, seed_session: None, chat: &chat("s", "x", None), body: Some(b"{}") },
                "",
                Source::FirstMessages,
            ),
        ];
        for (ev, want, source) in cases {
            let (got, src) = session(&ev);
            assert_eq!(src, source);
            if !want.is_empty() {
                assert_eq!(got, want);
            }
        }
        assert_eq!(metadata_session(r#"{"device_id":"d","session_id":"j-1"}"#).as_deref(), Some("j-1"));
        assert_eq!(metadata_session("plain-user"), None);
    }

    #[test]
    fn the_first_messages_name_a_session_that_grows() {
        let mut a = chat("You are Claude Code", "fix the bug", None);
        let before = first_messages(&a);
        a.messages.push(Message::text(Role::Assistant, "done"));
        a.messages.push(Message::text(Role::User, "thanks"));
        assert_eq!(first_messages(&a), before, "later turns keep the name");
        assert_ne!(first_messages(&chat("You are Claude Code", "another task", None)), before);
        assert_ne!(table_key("alice", "s"), table_key("bob", "s"));
        assert_eq!(table_key("alice", "s").len(), 32);
    }
}
