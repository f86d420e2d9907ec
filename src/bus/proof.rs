//! Proof of possession on the bus: a request carries no bearer secret, only a MAC that is
//! good for that one request. The publisher sends
//!
//! - `Ailurus-Token-Id`: the token's sha256 (hex): which token; public, not a credential;
//! - `Ailurus-Proof-Time`: Unix seconds when it signed;
//! - `Ailurus-Proof`: HMAC-SHA256, keyed by the token's proof key
//!   ([`crate::credential::proof_key`], as lowercase hex text), over the lines
//!
//! ```text
//! ailurus-proof-v1
//! <subject>
//! <trace id>
//! <Ailurus-Proof-Time>
//! <Ailurus-Format or empty>
//! <Ailurus-Op or empty>
//! <Ailurus-Model or empty>
//! <sha256 of the body, hex>
//! ```
//!
//! joined by `\n` with no final newline. The trace id is the request's own: the seed body's
//! `trace_id`, or the `Ailurus-Trace` header of a native or user-API request. A worker
//! recomputes the MAC (constant-time comparison), refuses a time more than [`WINDOW_SECS`]
//! away from its clock, and refuses a trace id that a proof of the same token already used
//! (the replay set, `quota::proof`). So a copy read from `LLM_REQUESTS` is worthless: as is
//! it is a replay, and any change (trace id, body, subject, headers) breaks the MAC.

use super::headers;
use async_nats::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The first line of every signed text (a new scheme is a new label).
const LABEL: &str = "ailurus-proof-v1";

/// How far (seconds) a proof's time may be from the verifier's clock, either way.
pub const WINDOW_SECS: i64 = 60;

/// Unix seconds now.
pub fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// sha256 of a body, lowercase hex.
pub fn body_digest(body: &[u8]) -> String {
    crate::credential::hex(&Sha256::digest(body))
}

/// Everything a proof is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// The subject the request was published on.
    pub subject: String,
    /// The request's trace id.
    pub trace: String,
    /// Unix seconds when it was signed.
    pub time: i64,
    /// `Ailurus-Format` (empty when absent).
    pub format: String,
    /// `Ailurus-Op` (empty when absent).
    pub op: String,
    /// `Ailurus-Model` (empty when absent).
    pub model: String,
    /// sha256 of the body, lowercase hex ([`body_digest`]).
    pub body_sha256: String,
}

impl Bound {
    /// What a request published on `subject` with `headers` and `body` is bound to.
    pub fn of(subject: &str, trace: &str, time: i64, headers: &HeaderMap, body: &[u8]) -> Self {
        let get = |k: &str| headers.get(k).map(|v| v.as_str().to_string()).unwrap_or_default();
        Self {
            subject: subject.to_string(),
            trace: trace.to_string(),
            time,
            format: get(headers::FORMAT),
            op: get(headers::OP),
            model: get(headers::MODEL),
            body_sha256: body_digest(body),
        }
    }

    /// The MAC of this binding under `key` (a proof key in hex, used as text).
    fn mac(&self, key: &str) -> HmacSha256 {
        // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
        let mut m = HmacSha256::new_from_slice(key.as_bytes()).unwrap_or_else(|_| unreachable!());
        let time = self.time.to_string();
        let lines = [LABEL, &self.subject, &self.trace, &time, &self.format, &self.op, &self.model, &self.body_sha256];
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                m.update(b"\n");
            }
            m.update(line.as_bytes());
        }
        m
    }

    /// The proof (hex) of this binding under `key`.
    pub fn sign(&self, key: &str) -> String {
        crate::credential::hex(&self.mac(key).finalize().into_bytes())
    }

    /// Whether `proof` (hex) is this binding's MAC under `key`; the comparison takes the same
    /// time wherever the first difference is.
    pub fn verify(&self, key: &str, proof: &str) -> bool {
        match unhex32(proof) {
            Some(bytes) => self.mac(key).verify_slice(&bytes).is_ok(),
            None => false,
        }
    }
}

/// 64 hex digits as 32 bytes.
fn unhex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// A token holder's signing side: the token's id and proof key (never the token).
#[derive(Clone)]
pub struct Signer {
    /// sha256 of the token (hex): `Ailurus-Token-Id`.
    token_id: String,
    /// [`crate::credential::proof_key`] of the token.
    key: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(***)")
    }
}

impl Signer {
    /// The signer of `token`.
    pub fn new(token: &str) -> Self {
        Self { token_id: crate::credential::hash(token), key: crate::credential::proof_key(token) }
    }

    /// Add the proof headers for a request about to be published on `subject` with
    /// `headers` (its `Ailurus-Format` / `-Op` / `-Model` already set) and `body`; `trace`
    /// is its trace id, `time` Unix seconds.
    pub fn sign(&self, subject: &str, trace: &str, time: i64, headers: &mut HeaderMap, body: &[u8]) {
        let proof = Bound::of(subject, trace, time, headers, body).sign(&self.key);
        headers.insert(headers::TOKEN_ID, self.token_id.as_str());
        headers.insert(headers::PROOF_TIME, time.to_string().as_str());
        headers.insert(headers::PROOF, proof.as_str());
    }
}

