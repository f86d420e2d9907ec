//! OpenTelemetry GenAI traces and metrics, exported as OTLP over HTTP/protobuf.
//!
//! Off unless an endpoint is configured (`[telemetry] otlp_endpoint`, or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`): then a worker has no [`Telemetry`], every hook is one
//! `Option` check, and the upstream call's propagation is one relaxed atomic load
//! ([`active`]). With it on, each request is a `chat {model}` span with the GenAI semantic
//! conventions' attributes, with child spans for admission and for every upstream attempt.
//!
//! - [`spans`]: the request's span, its children and their attributes.
//! - [`metrics`]: `gen_ai.client.token.usage`, `gen_ai.client.operation.duration`,
//!   `gen_ai.server.time_to_first_token`.
//! - [`propagate`]: W3C `traceparent` in from NATS headers, out on the upstream HTTP call.

pub mod metrics;
pub mod propagate;
pub mod spans;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The standard variable naming the OTLP endpoint when the config names none.
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Whether any exporter was started in this process: the cheap test the upstream call makes
/// before looking for a span to propagate.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether telemetry export is on in this process.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// `[telemetry]`: OpenTelemetry export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP receiver (`http://collector:4318`); spans go to
    /// `<endpoint>/v1/traces`, metrics to `<endpoint>/v1/metrics`. Absent: the standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, and with neither, export is off.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported resource.
    #[serde(default = "TelemetryConfig::default_service_name")]
    pub service_name: String,
    /// Put prompts and answers on the request span (`gen_ai.input.messages`,
    /// `gen_ai.output.messages`, `gen_ai.system_instructions`). Off: only counts, models and
    /// outcomes leave the gateway.
    #[serde(default = "TelemetryConfig::default_capture_content")]
    pub capture_content: bool,
    /// How often finished spans are sent and metrics are read, in milliseconds.
    #[serde(default = "TelemetryConfig::default_export_interval_ms")]
    pub export_interval_ms: u64,
    /// Longest one export may take, in milliseconds.
    #[serde(default = "TelemetryConfig::default_export_timeout_ms")]
    pub export_timeout_ms: u64,
}

impl TelemetryConfig {
    fn default_service_name() -> String {
        "ailurus".into()
    }

    const fn default_capture_content() -> bool {
        false
    }

    const fn default_export_interval_ms() -> u64 {
        5_000
    }

    const fn default_export_timeout_ms() -> u64 {
        10_000
    }

    /// The receiver's base URL: the config's, else `env(OTEL_EXPORTER_OTLP_ENDPOINT)`;
    /// `None` when export is off.
    pub fn endpoint(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        self.otlp_endpoint
            .clone()
            .or_else(|| env(ENDPOINT_ENV))
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
    }

    /// Semantic checks; each message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(e) = &self.otlp_endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(format!("telemetry.otlp_endpoint {e:?} must start with http:// or https://"));
            }
        }
        if self.service_name.trim().is_empty() {
            return Err("telemetry.service_name must not be empty".into());
        }
        if self.export_interval_ms == 0 || self.export_timeout_ms == 0 {
            return Err("telemetry.export_interval_ms and telemetry.export_timeout_ms must be positive".into());
        }
        Ok(())
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: Self::default_service_name(),
            capture_content: Self::default_capture_content(),
            export_interval_ms: Self::default_export_interval_ms(),
            export_timeout_ms: Self::default_export_timeout_ms(),
        }
    }
}

/// A running exporter: the tracer, the GenAI instruments, and the providers to flush.
pub struct Telemetry {
    /// Makes the spans.
    tracer: SdkTracer,
    /// The GenAI metrics.
    metrics: metrics::Instruments,
    /// Whether prompts and answers go on the spans.
    capture_content: bool,
    /// Span pipeline (batched, its own thread).
    traces: SdkTracerProvider,
    /// Metric pipeline (a periodic reader, its own thread).
    meters: SdkMeterProvider,
}

impl Telemetry {
    /// Start exporting to `endpoint` (see [`TelemetryConfig::endpoint`]). The exporters send
    /// from their own threads with a blocking HTTP client, never on the request path.
    pub fn start(cfg: &TelemetryConfig, endpoint: &str) -> Result<Self, String> {
        let timeout = Duration::from_millis(cfg.export_timeout_ms);
        let interval = Duration::from_millis(cfg.export_interval_ms);
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{endpoint}/v1/traces"))
            .with_timeout(timeout)
            .build()
            .map_err(|e| format!("telemetry: span exporter: {e}"))?;
        let points = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{endpoint}/v1/metrics"))
            .with_timeout(timeout)
            .build()
            .map_err(|e| format!("telemetry: metric exporter: {e}"))?;
        let resource = Resource::builder()
            .with_service_name(cfg.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let batch = BatchConfigBuilder::default().with_scheduled_delay(interval).build();
        let traces = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(spans).with_batch_config(batch).build())
            .with_resource(resource.clone())
            .build();
        let meters = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(points).with_interval(interval).build())
            .with_resource(resource)
            .build();
        let tracer = traces.tracer("ailurus");
        let metrics = metrics::Instruments::new(&opentelemetry::metrics::MeterProvider::meter(&meters, "ailurus"));
        ACTIVE.store(true, Ordering::Relaxed);
        Ok(Self { tracer, metrics, capture_content: cfg.capture_content, traces, meters })
    }

    /// Send what is pending and stop (blocks until the exporters answer or time out).
    pub fn shutdown(&self) {
        if let Err(e) = self.traces.shutdown() {
            tracing::warn!(error = %e, "telemetry: span export did not finish");
        }
        if let Err(e) = self.meters.shutdown() {
            tracing::warn!(error = %e, "telemetry: metric export did not finish");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_from_config_then_environment() {
        let none = |_: &str| None;
        let env = |k: &str| (k == ENDPOINT_ENV).then(|| "http://env:4318/".to_string());
        let mut cfg = TelemetryConfig::default();
        assert_eq!(cfg.endpoint(&none), None);
        assert_eq!(cfg.endpoint(&env).as_deref(), Some("http://env:4318"));
        cfg.otlp_endpoint = Some("http://cfg:4318".into());
        assert_eq!(cfg.endpoint(&env).as_deref(), Some("http://cfg:4318"));
        cfg.validate().expect("valid");
        cfg.otlp_endpoint = Some("cfg:4318".into());
        assert!(cfg.validate().unwrap_err().contains("telemetry.otlp_endpoint"));
    }
}
