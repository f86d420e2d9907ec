//! Signed reasoning across formats: whose signature is it?
//!
//! Every upstream signs its reasoning and accepts only its own signatures back: Anthropic
//! `thinking.signature` and `redacted_thinking.data`, Responses `encrypted_content`, Gemini
//! `thoughtSignature`. In the canonical model every such opaque value is **sealed**: tagged
//! with the API that issued it, `ailurus.<origin>.<raw>`. Upstream decoders and client
//! parsers seal what they read (a raw value a client sends is one its own API issued, from
//! an earlier pass-through turn); client encoders write the sealed value into the client
//! format's slot, so it comes back tagged; upstream builders [`open`] only their own and drop
//! the others (foreign thinking text becomes plain text where the API takes it).
//!
//! Gemini clients keep `thoughtSignature` on `functionCall` parts but not thought text, so a
//! Gemini client gets another API's whole reasoning (thinking text, signatures, redacted
//! data) as one [`block`] envelope, `ailurus.block.<base64url(JSON parts)>`, on the first
//! call after it; [`unblock`] restores the parts.
//!
//! Chat Completions has no slot at all: a client keeps content and each call's id, name and
//! arguments. For it the worker keeps the reasoning of a tool-call answer on the server
//! ([`kept`]: one entry keyed by the answer's first call id) and puts it back when that id
//! comes back ([`wanted`] names the ids to look up, [`restore`] puts the parts back).

use super::FormatError;
use crate::protocol::canonical::{ChatRequest, Part, Role};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The prefix of every sealed value and block envelope.
const PREFIX: &str = "ailurus.";

/// The tag of a block envelope (after [`PREFIX`]).
const BLOCK: &str = "block.";

/// Largest block envelope accepted from a client (decoded bytes); real reasoning is far
/// smaller, and a bound keeps a hostile value from costing more than the body limit allows.
const MAX_BLOCK: usize = 4 << 20;

/// The API that issued a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// Anthropic Messages (`thinking.signature`, `redacted_thinking.data`).
    Anthropic,
    /// OpenAI Responses (`reasoning.encrypted_content`).
    Responses,
    /// Gemini (`thoughtSignature`).
    Gemini,
}

impl Origin {
    /// The tag written after [`PREFIX`].
    fn tag(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic.",
            Self::Responses => "responses.",
            Self::Gemini => "gemini.",
        }
    }
}

/// Whether `value` is already sealed (or a block envelope).
fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// `raw`, issued by `origin`, sealed; a sealed value or an empty one is returned as is.
pub(crate) fn seal(origin: Origin, raw: &str) -> String {
    if raw.is_empty() || is_sealed(raw) {
        raw.to_string()
    } else {
        format!("{PREFIX}{}{raw}", origin.tag())
    }
}

/// [`seal`] over an optional value.
pub(crate) fn seal_opt(origin: Origin, raw: Option<&str>) -> Option<String> {
    raw.map(|r| seal(origin, r))
}

/// The raw value when `sealed` was issued by `origin`; `None` for another API's, a block
/// envelope, an unsealed or an empty value.
pub(crate) fn open(sealed: &str, origin: Origin) -> Option<&str> {
    sealed.strip_prefix(PREFIX)?.strip_prefix(origin.tag()).filter(|r| !r.is_empty())
}

/// Whether `sig` is a non-empty value that `origin` did not issue (so it must not reach it).
pub(crate) fn is_foreign(sig: &str, origin: Origin) -> bool {
    !sig.is_empty() && open(sig, origin).is_none()
}

/// The parts worth carrying back: signed thinking and redacted reasoning.
fn carried(p: &Part) -> bool {
    match p {
        Part::Thinking { signature, .. } => signature.as_deref().is_some_and(|s| !s.is_empty()),
        Part::RedactedThinking { data } => !data.is_empty(),
        _ => false,
    }
}

