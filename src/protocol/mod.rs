//! Message types: the seed's NATS messages ([`seed`]) and the canonical chat model that
//! providers and format converters speak ([`canonical`]), and the format tag a request
//! carries ([`tag`]).

pub mod accumulate;
pub mod canonical;
pub mod seed;
pub mod tag;

pub use seed::{ChunkMessage, LLMMessage, LLMNATSRequest, LLMNATSResponse, Platform, QuotaChangeEvent};
pub use tag::{Format, Op};
