//! The GenAI semantic conventions' metrics, with the bucket boundaries they advise.

use opentelemetry::metrics::{Histogram, Meter};
use opentelemetry::KeyValue;

/// Seconds: `gen_ai.client.operation.duration`'s advised boundaries.
const DURATION_BUCKETS: [f64; 14] =
    [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
/// Seconds: `gen_ai.server.time_to_first_token`'s advised boundaries.
const FIRST_TOKEN_BUCKETS: [f64; 16] =
    [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
/// Tokens: `gen_ai.client.token.usage`'s advised boundaries (powers of 4).
const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// The three instruments.
pub struct Instruments {
    /// `gen_ai.client.token.usage` (`{token}`, `gen_ai.token.type` = `input` | `output`).
    tokens: Histogram<u64>,
    /// `gen_ai.client.operation.duration` (s): the whole request, as the client waited.
    duration: Histogram<f64>,
    /// `gen_ai.server.time_to_first_token` (s): from the attempt's start to the first
    /// answer-bearing chunk.
    first_token: Histogram<f64>,
}

impl Instruments {
    /// Register them on `meter`.
    pub fn new(meter: &Meter) -> Self {
        Self {
            tokens: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Input and output tokens used")
                .with_boundaries(TOKEN_BUCKETS.to_vec())
                .build(),
            duration: meter
                .f64_histogram("gen_ai.client.operation.duration")
                .with_unit("s")
                .with_description("GenAI operation duration")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            first_token: meter
                .f64_histogram("gen_ai.server.time_to_first_token")
                .with_unit("s")
                .with_description("Time to the first answer chunk")
                .with_boundaries(FIRST_TOKEN_BUCKETS.to_vec())
                .build(),
        }
    }

    /// One finished request: its duration and, when known, its tokens.
    pub fn finished(&self, attrs: &[KeyValue], seconds: f64, tokens: Option<(u64, u64)>) {
        self.duration.record(seconds, attrs);
        if let Some((input, output)) = tokens {
            let mut with_type = attrs.to_vec();
            with_type.push(KeyValue::new("gen_ai.token.type", "input"));
            self.tokens.record(input, &with_type);
            if let Some(last) = with_type.last_mut() {
                *last = KeyValue::new("gen_ai.token.type", "output");
            }
            self.tokens.record(output, &with_type);
        }
    }

    /// The first chunk of an answer arrived after `seconds`.
    pub fn first_token(&self, attrs: &[KeyValue], seconds: f64) {
        self.first_token.record(seconds, attrs);
    }
}