/// One envelope holding `parts` (only signed thinking and redacted reasoning are kept);
/// `None` when nothing is left to carry.
pub(crate) fn block(parts: &[Part]) -> Option<String> {
    let kept: Vec<&Part> = parts.iter().filter(|p| carried(p)).collect();
    if kept.is_empty() {
        return None;
    }
    let json = serde_json::to_vec(&kept).ok()?;
    Some(format!("{PREFIX}{BLOCK}{}", URL_SAFE_NO_PAD.encode(json)))
}

/// The parts of a block envelope; `Ok(None)` when `value` is not one, a 400 naming `path`
/// when it is one but does not decode.
pub(crate) fn unblock(value: &str, path: &str) -> Result<Option<Vec<Part>>, FormatError> {
    let Some(b64) = value.strip_prefix(PREFIX).and_then(|v| v.strip_prefix(BLOCK)) else {
        return Ok(None);
    };
    let broken = || FormatError::bad_request(format!("{path} is a reasoning envelope that does not decode"));
    if b64.len() / 4 * 3 > MAX_BLOCK {
        return Err(broken());
    }
    let bytes = URL_SAFE_NO_PAD.decode(b64).map_err(|_| broken())?;
    let parts: Vec<Part> = serde_json::from_slice(&bytes).map_err(|_| broken())?;
    if !parts.iter().all(carried) {
        return Err(broken());
    }
    Ok(Some(parts))
}

/// Whether a client body holds a sealed value or envelope (a JSON string that starts with
/// `ailurus.`): such a body must not be passed through to an upstream of the client's own
/// format, which would reject another API's signature; converted, it keeps only its own.
pub fn has_envelope(body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"ailurus.";
    body.windows(NEEDLE.len()).any(|w| w == NEEDLE)
}

/// The most assistant turns of one request whose reasoning is looked up (from the latest
/// back): a tool loop longer than this loses the reasoning of its oldest turns, which the
/// signing APIs no longer check (they verify the turns of the current loop).
pub const MAX_RESTORED_TURNS: usize = 16;

/// What to keep on the server for a client without a reasoning slot: the key (the first
/// tool call's id) and the parts to restore, in the answer's order: its signed or redacted
/// reasoning, and every call as a `ToolCall` with empty arguments (its signature, if any,
/// goes back on the call of that id; its place tells where the reasoning before it goes).
/// `None` when the answer has no call or nothing signed.
pub fn kept(content: &[Part]) -> Option<(String, Vec<Part>)> {
    let key = content.iter().find_map(|p| match p {
        Part::ToolCall { id, .. } if !id.is_empty() => Some(id.clone()),
        _ => None,
    })?;
    let signed = |p: &Part| carried(p) || matches!(p, Part::ToolCall { signature: Some(s), .. } if !s.is_empty());
    if !content.iter().any(signed) {
        return None;
    }
    let parts = content
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall { id, name, signature, .. } => Some(Part::ToolCall {
                id: id.clone(),
                name: name.clone(),
                arguments: String::new(),
                signature: signature.clone().filter(|s| !s.is_empty()),
            }),
            p if carried(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    Some((key, parts))
}

/// Whether a message already carries reasoning (then nothing is restored into it).
fn has_reasoning(content: &[Part]) -> bool {
    content.iter().any(|p| carried(p) || matches!(p, Part::ToolCall { signature: Some(s), .. } if !s.is_empty()))
}

/// The assistant turns whose reasoning may be restored, latest first, with their first
/// call id.
fn restorable(req: &ChatRequest) -> impl Iterator<Item = (usize, String)> + '_ {
    req.messages
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, m)| m.role == Role::Assistant && !has_reasoning(&m.content))
        .filter_map(|(i, m)| {
            m.content.iter().find_map(|p| match p {
                Part::ToolCall { id, .. } if !id.is_empty() => Some((i, id.clone())),
                _ => None,
            })
        })
        .take(MAX_RESTORED_TURNS)
}

/// The call ids to look up for `req` (at most [`MAX_RESTORED_TURNS`]).
pub fn wanted(req: &ChatRequest) -> Vec<String> {
    restorable(req).map(|(_, id)| id).collect()
}

