//! The route table: HTTP method + path → (platform, format, operation). This is everything
//! the bridge knows about the APIs it serves.

use crate::protocol::Platform;
use crate::protocol::{Format, Op};

/// What a request maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Forward to `llm.request.<platform>` with a format tag.
    Llm {
        /// Subject platform.
        platform: Platform,
        /// `Ailurus-Format`.
        format: Format,
        /// `Ailurus-Op` (`models` is [`Route::Models`]).
        op: Op,
        /// Model from the URL (Gemini).
        model: Option<String>,
        /// Label for metrics.
        label: &'static str,
    },
    /// List models, answered by a worker.
    Models {
        /// Subject platform.
        platform: Platform,
        /// Shape of the answer.
        format: Format,
        /// Label for metrics.
        label: &'static str,
    },
    /// A NEW-API management endpoint family (`/api/<family>[/…]`), forwarded to
    /// `ailurus.api.<family>` with the method, the rest of the path and the query; its
    /// meaning is the worker's business.
    Api {
        /// The family: the subject's last token.
        family: &'static str,
        /// Label for metrics (`/api/<family>`).
        label: &'static str,
    },
    /// `GET /` and `HEAD /`: the web console's page.
    Root,
    /// `GET /console/…`: the console's embedded files.
    Console,
    /// `GET /healthz`.
    Health,
    /// `GET /metrics`.
    Metrics,
}

impl Route {
    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Llm { label, .. } | Route::Models { label, .. } | Route::Api { label, .. } => label,
            Route::Root => "/",
            Route::Console => "/console",
            Route::Health => "/healthz",
            Route::Metrics => "/metrics",
        }
    }

    /// The error shape for this route's failures.
    pub fn format(&self) -> Option<Format> {
        match self {
            Route::Llm { format, .. } | Route::Models { format, .. } => Some(*format),
            _ => None,
        }
    }
}

/// Which API's client a request looks like, from its headers alone. Only `GET /v1/models`
/// needs it: OpenAI, Anthropic and Gemini (`api_version="v1"`) clients all list models there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// No vendor header: answer in OpenAI's shape.
    #[default]
    Neutral,
    /// `anthropic-version` or `x-api-key` (Claude Code, the Anthropic SDK).
    Anthropic,
    /// `x-goog-api-key` or a `key=` query parameter (google-genai, Gemini CLI).
    Gemini,
}

/// Match a request. `dialect` picks the shape of `GET /v1/models`.
pub fn match_route(method: &str, path: &str, dialect: Dialect) -> Option<Route> {
    let llm = |platform, format, op, label| Some(Route::Llm { platform, format, op, model: None, label });
    match (method, path) {
        ("POST", "/v1/messages") => llm(Platform::Claude, Format::AnthropicMessages, Op::Generate, "/v1/messages"),
        ("POST", "/v1/messages/count_tokens") => {
            llm(Platform::Claude, Format::AnthropicMessages, Op::CountTokens, "/v1/messages/count_tokens")
        }
        ("POST", "/responses" | "/v1/responses") => {
            llm(Platform::Codex, Format::OpenAiResponses, Op::Generate, "/v1/responses")
        }
        ("POST", "/chat/completions" | "/v1/chat/completions") => {
            llm(Platform::Openai, Format::OpenAiChat, Op::Generate, "/v1/chat/completions")
        }
        ("GET", "/v1/models" | "/models") if dialect == Dialect::Anthropic => {
            Some(Route::Models { platform: Platform::Claude, format: Format::AnthropicMessages, label: "/v1/models" })
        }
        ("GET", "/v1/models") if dialect == Dialect::Gemini => {
            Some(Route::Models { platform: Platform::Gemini, format: Format::GeminiGenerate, label: "/v1/models" })
        }
        ("GET", "/v1/models" | "/models") => {
            Some(Route::Models { platform: Platform::Openai, format: Format::OpenAiChat, label: "/v1/models" })
        }
        ("GET", "/v1beta/models") => {
            Some(Route::Models { platform: Platform::Gemini, format: Format::GeminiGenerate, label: "/v1beta/models" })
        }
        ("GET" | "HEAD", "/") => Some(Route::Root),
        ("GET" | "HEAD", p) if p.starts_with("/console/") => Some(Route::Console),
        ("GET", "/healthz") => Some(Route::Health),
        ("GET", "/metrics") => Some(Route::Metrics),
        (_, p) if p.starts_with("/api/") => api(p),
        ("POST", p) => gemini(p),
        _ => None,
    }
}

/// The management API's endpoint families: `/api/<family>` and everything below it goes to
/// `ailurus.api.<family>` (adding a family is one line here and one file in
/// `src/worker/api/`).
const API_FAMILIES: [(&str, &str); 9] = [
    ("status", "/api/status"),
    ("user", "/api/user"),
    ("token", "/api/token"),
    ("log", "/api/log"),
    ("data", "/api/data"),
    ("redemption", "/api/redemption"),
    ("pricing", "/api/pricing"),
    ("group", "/api/group"),
    ("channel", "/api/channel"),
];

/// `/api/<family>` or `/api/<family>/…` of a known family.
fn api(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/api/")?;
    let name = rest.split('/').next().unwrap_or(rest);
    API_FAMILIES.iter().find(|(f, _)| *f == name).map(|(family, label)| Route::Api { family, label })
}

