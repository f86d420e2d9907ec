//! Subject names. The table [`SPECS`] mirrors `subjects.toml` (a test keeps them equal);
//! every subject is rendered from it with validated [`Token`]s, never hand-formatted.

use crate::protocol::Platform;
use std::fmt;

/// One row of `subjects.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubjectSpec {
    /// Key in `subjects.toml`.
    pub name: &'static str,
    /// Pattern with `{token}` placeholders.
    pub pattern: &'static str,
}

/// `llm.request.{platform}`
pub const REQUEST: SubjectSpec = SubjectSpec { name: "request", pattern: "llm.request.{platform}" };
/// `llm.response.{trace_id}`
pub const RESPONSE: SubjectSpec = SubjectSpec { name: "response", pattern: "llm.response.{trace_id}" };
/// `llm.cancel.{trace_id}`
pub const CANCEL: SubjectSpec = SubjectSpec { name: "cancel", pattern: "llm.cancel.{trace_id}" };
/// `llm.usage.{user_id}`
pub const USAGE: SubjectSpec = SubjectSpec { name: "usage", pattern: "llm.usage.{user_id}" };
/// `user.{user_id}.quota`
pub const QUOTA: SubjectSpec = SubjectSpec { name: "quota", pattern: "user.{user_id}.quota" };
/// `user.{user_id}.auth`
pub const AUTH: SubjectSpec = SubjectSpec { name: "auth", pattern: "user.{user_id}.auth" };
/// `user.{user_id}.presence`
pub const PRESENCE: SubjectSpec = SubjectSpec { name: "presence", pattern: "user.{user_id}.presence" };
/// `chat.{user_id}.{session}.msg`
pub const CHAT_MSG: SubjectSpec = SubjectSpec { name: "chat_msg", pattern: "chat.{user_id}.{session}.msg" };
/// `chat.{user_id}.{session}.status`
pub const CHAT_STATUS: SubjectSpec = SubjectSpec { name: "chat_status", pattern: "chat.{user_id}.{session}.status" };

/// `quota.used.{user_id}` (a server-side counter)
pub const QUOTA_USED: SubjectSpec = SubjectSpec { name: "quota_used", pattern: "quota.used.{user_id}" };
/// `quota.tokenused.{token_id}` (a server-side counter)
pub const QUOTA_TOKEN_USED: SubjectSpec =
    SubjectSpec { name: "quota_token_used", pattern: "quota.tokenused.{token_id}" };
/// `quota.requests.{user_id}` (a server-side counter)
pub const QUOTA_REQUESTS: SubjectSpec = SubjectSpec { name: "quota_requests", pattern: "quota.requests.{user_id}" };
/// `quota.hold.{hold_id}` (a durable quota reservation)
pub const QUOTA_HOLD: SubjectSpec = SubjectSpec { name: "quota_hold", pattern: "quota.hold.{hold_id}" };
/// `ailurus.api.{op}`
pub const API: SubjectSpec = SubjectSpec { name: "api", pattern: "ailurus.api.{op}" };
/// `ailurus.config.{kind}`
pub const CONFIG: SubjectSpec = SubjectSpec { name: "config", pattern: "ailurus.config.{kind}" };

/// `quota.rpm.{token_id}.{window}` (a server-side counter)
pub const RATE_RPM: SubjectSpec = SubjectSpec { name: "rate_rpm", pattern: "quota.rpm.{token_id}.{window}" };
/// `quota.tpm.{token_id}.{window}` (a server-side counter)
pub const RATE_TPM: SubjectSpec = SubjectSpec { name: "rate_tpm", pattern: "quota.tpm.{token_id}.{window}" };
/// `quota.conc.{token_id}` (a server-side counter)
pub const RATE_CONC: SubjectSpec = SubjectSpec { name: "rate_conc", pattern: "quota.conc.{token_id}" };

