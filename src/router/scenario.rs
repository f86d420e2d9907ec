//! Scenario routes (`[[routing.scenarios]]`): rules over a request's features — the model
//! it names, its platform, thinking on or off, its estimated prompt tokens, a tool it
//! offers, a header's value, a subagent's model tag — that send it to another model and/or
//! a group of channels. The first rule whose every condition holds wins; a request no rule
//! matches is routed as it came.
//!
//! The costly features are computed only when a rule asks for them, once per request: the
//! prompt estimate (a walk over the text) and the tools of a native body that the canonical
//! form does not keep (hosted tools such as Anthropic's `web_search_20250305`, Responses'
//! `web_search`, Gemini's `googleSearch`, which are read from the body's `tools`).

use crate::protocol::canonical::ChatRequest;
use crate::wildcard;
use serde::Deserialize;
use std::cell::OnceCell;
use std::collections::BTreeMap;

/// The tag a subagent's system prompt carries to name its model.
pub const SUBAGENT_TAG: (&str, &str) = ("<ailurus-model>", "</ailurus-model>");

/// One rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioRule {
    /// Name, shown in logs and the `Ailurus-Scenario` of the debug log.
    pub name: String,
    /// Condition: the requested model matches this pattern (`claude-*haiku*`).
    #[serde(default)]
    pub model: Option<String>,
    /// Condition: the request came on this platform (`claude`, `codex`, `gemini`, `openai`).
    #[serde(default)]
    pub platform: Option<String>,
    /// Condition: thinking (extended thinking, reasoning effort) is on (`true`) or off.
    #[serde(default)]
    pub thinking: Option<bool>,
    /// Condition: the estimated prompt is at least this many tokens.
    #[serde(default)]
    pub min_prompt_tokens: Option<u64>,
    /// Condition: a tool whose name or type matches this pattern is offered
    /// (`web_search*`).
    #[serde(default)]
    pub tool: Option<String>,
    /// Condition: each named header's value matches its pattern (headers as the bridge
    /// forwards them: `user-agent`, session headers, `anthropic-beta`, …).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Condition: the system prompt carries `<ailurus-model>NAME</ailurus-model>` (a
    /// subagent's definition naming its model); NAME is the target model unless `to_model`
    /// is set.
    #[serde(default)]
    pub subagent_tag: bool,
    /// Target: the model the request is served (and billed) as.
    #[serde(default)]
    pub to_model: Option<String>,
    /// Target: only channels whose name matches one of these patterns serve it.
    #[serde(default)]
    pub to_channels: Vec<String>,
}

impl ScenarioRule {
    /// Semantic checks; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        let conditions = self.model.is_some()
            || self.platform.is_some()
            || self.thinking.is_some()
            || self.min_prompt_tokens.is_some()
            || self.tool.is_some()
            || !self.headers.is_empty()
            || self.subagent_tag;
        if !conditions {
            return Err("needs at least one condition (model, platform, thinking, min_prompt_tokens, tool, headers, subagent_tag)".into());
        }
        if self.to_model.is_none() && self.to_channels.is_empty() && !self.subagent_tag {
            return Err("needs a target: to_model or to_channels".into());
        }
        if let Some(p) = &self.platform {
            p.parse::<crate::protocol::Platform>()
                .map_err(|_| format!("platform {p:?} is not one of claude, codex, gemini, openai"))?;
        }
        if self.to_model.as_deref().is_some_and(|m| m.trim().is_empty() || m.contains(['*', '?'])) {
            return Err("to_model must be a model name (no wildcards)".into());
        }
        Ok(())
    }
}

/// Where a matched rule sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The rule's name.
    pub rule: String,
    /// The model to serve it as, when it changes.
    pub model: Option<String>,
    /// Channel name patterns allowed (empty: any).
    pub channels: Vec<String>,
}

