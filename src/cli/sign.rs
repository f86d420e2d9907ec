//! `ailurus sign <subject> <body> [-H K:V]…`: the headers that prove possession of a token
//! for one request (`bus::proof`), printed as `-H K:V` words for the `nats` CLI, which
//! cannot compute an HMAC itself:
//!
//! ```sh
//! B='{"trace_id":"t-1","user_id":"demo",…}'
//! nats req llm.request.claude "$B" $(ailurus sign llm.request.claude "$B")
//! ```
//!
//! The token (`--token`, `AILURUS_TOKEN`, else the demo token `ailurus up` saved) is read
//! here and never printed; the proof is good once and for 60 s.

use crate::bus::headers;
use crate::bus::proof::{now_secs, Signer};
use crate::bus::subjects::Token;
use async_nats::HeaderMap;
use clap::Args;
use std::process::ExitCode;

/// Arguments of `ailurus sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The subject the request will be published on (e.g. `llm.request.claude`).
    pub subject: String,
    /// The body, exactly as it will be sent.
    pub body: String,
    /// Other headers the request carries (`K:V`); printed back, and `Ailurus-Format`,
    /// `-Op`, `-Model` and `-Trace` are signed.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// API token (default: the demo token `ailurus up` saved).
    #[arg(long, env = "AILURUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Print the headers.
pub fn run(args: SignArgs) -> Result<ExitCode, String> {
    let token = super::req::token_or_demo(args.token.clone())
        .ok_or("no token: pass --token, set AILURUS_TOKEN, or run `ailurus up` for the demo token")?;
    let mut given = Vec::new();
    for h in &args.headers {
        let (k, v) = h.split_once(':').ok_or_else(|| format!("header {h:?} is not K:V"))?;
        given.push((k.trim().to_string(), v.trim().to_string()));
    }
    let words: Vec<String> = proof_headers(&token, &args.subject, args.body.as_bytes(), &given, now_secs())?
        .into_iter()
        .map(|(k, v)| format!("-H {k}:{v}"))
        .collect();
    println!("{}", words.join(" "));
    Ok(ExitCode::SUCCESS)
}

/// Every header of a request on `subject` with `body` and `given` headers, signed by
/// `token` at `now`: the given ones, `Ailurus-Trace` when the request has no trace id (a
/// seed body's `trace_id`, or a given `Ailurus-Trace`), then the proof's three.
pub fn proof_headers(
    token: &str,
    subject: &str,
    body: &[u8],
    given: &[(String, String)],
    now: i64,
) -> Result<Vec<(String, String)>, String> {
    if given.iter().any(|(_, v)| v.contains(char::is_whitespace)) {
        return Err("header values with spaces cannot be printed as words: leave them out of `sign`".into());
    }
    let mut h = HeaderMap::new();
    for (k, v) in given {
        h.append(k.as_str(), v.as_str());
    }
    let mut out = given.to_vec();
    let seed_trace = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("trace_id").and_then(|t| t.as_str()).map(str::to_string));
    let trace = match (h.get(headers::TRACE).map(|v| v.as_str().to_string()), seed_trace) {
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => {
            let t = Token::random().to_string();
            h.insert(headers::TRACE, t.as_str());
            out.push((headers::TRACE.to_string(), t.clone()));
            t
        }
    };
    Token::new("trace_id", &trace).map_err(|e| e.to_string())?;
    Signer::new(token).sign(subject, &trace, now, &mut h, body);
    for name in [headers::TOKEN_ID, headers::PROOF_TIME, headers::PROOF] {
        let v = h.get(name).map(|v| v.as_str().to_string()).unwrap_or_default();
        out.push((name.to_string(), v));
    }
    Ok(out)
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
    use crate::bus::proof::Presented;

    #[test]
    fn printed_headers_verify_as_a_worker_checks_them() {
        let body = br#"{"trace_id":"t-9","user_id":"demo"}"#;
        let given = vec![("Ailurus-Heartbeat".to_string(), "1".to_string())];
        let out = proof_headers("sk-ail-x", &claude(), body, &given, 1_700_000_000).unwrap();
        let mut h = HeaderMap::new();
        for (k, v) in &out {
            h.insert(k.as_str(), v.as_str());
        }
        assert_eq!(out[0], given[0]);
        assert!(h.get(headers::TRACE).is_none(), "the seed body has a trace id");
        let p = Presented::from_message(&claude(), Some("t-9"), &h, body).unwrap().unwrap();
        assert!(p.verify(&crate::credential::proof_key("sk-ail-x")));
        assert!(!out.iter().any(|(_, v)| v.contains("sk-ail-x")));
        // A native body gets a trace id of its own.
        let native = proof_headers("sk-ail-x", &openai(), b"{}", &[], 1).unwrap();
        assert_eq!(native[0].0, headers::TRACE);
        assert!(proof_headers("t", "s", b"{}", &[("K".into(), "a b".into())], 1).is_err());
    }
}
