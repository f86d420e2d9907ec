//! `ailurus req <platform> "<prompt>"`: one request over NATS, printed as it streams.

use crate::bus::codec::Encoding;
use crate::bus::headers::ReplyKind;
use crate::bus::subjects::Token;
use crate::client::Requester;
use crate::config::Config;
use crate::protocol::{LLMMessage, LLMNATSRequest, LLMNATSResponse, Platform};
use async_nats::HeaderMap;
use clap::Args;
use std::io::Write;
use std::process::ExitCode;

/// Arguments of `ailurus req`.
#[derive(Debug, Args)]
pub struct ReqArgs {
    /// claude, codex, gemini or openai.
    pub platform: Platform,
    /// The user message.
    pub prompt: String,
    /// Model to ask for.
    #[arg(long, default_value = "mock")]
    pub model: String,
    /// Stream the answer as it is produced.
    #[arg(long)]
    pub stream: bool,
    /// User the request is billed to.
    #[arg(long, default_value = "demo")]
    pub user: String,
    /// Chat session id, for chat sync.
    #[arg(long)]
    pub session: Option<String>,
    /// Encode the request (and so the replies) as MessagePack.
    #[arg(long)]
    pub msgpack: bool,
    /// Upper bound on output tokens.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// API token (default: the demo token `ailurus up` saved). It is never sent: the request
    /// carries a proof of possession made with it.
    #[arg(long, env = "AILURUS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Send the request and print the answer and a usage line.
pub async fn run(config: Config, args: ReqArgs) -> Result<ExitCode, String> {
    Token::new("user_id", &args.user).map_err(|e| e.to_string())?;
    if let Some(s) = &args.session {
        Token::new("session_id", s).map_err(|e| e.to_string())?;
    }
    let client = super::connect(&config, "ailurus-req").await?;
    let enc = if args.msgpack { Encoding::MsgPack } else { Encoding::Json };
    let req = LLMNATSRequest {
        trace_id: Token::random().to_string(),
        user_id: args.user,
        session_id: args.session,
        platform: args.platform,
        model: args.model,
        messages: vec![LLMMessage { role: "user".into(), content: args.prompt }],
        stream: args.stream,
        metadata: None,
        max_tokens: args.max_tokens,
        temperature: None,
        system: None,
        token: None,
    };
    let token = token_or_demo(args.token.clone());
    let mut requester = Requester::new(client);
    if let Some(t) = &token {
        // Only a proof bound to this request travels on NATS (and so into the audit stream).
        requester = requester.signed_by(t);
    }
    let mut replies = requester.send(&req, enc, HeaderMap::new()).await.map_err(|e| e.to_string())?;
    let mut stdout = std::io::stdout();
    while let Some(reply) = replies.next_content().await {
        let reply = reply.map_err(|e| e.to_string())?;
        match reply.kind {
            ReplyKind::Chunk => {
                let chunk = reply.chunk(enc).map_err(|e| e.to_string())?;
                let _ = write!(stdout, "{}", chunk.delta);
                let _ = stdout.flush();
            }
            ReplyKind::Done => {
                let resp = reply.response(enc).map_err(|e| e.to_string())?;
                if !req.stream {
                    print!("{}", resp.content);
                }
                let _ = writeln!(stdout);
                let _ = stdout.flush();
                eprintln!("{}", usage_line(&resp));
                return Ok(ExitCode::SUCCESS);
            }
            ReplyKind::Error => {
                let resp = reply.response(enc).map_err(|e| e.to_string())?;
                let status = reply.status.unwrap_or(500);
                return Err(format!("{status}: {}", resp.error.unwrap_or_else(|| "unknown error".into())));
            }
            ReplyKind::Heartbeat => {}
        }
    }
    Err("the reply stream ended without a final message".into())
}

/// `token`, else the one `ailurus up` saved for the demo user (`$AILURUS_DATA/demo-token`).
pub(crate) fn token_or_demo(token: Option<String>) -> Option<String> {
    token.or_else(|| {
        let dir = std::env::var("AILURUS_DATA").unwrap_or_else(|_| ".ailurus-data".into());
        std::fs::read_to_string(std::path::Path::new(&dir).join("demo-token")).ok().map(|t| t.trim().to_string())
    })
}

/// `[mock] 12 in · 34 out tokens · $0.000123 · 45 ms · stop`
pub fn usage_line(r: &LLMNATSResponse) -> String {
    format!(
        "[{}] {} in · {} out tokens{} · ${:.6} · {} ms{}",
        r.model,
        r.tokens_input,
        r.tokens_output,
        if r.usage_estimated { " (estimated)" } else { "" },
        r.cost,
        r.duration_ms,
        r.finish_reason.as_deref().map(|f| format!(" · {f}")).unwrap_or_default()
    )
}