/// Put back the reasoning `lookup` finds for each restorable assistant turn where the
/// upstream had it: reasoning before the turn's first call at the start of the turn (before
/// its text), reasoning before a later call right before that call, call signatures on the
/// calls of the same id.
pub fn restore(req: &mut ChatRequest, mut lookup: impl FnMut(&str) -> Option<Vec<Part>>) {
    let found: Vec<(usize, Vec<Part>)> =
        restorable(req).filter_map(|(i, id)| lookup(&id).map(|parts| (i, parts))).collect();
    for (i, stored) in found {
        let content = std::mem::take(&mut req.messages[i].content);
        // Reasoning to insert before the call of an id (None: at the start).
        let mut before: Vec<(Option<String>, Vec<Part>)> = Vec::new();
        let mut sigs: Vec<(String, String)> = Vec::new();
        let mut pending = Vec::new();
        let mut first_call = true;
        for p in stored {
            match p {
                Part::ToolCall { id, signature, .. } => {
                    if let Some(s) = signature {
                        sigs.push((id.clone(), s));
                    }
                    if !pending.is_empty() {
                        before.push(((!first_call).then_some(id), std::mem::take(&mut pending)));
                    }
                    first_call = false;
                }
                p if carried(&p) => pending.push(p),
                _ => {}
            }
        }
        let mut out: Vec<Part> = Vec::with_capacity(content.len() + before.len() + pending.len());
        let mut place = |key: Option<&str>, out: &mut Vec<Part>| {
            if let Some(k) = before.iter().position(|(id, _)| id.as_deref() == key) {
                out.append(&mut before.swap_remove(k).1);
            }
        };
        place(None, &mut out);
        for mut p in content {
            if let Part::ToolCall { id, signature, .. } = &mut p {
                place(Some(id.as_str()), &mut out);
                if let Some((_, s)) = sigs.iter().find(|(cid, _)| cid == id) {
                    *signature = Some(s.clone());
                }
            }
            out.push(p);
        }
        // Reasoning after the last call, or before calls the client no longer has: at the end.
        for (_, mut parts) in before {
            out.append(&mut parts);
        }
        out.append(&mut pending);
        req.messages[i].content = out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_tags_once_and_open_returns_only_its_own() {
        let s = seal(Origin::Anthropic, "EqQB==");
        assert_eq!(s, "ailurus.anthropic.EqQB==");
        assert_eq!(seal(Origin::Gemini, &s), s, "a sealed value keeps its first origin");
        assert_eq!(open(&s, Origin::Anthropic), Some("EqQB=="));
        assert_eq!(open(&s, Origin::Gemini), None);
        assert_eq!(open(&s, Origin::Responses), None);
        assert!(is_foreign(&s, Origin::Responses));
        assert!(!is_foreign("", Origin::Responses), "an empty signature is no signature");
        assert_eq!(seal(Origin::Gemini, ""), "");
        assert_eq!(open("EqQB==", Origin::Anthropic), None, "unsealed values are not opened");
    }

    #[test]
    fn block_round_trips_signed_reasoning_and_drops_the_rest() {
        let parts = vec![
            Part::Thinking { text: "plan".into(), signature: Some(seal(Origin::Anthropic, "sig")) },
            Part::Thinking { text: "unsigned".into(), signature: None },
            Part::RedactedThinking { data: seal(Origin::Anthropic, "opaque") },
            Part::text("not reasoning"),
        ];
        let env = block(&parts).expect("an envelope");
        assert!(env.starts_with("ailurus.block."));
        let back = unblock(&env, "p").expect("decodes").expect("is a block");
        assert_eq!(back, vec![parts[0].clone(), parts[2].clone()]);
        assert_eq!(block(&parts[1..2]), None);
        assert_eq!(unblock("ailurus.gemini.x", "p"), Ok(None));
        let err = unblock("ailurus.block.%%%", "contents[1].parts[0].thoughtSignature").unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("contents[1].parts[0].thoughtSignature"), "{}", err.message);
        let text_only = format!("ailurus.block.{}", URL_SAFE_NO_PAD.encode(br#"[{"type":"text","text":"x"}]"#));
        assert!(unblock(&text_only, "p").is_err(), "a block holds reasoning only");
    }

    fn call(id: &str, sig: Option<&str>) -> Part {
        Part::ToolCall { id: id.into(), name: "f".into(), arguments: "{}".into(), signature: sig.map(str::to_string) }
    }

    #[test]
    fn kept_and_restore_put_reasoning_back_at_the_turn_start_and_on_its_calls() {
        use crate::protocol::canonical::{ChatResponse, FinishReason, Message, Usage};
        let thinking = Part::Thinking { text: "plan".into(), signature: Some(seal(Origin::Anthropic, "s")) };
        let resp = ChatResponse {
            id: "r".into(),
            model: "m".into(),
            content: vec![
                thinking.clone(),
                Part::text("checking"),
                call("c1", Some("ailurus.gemini.g")),
                call("c2", None),
            ],
            finish: FinishReason::ToolUse,
            usage: Usage::default(),
        };
        let (key, parts) = kept(&resp.content).expect("something to keep");
        assert_eq!(key, "c1");
        let assistant =
            |c1| Message { role: Role::Assistant, content: vec![Part::text("checking"), c1, call("c2", None)] };
        let mut req = ChatRequest {
            messages: vec![Message { role: Role::User, content: vec![Part::text("q")] }, assistant(call("c1", None))],
            ..ChatRequest::default()
        };
        assert_eq!(wanted(&req), vec!["c1".to_string()]);
        restore(&mut req, |id| (id == "c1").then(|| parts.clone()));
        assert_eq!(
            req.messages[1].content,
            vec![thinking, Part::text("checking"), call("c1", Some("ailurus.gemini.g")), call("c2", None)]
        );
        assert!(wanted(&req).is_empty(), "a turn with its reasoning is not looked up again");
        let no_calls = ChatResponse { content: vec![Part::text("hi")], ..resp.clone() };
        assert_eq!(kept(&no_calls.content), None);
        let unsigned = ChatResponse { content: vec![Part::text("hi"), call("c9", None)], ..resp };
        assert_eq!(kept(&unsigned.content), None, "nothing signed, nothing kept");
    }

    #[test]
    fn interleaved_reasoning_goes_back_before_its_own_call() {
        use crate::protocol::canonical::Message;
        let t = |s: &str| Part::Thinking { text: s.into(), signature: Some(seal(Origin::Anthropic, s)) };
        let answer = vec![t("one"), Part::text("checking"), call("c1", None), t("two"), call("c2", None)];
        let (key, parts) = kept(&answer).expect("kept");
        assert_eq!(key, "c1");
        let mut req = ChatRequest {
            messages: vec![Message {
                role: Role::Assistant,
                content: vec![Part::text("checking"), call("c1", None), call("c2", None)],
            }],
            ..ChatRequest::default()
        };
        restore(&mut req, |_| Some(parts.clone()));
        assert_eq!(req.messages[0].content, answer);
    }

    #[test]
    fn envelopes_are_found_in_a_body() {
        assert!(has_envelope(br#"{"signature":"ailurus.gemini.CiQB"}"#));
        assert!(!has_envelope(br#"{"signature":"EqQB","text":"about ailurus.gemini"}"#));
    }

    #[test]
    fn at_most_the_latest_turns_are_looked_up() {
        use crate::protocol::canonical::Message;
        let messages = (0..MAX_RESTORED_TURNS + 4)
            .map(|n| Message { role: Role::Assistant, content: vec![call(&format!("c{n}"), None)] })
            .collect();
        let req = ChatRequest { messages, ..ChatRequest::default() };
        let ids = wanted(&req);
        assert_eq!(ids.len(), MAX_RESTORED_TURNS);
        assert_eq!(ids[0], format!("c{}", MAX_RESTORED_TURNS + 3), "latest first");
    }
}