/// Every subject: design §2, the quota and rate counters and the user API.
pub const SPECS: [SubjectSpec; 18] = [
    REQUEST,
    RESPONSE,
    CANCEL,
    USAGE,
    QUOTA,
    AUTH,
    PRESENCE,
    CHAT_MSG,
    CHAT_STATUS,
    QUOTA_USED,
    QUOTA_TOKEN_USED,
    QUOTA_REQUESTS,
    QUOTA_HOLD,
    API,
    CONFIG,
    RATE_RPM,
    RATE_TPM,
    RATE_CONC,
];

/// A subject token that came from input, validated as `[A-Za-z0-9_-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

/// Why a string cannot be a subject token. Safe to show a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidToken {
    /// Which field was wrong (`trace_id`, `user_id`, ...).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for InvalidToken {}

impl Token {
    /// Longest token accepted.
    pub const MAX_LEN: usize = 128;

    /// Validate `value` as the token for `field`.
    pub fn new(field: &'static str, value: &str) -> Result<Self, InvalidToken> {
        if value.is_empty() {
            return Err(InvalidToken { field, reason: "must not be empty".into() });
        }
        if value.len() > Self::MAX_LEN {
            return Err(InvalidToken {
                field,
                reason: format!("{} characters, at most {} allowed", value.chars().count(), Self::MAX_LEN),
            });
        }
        if let Some(bad) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
            return Err(InvalidToken {
                field,
                reason: format!("character {bad:?} not allowed (use A-Z, a-z, 0-9, '_' and '-')"),
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// A fresh random token (NUID, 22 characters), e.g. for trace ids.
    pub fn random() -> Self {
        Self(nuid::next().to_string())
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Fill a pattern's placeholders, in order, with the given tokens (`*` for wildcards).
fn render(spec: SubjectSpec, tokens: &[&str]) -> String {
    let mut out = String::with_capacity(spec.pattern.len() + tokens.iter().map(|t| t.len()).sum::<usize>());
    let mut rest = spec.pattern;
    let mut tokens = tokens.iter();
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        // Every builder below passes exactly as many tokens as its pattern has placeholders.
        out.push_str(tokens.next().copied().unwrap_or("*"));
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// The one placeholder's token of `subject` if it has the shape of `spec` (a pattern with a
/// single placeholder), e.g. `llm.request.claude` under [`REQUEST`] → `claude`. The reverse
/// of the builders below, for readers of streams.
pub fn token_of(spec: SubjectSpec, subject: &str) -> Option<&str> {
    let open = spec.pattern.find('{')?;
    let close = spec.pattern[open..].find('}')? + open;
    let suffix = &spec.pattern[close + 1..];
    if suffix.contains('{') {
        return None;
    }
    let token = subject.strip_prefix(&spec.pattern[..open])?.strip_suffix(suffix)?;
    (!token.is_empty() && !token.contains('.')).then_some(token)
}

/// `$KV.<bucket>.<key>`: JetStream's own subject for a key of a KV bucket (not one of ours,
/// so not in `subjects.toml`), for a put with headers the KV API does not take (`Nats-TTL`).
pub fn kv_key(bucket: &str, key: &Token) -> String {
    format!("$KV.{bucket}.{key}")
}

/// `llm.request.<platform>`
pub fn request(platform: Platform) -> String {
    render(REQUEST, &[platform.as_str()])
}
/// `llm.request.*`: what workers subscribe to.
pub fn request_all() -> String {
    render(REQUEST, &["*"])
}
/// `llm.response.<trace_id>`
pub fn response(trace_id: &Token) -> String {
    render(RESPONSE, &[trace_id.as_str()])
}
/// `llm.response.*`: every reply on the default subject.
pub fn response_all() -> String {
    render(RESPONSE, &["*"])
}
/// `llm.usage.*`: every ledger record.
pub fn usage_all() -> String {
    render(USAGE, &["*"])
}
/// `llm.cancel.<trace_id>`
pub fn cancel(trace_id: &Token) -> String {
    render(CANCEL, &[trace_id.as_str()])
}
/// `llm.cancel.*`: what workers subscribe to.
pub fn cancel_all() -> String {
    render(CANCEL, &["*"])
}
/// `llm.usage.<user_id>`
pub fn usage(user_id: &Token) -> String {
    render(USAGE, &[user_id.as_str()])
}
/// `user.<user_id>.quota`
pub fn quota(user_id: &Token) -> String {
    render(QUOTA, &[user_id.as_str()])
}
/// `user.<user_id>.auth`
pub fn auth(user_id: &Token) -> String {
    render(AUTH, &[user_id.as_str()])
}
/// `user.<user_id>.presence`
pub fn presence(user_id: &Token) -> String {
    render(PRESENCE, &[user_id.as_str()])
}
/// `chat.<user_id>.<session>.msg`
pub fn chat_msg(user_id: &Token, session: &Token) -> String {
    render(CHAT_MSG, &[user_id.as_str(), session.as_str()])
}
/// `chat.<user_id>.<session>.status`
pub fn chat_status(user_id: &Token, session: &Token) -> String {
    render(CHAT_STATUS, &[user_id.as_str(), session.as_str()])
}

/// `quota.used.<user_id>`
pub fn quota_used(user_id: &Token) -> String {
    render(QUOTA_USED, &[user_id.as_str()])
}
/// `quota.tokenused.<token_id>`
pub fn quota_token_used(token_id: &Token) -> String {
    render(QUOTA_TOKEN_USED, &[token_id.as_str()])
}
/// `quota.requests.<user_id>`
pub fn quota_requests(user_id: &Token) -> String {
    render(QUOTA_REQUESTS, &[user_id.as_str()])
}
/// `quota.rpm.<token_id>.<window>`
pub fn rate_rpm(token_id: &Token, window: u64) -> String {
    render(RATE_RPM, &[token_id.as_str(), &window.to_string()])
}
/// `quota.tpm.<token_id>.<window>`
pub fn rate_tpm(token_id: &Token, window: u64) -> String {
    render(RATE_TPM, &[token_id.as_str(), &window.to_string()])
}
/// `quota.conc.<token_id>`
pub fn rate_conc(token_id: &Token) -> String {
    render(RATE_CONC, &[token_id.as_str()])
}
/// `quota.hold.<hold_id>`
pub fn quota_hold(hold_id: &Token) -> String {
    render(QUOTA_HOLD, &[hold_id.as_str()])
}
/// `quota.hold.*`: every hold.
pub fn quota_hold_all() -> String {
    render(QUOTA_HOLD, &["*"])
}
/// `ailurus.api.<op>`
pub fn api(op: &str) -> String {
    render(API, &[op])
}
/// `ailurus.api.*`: what workers subscribe to.
pub fn api_all() -> String {
    render(API, &["*"])
}
/// `ailurus.config.<kind>`: one change of the live configuration (`channel`, `price`, `group`).
pub fn config_event(kind: &Token) -> String {
    render(CONFIG, &[kind.as_str()])
}

/// Whether a requester-chosen reply subject is safe for a worker to publish on: not a
/// server `$` subject and not in Ailurus's own subject space (the first tokens of
/// [`SPECS`]), except `llm.response.<trace_id>`. A worker may publish on `user.*`, `chat.*`,
/// `llm.usage.*`, `quota.*` and the JetStream API; without this check a requester could
/// make it write its replies there (e.g. into another user's events or the ledger).
pub fn is_safe_reply(subject: &str) -> bool {
    if subject.is_empty() || subject.starts_with('$') {
        return false;
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    let response: Vec<&str> = RESPONSE.pattern.split('.').collect();
    let is_response = tokens.len() == response.len()
        && tokens.iter().zip(&response).all(|(t, p)| p.starts_with('{') || t == p)
        && !tokens.iter().any(|t| *t == "*" || *t == ">");
    is_response || !SPECS.iter().any(|s| s.pattern.split('.').next() == tokens.first().copied())
}

/// The last token of a subject, e.g. the platform of `llm.request.claude`.
pub fn last_token(subject: &str) -> &str {
    subject.rsplit('.').next().unwrap_or(subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_toml_matches_code() {
        let text = include_str!("../../subjects.toml");
        let doc: toml::Table = text.parse().expect("subjects.toml parses");
        let table = doc["subjects"].as_table().expect("[subjects]");
        let mut from_file: Vec<(String, String)> =
            table.iter().map(|(k, v)| (k.clone(), v["pattern"].as_str().expect("pattern").to_string())).collect();
        let mut from_code: Vec<(String, String)> =
            SPECS.iter().map(|s| (s.name.to_string(), s.pattern.to_string())).collect();
        from_file.sort();
        from_code.sort();
        assert_eq!(from_file, from_code, "subjects.toml and src/bus/subjects.rs disagree");
    }

    #[test]
    fn reply_subjects_outside_our_space_only() {
        for ok in ["_INBOX.abc", "_INBOX.u.alice.x1", "_R_.a.b", "llm.response.t-1", "replies.x"] {
            assert!(is_safe_reply(ok), "{ok}");
        }
        for bad in [
            "",
            "$JS.API.STREAM.DELETE.LLM_USAGE",
            "$KV.TOKENS.x",
            "user.bob.quota",
            "chat.bob.s.msg",
            "llm.usage.bob",
            "llm.request.claude",
            "llm.response.*",
            "llm.response.a.b",
            "quota.used.bob",
            "ailurus.api.user_self",
        ] {
            assert!(!is_safe_reply(bad), "{bad}");
        }
    }

    #[test]
    fn token_of_reverses_single_placeholder_builders() {
        for (spec, subject, want) in [
            (REQUEST, "llm.request.claude", Some("claude")),
            (RESPONSE, "llm.response.t-1", Some("t-1")),
            (QUOTA, "user.alice.quota", Some("alice")),
            (REQUEST, "llm.request.", None),
            (REQUEST, "llm.request.a.b", None),
            (REQUEST, "llm.response.x", None),
            (CHAT_MSG, "chat.u.s.msg", None),
        ] {
            assert_eq!(token_of(spec, subject), want, "{subject}");
        }
    }

    #[test]
    fn builders_render_patterns() {
        let t = Token::new("trace_id", "abc-1").unwrap();
        let u = Token::new("user_id", "user_9").unwrap();
        let s = Token::new("session", "s1").unwrap();
        assert_eq!(request(Platform::Codex), "llm.request.codex");
        assert_eq!(request_all(), "llm.request.*");
        assert_eq!(response(&t), "llm.response.abc-1");
        assert_eq!(cancel(&t), "llm.cancel.abc-1");
        assert_eq!(cancel_all(), "llm.cancel.*");
        assert_eq!(usage(&u), "llm.usage.user_9");
        assert_eq!(quota(&u), "user.user_9.quota");
        assert_eq!(auth(&u), "user.user_9.auth");
        assert_eq!(presence(&u), "user.user_9.presence");
        assert_eq!(chat_msg(&u, &s), "chat.user_9.s1.msg");
        assert_eq!(chat_status(&u, &s), "chat.user_9.s1.status");
        assert_eq!(last_token("llm.request.gemini"), "gemini");
    }

    #[test]
    fn token_validation_table() {
        let long = "a".repeat(129);
        let max = "a".repeat(128);
        let cases: &[(&str, bool)] = &[
            ("abc", true),
            ("A-z_09", true),
            (&max, true),
            (&long, false),
            ("", false),
            ("a.b", false),
            ("a*", false),
            (">", false),
            ("a b", false),
            ("tab\t", false),
            ("é", false),
            ("a/b", false),
        ];
        for (value, ok) in cases {
            assert_eq!(Token::new("trace_id", value).is_ok(), *ok, "{value:?}");
        }
        let err = Token::new("user_id", "a.b").unwrap_err();
        assert!(err.to_string().contains("user_id") && err.to_string().contains("'.'"), "{err}");
        assert_eq!(Token::random().as_str().len(), 22);
    }
}
