//! Responses the bridge writes itself: JSON bodies, errors in the route's format (or a
//! neutral JSON shape when no route matched), and the headers copied from a reply.

use crate::bus::headers;
use crate::bus::subjects::Token;
use crate::client::{ClientError, Reply};
use crate::protocol::Format;
use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

/// A JSON response.
pub(super) fn json(status: u16, body: impl Into<Bytes>) -> Response {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// An error in the route's format, or a neutral JSON shape.
pub(super) fn error(format: Option<Format>, status: u16, message: &str) -> Response {
    let body = match format {
        Some(f) => f.render_error(status, message),
        None => serde_json::json!({"error": {"message": message, "type": "ailurus_error", "code": status}})
            .to_string()
            .into_bytes(),
    };
    json(status, body)
}

/// An error of a management-API route, in NEW-API's envelope.
pub(super) fn api_error(status: u16, message: &str) -> Response {
    json(status, serde_json::json!({"success": false, "message": message, "data": null}).to_string().into_bytes())
}

/// `Retry-After` from a reply, and the trace id as `x-request-id`.
pub(super) fn copy_reply_headers(reply: &Reply, r: &mut Response, trace: &Token) {
    if let Some(ra) = reply.headers.get(headers::RETRY_AFTER).and_then(|v| HeaderValue::from_str(v.as_str()).ok()) {
        r.headers_mut().insert("retry-after", ra);
    }
    if let Ok(v) = HeaderValue::from_str(trace.as_str()) {
        r.headers_mut().insert(HeaderName::from_static("x-request-id"), v);
    }
}

/// The requester's failure (no worker, a silent worker, …) in the caller's format.
pub(super) fn client_error(format: Format, e: &ClientError) -> Response {
    match e {
        ClientError::NoWorker => {
            let mut r = error(Some(format), 503, "no Ailurus worker is serving requests right now");
            r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            r
        }
        ClientError::WorkerSilent(_) => error(Some(format), 504, &e.to_string()),
        ClientError::Publish(m) if m.contains("payload") => error(Some(format), 413, &e.to_string()),
        other => error(Some(format), 502, &other.to_string()),
    }
}