/// A proof as a request presents it.
#[derive(Clone, PartialEq, Eq)]
pub struct Presented {
    /// `Ailurus-Token-Id`, lowercase.
    pub token_id: String,
    /// `Ailurus-Proof`.
    proof: String,
    /// What the request is, as the verifier sees it (`trace` empty when it has none).
    pub bound: Bound,
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Presented(***)")
    }
}

impl Presented {
    /// The proof a message carries: `None` without `Ailurus-Token-Id`, `Err` (why) when
    /// its headers are incomplete or malformed. `trace` is the request's trace id, if it has one.
    pub fn from_message(
        subject: &str,
        trace: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Option<Result<Self, &'static str>> {
        let id = headers.get(headers::TOKEN_ID)?.as_str().trim().to_ascii_lowercase();
        Some(Self::parse(subject, trace, headers, body, id))
    }

    fn parse(
        subject: &str,
        trace: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
        id: String,
    ) -> Result<Self, &'static str> {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("Ailurus-Token-Id must be the token's sha256 in hex (64 digits)");
        }
        let time = headers
            .get(headers::PROOF_TIME)
            .and_then(|v| v.as_str().trim().parse::<i64>().ok())
            .ok_or("Ailurus-Proof-Time (Unix seconds) is missing or not a number")?;
        let proof = headers
            .get(headers::PROOF)
            .map(|v| v.as_str().trim().to_ascii_lowercase())
            .ok_or("Ailurus-Proof is missing")?;
        let trace = trace
            .filter(|t| !t.is_empty())
            .ok_or("a proof needs the request's trace id (the seed trace_id, or the Ailurus-Trace header)")?;
        Ok(Self { token_id: id, proof, bound: Bound::of(subject, trace, time, headers, body) })
    }

    /// Whether the MAC is right under `key` (constant-time).
    pub fn verify(&self, key: &str) -> bool {
        self.bound.verify(key, &self.proof)
    }

    /// Whether the proof's time is within [`WINDOW_SECS`] of `now`.
    pub fn fresh_at(&self, now: i64) -> bool {
        self.bound.time.abs_diff(now) <= WINDOW_SECS.unsigned_abs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Platform;

    fn openai() -> String {
        crate::bus::subjects::request(Platform::Openai)
    }

    fn claude() -> String {
        crate::bus::subjects::request(Platform::Claude)
    }

    fn signed(token: &str, subject: &str, trace: &str, body: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(headers::FORMAT, "openai.chat");
        Signer::new(token).sign(subject, trace, 1_700_000_000, &mut h, body);
        h
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let key = crate::credential::proof_key("sk-ail-t");
        let h = signed("sk-ail-t", &openai(), "t1", b"{}");
        let ok = Presented::from_message(&openai(), Some("t1"), &h, b"{}").unwrap().unwrap();
        assert_eq!(ok.token_id, crate::credential::hash("sk-ail-t"));
        assert!(ok.verify(&key));
        assert!(ok.fresh_at(1_700_000_060) && !ok.fresh_at(1_700_000_061) && ok.fresh_at(1_699_999_940));
        for (subject, trace, body) in
            [(&claude(), "t1", &b"{}"[..]), (&openai(), "t2", b"{}"), (&openai(), "t1", b"{ }")]
        {
            let p = Presented::from_message(subject, Some(trace), &h, body).unwrap().unwrap();
            assert!(!p.verify(&key), "{subject} {trace}");
        }
        let mut other = h.clone();
        other.insert(headers::FORMAT, "anthropic.messages");
        assert!(!Presented::from_message(&openai(), Some("t1"), &other, b"{}").unwrap().unwrap().verify(&key));
        // The token's sha256 (public) is not the key.
        assert!(!ok.verify(&crate::credential::hash("sk-ail-t")));
    }

    #[test]
    fn incomplete_proofs_say_what_is_missing() {
        assert!(Presented::from_message("s", Some("t"), &HeaderMap::new(), b"").is_none());
        let mut h = HeaderMap::new();
        h.insert(headers::TOKEN_ID, "abc");
        assert!(Presented::from_message("s", Some("t"), &h, b"").unwrap().unwrap_err().contains("64 digits"));
        let h = signed("x", "s", "t", b"");
        assert!(Presented::from_message("s", None, &h, b"").unwrap().unwrap_err().contains("trace id"));
        assert!(
            format!("{:?}", Presented::from_message("s", Some("t"), &h, b"").unwrap().unwrap()) == "Presented(***)"
        );
        assert!(unhex32(&"zz".repeat(32)).is_none());
    }

    #[test]
    fn the_python_recipe_gives_the_same_proof() {
        // hmac.new(proof_key.encode(), "\n".join(["ailurus-proof-v1", subject, "t1",
        // "1700000000", "", "", "", sha256(b"{}").hexdigest()]).encode(), sha256) with the
        // subject llm.request.openai.
        let b = Bound {
            subject: openai(),
            trace: "t1".into(),
            time: 1_700_000_000,
            format: String::new(),
            op: String::new(),
            model: String::new(),
            body_sha256: body_digest(b"{}"),
        };
        assert_eq!(b.sign(&crate::credential::proof_key("abc")), PYTHON_PROOF);
    }

    /// Computed with Python's `hmac` module (see the test above).
    const PYTHON_PROOF: &str = "158c87217c73a41288cf8fabea84de8f3a22b98b08ee606ed8ed3774a0210809";
}
