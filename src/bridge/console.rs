//! The web console: static files embedded in the binary (`src/bridge/assets/`), served at `/` (the page) and `/console/…` (its scripts, styles and the vendored
//! charting library). Every data call the page makes goes to the management API
//! (`/api/…`) and the LLM routes, so the bridge serves bytes and nothing else.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

/// One embedded file.
struct Asset {
    /// Its path below `/console/`.
    path: &'static str,
    /// `Content-Type`.
    mime: &'static str,
    /// The bytes.
    body: &'static [u8],
}

/// Declares the embedded files: `(path below /console/, mime)`.
macro_rules! assets {
    ($(($path:literal, $mime:expr)),* $(,)?) => {
        &[$(Asset { path: $path, mime: $mime, body: include_bytes!(concat!("assets/", $path)) }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file of the console.
const ASSETS: &[Asset] = assets![
    ("index.html", "text/html; charset=utf-8"),
    ("app.css", CSS),
    ("app.js", JS),
    ("api.js", JS),
    ("dom.js", JS),
    ("chart.js", JS),
    ("pages/dashboard.js", JS),
    ("pages/logs.js", JS),
    ("pages/channels.js", JS),
    ("pages/tokens.js", JS),
    ("pages/users.js", JS),
    ("pages/models.js", JS),
    ("pages/playground.js", JS),
    ("vendor/uPlot.iife.min.js", JS),
    ("vendor/uPlot.min.css", CSS),
];

/// The console's Content-Security-Policy: nothing but this origin, no inline script, no
/// plugin, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the page.
pub(super) fn index(head: bool) -> Response {
    asset("index.html", head).unwrap_or_else(|| not_found("index.html"))
}

/// `GET /console/<path>`.
pub(super) fn file(path: &str, head: bool) -> Response {
    let rest = path.strip_prefix("/console/").unwrap_or("");
    asset(rest, head).unwrap_or_else(|| not_found(rest))
}

fn asset(path: &str, head: bool) -> Option<Response> {
    let a = ASSETS.iter().find(|a| a.path == path)?;
    let mut r = Response::new(if head { Body::empty() } else { Body::from(a.body) });
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static(a.mime));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("cache-control", HeaderValue::from_static("no-cache"));
    Some(r)
}

fn not_found(path: &str) -> Response {
    let mut r = Response::new(Body::from(format!("no console file {path:?}\n")));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut().insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_the_policy() {
        for a in ASSETS {
            let r = file(&format!("/console/{}", a.path), false);
            assert_eq!(r.status(), StatusCode::OK, "{}", a.path);
            assert_eq!(r.headers().get("content-type").and_then(|v| v.to_str().ok()), Some(a.mime));
            assert!(r.headers().get("content-security-policy").is_some(), "{}", a.path);
        }
        assert_eq!(file("/console/../Cargo.toml", false).status(), StatusCode::NOT_FOUND);
        assert_eq!(index(true).status(), StatusCode::OK);
    }
}
