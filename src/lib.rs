//! # Ailurus — a NATS-native LLM gateway runtime
//!
//! Workers queue-subscribe to `llm.request.<platform>`, call an upstream provider and
//! stream the answer back over NATS; all state lives in NATS (JetStream streams and KV).
//! `ARCHITECTURE.md` is the long version of this map.
//!
//! - [`protocol`]: the seed's wire messages (`LLMNATSRequest`, `LLMNATSResponse`, chunks,
//!   `QuotaChangeEvent`) and the canonical chat model every provider speaks.
//! - [`bus`]: everything about NATS itself — subjects (typed builders over `subjects.toml`),
//!   the JSON / MessagePack codec, and the reply-protocol headers.
//! - [`formats`]: one module per client wire API (Anthropic Messages, OpenAI Chat, OpenAI
//!   Responses, Gemini), converting to and from the canonical model, bodies and streams.
//! - [`providers`]: one module per upstream kind behind the closed [`providers::ProviderKind`]
//!   enum, plus the built-in `mock`.
//! - [`channel`]: one configured upstream (kind, URL, keys from env, models, priority,
//!   timeouts); [`redact`] keeps secrets out of every message.
//! - [`quota`]: tokens (KV `TOKENS`, watched), accounts (KV `QUOTA`), server-side spend
//!   counters, reserve and settle, the `LLM_USAGE` ledger and its rebuild.
//! - [`stats`]: usage statistics kept at write time (per-hour and per-day rollups of the
//!   ledger in KV `USAGE_STATS`), read back as series, splits and a heatmap, rebuildable.
//! - [`router`]: candidates for a model: priority tiers, weighted random inside a tier,
//!   cooldown with half-open probes.
//! - [`worker`]: the request loop, bounded concurrency, in-flight registry, cancellation, drain.
//! - [`audit`]: replay and tail over `LLM_REQUESTS` / `LLM_USAGE`, chat history from
//!   `CHAT_MESSAGES`; never prints a token.
//! - [`bridge`]: the HTTP front door: route table → subject + format tag, bytes copied both
//!   ways, cancel on disconnect. Knows no format beyond its route table.
//! - [`metrics`]: Prometheus text of the bridge and the worker, `gateway_overhead_seconds`
//!   among them.
//! - [`telemetry`]: OpenTelemetry GenAI spans and metrics over OTLP/HTTP, `traceparent` in
//!   from NATS headers and out to the upstream; off (and free) without an endpoint.
//! - [`client`]: the requester side of the reply protocol (used by `ailurus req` and tests).
//! - [`streams`]: applies `streams/*.json` to JetStream, idempotently.
//! - [`nats_server`]: finds and spawns a pinned local `nats-server` (for `ailurus up` and tests).
//! - [`config`]: typed configuration with defaults and `validate()`.
//! - [`kv_mirror`]: the fail-closed in-memory copy of a KV bucket (tokens, live configuration).
//! - [`live`]: channels, prices and group ratios in KV buckets, changed with events.
//! - [`seal`]: API keys sealed at rest (XChaCha20-Poly1305).
//! - [`seed_config`]: CodeSwitch's NEW-API and NATS settings when nothing explicit is set.
//! - [`shutdown`]: the one shutdown signal every loop selects on.
//! - [`cli`]: one file per subcommand; `main.rs` only dispatches.

pub mod audit;
pub mod bridge;
pub mod bus;
pub mod channel;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod credential;
pub mod error;
pub mod formats;
pub mod kv_mirror;
pub mod live;
pub mod metrics;
pub mod nats_server;
pub mod pricing;
pub mod protocol;
pub mod providers;
pub mod quota;
pub mod redact;
pub mod router;
pub mod seal;
pub mod seed_config;
pub mod shutdown;
pub mod sse;
pub mod stats;
pub mod streams;
pub mod telemetry;
pub mod tokenize;
pub mod wildcard;
pub mod worker;

// Lets code shared with the integration tests (tests/support) name this crate `ailurus` here too.
extern crate self as ailurus;
