//! Where and how one call to an HTTP upstream goes: its URL and auth headers. Each HTTP kind's
//! file builds one.

/// URL and auth headers of one call.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Full URL.
    pub url: String,
    /// Headers (auth, versions).
    pub headers: Vec<(String, String)>,
}