/// The path below `/api/<family>` (`/` when nothing is), for `Ailurus-Op`.
pub fn api_rest<'a>(path: &'a str, family: &str) -> &'a str {
    let rest = path.strip_prefix("/api/").and_then(|p| p.strip_prefix(family)).unwrap_or("");
    if rest.is_empty() {
        "/"
    } else {
        rest
    }
}

/// `/v1beta/models/{model}:{method}` and `/v1/models/{model}:{method}`.
fn gemini(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v1beta/models/").or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.rsplit_once(':')?;
    if model.is_empty() || model.contains('/') {
        return None;
    }
    let (op, label) = match method {
        "generateContent" => (Op::Generate, "/models/:generateContent"),
        "streamGenerateContent" => (Op::StreamGenerate, "/models/:streamGenerateContent"),
        "countTokens" => (Op::CountTokens, "/models/:countTokens"),
        _ => return None,
    };
    Some(Route::Llm {
        platform: Platform::Gemini,
        format: Format::GeminiGenerate,
        op,
        model: Some(model.to_string()),
        label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (method, path, client dialect, expected (platform, format, op)).
    type Case = (&'static str, &'static str, Dialect, Option<(&'static str, Format, Op)>);

    #[test]
    fn route_table() {
        let cases: &[Case] = &[
            ("POST", "/v1/messages", Dialect::Neutral, Some(("claude", Format::AnthropicMessages, Op::Generate))),
            (
                "POST",
                "/v1/messages/count_tokens",
                Dialect::Neutral,
                Some(("claude", Format::AnthropicMessages, Op::CountTokens)),
            ),
            ("POST", "/responses", Dialect::Neutral, Some(("codex", Format::OpenAiResponses, Op::Generate))),
            ("POST", "/v1/responses", Dialect::Neutral, Some(("codex", Format::OpenAiResponses, Op::Generate))),
            ("POST", "/v1/chat/completions", Dialect::Neutral, Some(("openai", Format::OpenAiChat, Op::Generate))),
            ("POST", "/chat/completions", Dialect::Neutral, Some(("openai", Format::OpenAiChat, Op::Generate))),
            (
                "POST",
                "/v1beta/models/gemini-2.5-flash:generateContent",
                Dialect::Neutral,
                Some(("gemini", Format::GeminiGenerate, Op::Generate)),
            ),
            (
                "POST",
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
                Dialect::Neutral,
                Some(("gemini", Format::GeminiGenerate, Op::StreamGenerate)),
            ),
            (
                "POST",
                "/v1/models/gemini-2.5-pro:countTokens",
                Dialect::Neutral,
                Some(("gemini", Format::GeminiGenerate, Op::CountTokens)),
            ),
            ("POST", "/v1beta/models/x:deleteEverything", Dialect::Neutral, None),
            ("POST", "/v1beta/models/:generateContent", Dialect::Neutral, None),
            ("GET", "/v1/messages", Dialect::Neutral, None),
            ("POST", "/nope", Dialect::Neutral, None),
        ];
        for (method, path, dialect, want) in cases {
            let got = match_route(method, path, *dialect);
            match (got, want) {
                (Some(Route::Llm { platform, format, op, .. }), Some((p, f, o))) => {
                    assert_eq!((platform.as_str(), format, op), (*p, *f, *o), "{method} {path}");
                }
                (None, None) => {}
                (got, want) => panic!("{method} {path}: got {got:?}, want {want:?}"),
            }
        }
        assert!(
            matches!(match_route("POST", "/v1beta/models/gm:generateContent", Dialect::Neutral), Some(Route::Llm { model: Some(m), .. }) if m == "gm")
        );
        assert!(matches!(
            match_route("GET", "/v1/models", Dialect::Anthropic),
            Some(Route::Models { format: Format::AnthropicMessages, .. })
        ));
        assert!(matches!(
            match_route("GET", "/v1/models", Dialect::Neutral),
            Some(Route::Models { format: Format::OpenAiChat, .. })
        ));
        assert!(matches!(
            match_route("GET", "/v1/models", Dialect::Gemini),
            Some(Route::Models { format: Format::GeminiGenerate, .. })
        ));
        assert!(matches!(
            match_route("GET", "/v1beta/models", Dialect::Neutral),
            Some(Route::Models { format: Format::GeminiGenerate, .. })
        ));
        assert_eq!(match_route("HEAD", "/", Dialect::Neutral), Some(Route::Root));
        assert_eq!(match_route("GET", "/console/app.js", Dialect::Neutral), Some(Route::Console));
        assert_eq!(match_route("POST", "/console/app.js", Dialect::Neutral), None);
        for (method, path, family, rest) in [
            ("GET", "/api/user/self", Some("user"), "/self"),
            ("DELETE", "/api/token/12", Some("token"), "/12"),
            ("GET", "/api/status", Some("status"), "/"),
            ("PUT", "/api/user/", Some("user"), "/"),
            ("GET", "/api/statusx", None, ""),
            ("GET", "/api/", None, ""),
            ("GET", "/apis/user", None, ""),
        ] {
            match (match_route(method, path, Dialect::Neutral), family) {
                (Some(Route::Api { family: f, .. }), Some(want)) => {
                    assert_eq!(f, want, "{method} {path}");
                    assert_eq!(api_rest(path, f), rest, "{path}");
                }
                (None, None) => {}
                (got, _) => panic!("{method} {path}: {got:?}"),
            }
        }
    }
}
