//! Message types: the seed's NATS messages ([`seed`]) and the canonical chat model that
//! providers and format converters speak ([`canonical`]).

pub mod accumulate;
pub mod canonical;
pub mod seed;

pub use seed::{ChunkMessage, LLMMessage, LLMNATSRequest, LLMNATSResponse, Platform, QuotaChangeEvent};