/// A request's features, each computed at most once and only when a rule reads it.
pub struct Features<'a> {
    /// The model as requested.
    pub model: &'a str,
    /// The platform.
    pub platform: &'a str,
    /// The canonical request.
    pub chat: &'a ChatRequest,
    /// A header's value by name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The native body, for hosted tools.
    pub body: Option<&'a [u8]>,
    /// Estimated prompt tokens (computed on first use).
    prompt_tokens: OnceCell<u64>,
    /// Names and types of every tool offered (computed on first use).
    tools: OnceCell<Vec<String>>,
}

impl<'a> Features<'a> {
    /// Features of one request.
    pub fn new(
        model: &'a str,
        platform: &'a str,
        chat: &'a ChatRequest,
        header: &'a dyn Fn(&str) -> Option<String>,
        body: Option<&'a [u8]>,
    ) -> Self {
        Self { model, platform, chat, header, body, prompt_tokens: OnceCell::new(), tools: OnceCell::new() }
    }

    fn prompt_tokens(&self) -> u64 {
        *self.prompt_tokens.get_or_init(|| self.chat.estimate_prompt_tokens())
    }

    fn tools(&self) -> &[String] {
        self.tools.get_or_init(|| {
            let mut out: Vec<String> = self.chat.tools.iter().map(|t| t.name.clone()).collect();
            out.extend(self.body.map(body_tools).unwrap_or_default());
            out
        })
    }

    fn thinking(&self) -> bool {
        self.chat.thinking.as_ref().is_some_and(|t| t.enabled)
    }

    /// The model a subagent tag names in the system prompt.
    fn tagged_model(&self) -> Option<&'a str> {
        let sys: &'a str = self.chat.system.as_deref()?;
        let start = sys.find(SUBAGENT_TAG.0)? + SUBAGENT_TAG.0.len();
        let len = sys[start..].find(SUBAGENT_TAG.1)?;
        Some(sys[start..start + len].trim()).filter(|m| !m.is_empty())
    }
}

/// The `type` and `name` of each entry of a body's top-level `tools`, and the keys of Gemini's
/// tool objects (`googleSearch`, `functionDeclarations`, …) and their declarations' names.
fn body_tools(body: &[u8]) -> Vec<String> {
    #[derive(Deserialize)]
    struct Only {
        #[serde(default)]
        tools: Vec<serde_json::Map<String, serde_json::Value>>,
    }
    let Ok(only) = serde_json::from_slice::<Only>(body) else { return Vec::new() };
    let mut out = Vec::new();
    for t in &only.tools {
        for (k, v) in t {
            match (k.as_str(), v) {
                ("type" | "name", serde_json::Value::String(s)) => out.push(s.clone()),
                ("function_declarations" | "functionDeclarations", serde_json::Value::Array(decls)) => {
                    out.extend(decls.iter().filter_map(|d| d.get("name").and_then(|n| n.as_str()).map(str::to_string)))
                }
                (key, serde_json::Value::Object(_)) if !matches!(key, "function" | "input_schema" | "parameters") => {
                    out.push(key.to_string())
                }
                _ => {}
            }
        }
    }
    out
}

/// The first rule that matches, and where it sends the request.
pub fn decide(rules: &[ScenarioRule], f: &Features<'_>) -> Option<Decision> {
    for r in rules {
        if r.model.as_deref().is_some_and(|p| !wildcard::matches(p, f.model))
            || r.platform.as_deref().is_some_and(|p| p != f.platform)
            || r.thinking.is_some_and(|t| t != f.thinking())
            || r.min_prompt_tokens.is_some_and(|n| f.prompt_tokens() < n)
            || r.tool.as_deref().is_some_and(|p| !f.tools().iter().any(|t| wildcard::matches(p, t)))
            || r.headers.iter().any(|(h, p)| !(f.header)(h).is_some_and(|v| wildcard::matches(p, &v)))
        {
            continue;
        }
        let tagged = if r.subagent_tag {
            match f.tagged_model() {
                Some(m) => Some(m.to_string()),
                None => continue,
            }
        } else {
            None
        };
        return Some(Decision {
            rule: r.name.clone(),
            model: r.to_model.clone().or(tagged),
            channels: r.to_channels.clone(),
        });
    }
    None
}
