//! Removes secrets from text that may reach a log, an error reply or the audit stream.

/// Replace every configured secret, and anything shaped like a well-known API key
/// (`sk-…`, `sk-ant-…`, `AIza…`, `Bearer …`), with `[redacted]`.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.len() >= 4 && out.contains(s) {
            out = out.replace(s, "[redacted]");
        }
    }
    mask_key_shapes(&out)
}

fn mask_key_shapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for prefix in ["sk-", "AIza", "Bearer "] {
            if let Some(tail) = rest.strip_prefix(prefix) {
                let n = tail.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_').count();
                if n >= 8 {
                    out.push_str(prefix);
                    out.push_str("[redacted]");
                    rest = &tail[n..];
                    continue 'outer;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn secrets_are_removed() {
        assert_eq!(redact("bad key my-secret-value!", &["my-secret-value"]), "bad key [redacted]!");
        assert_eq!(
            redact("Incorrect API key provided: sk-proj-abcdef123456", &[]),
            "Incorrect API key provided: sk-[redacted]"
        );
        assert_eq!(redact("key=AIzaSyA1234567890abcdef", &[]), "key=AIza[redacted]");
        assert_eq!(redact("Authorization: Bearer abcdefghijkl", &[]), "Authorization: Bearer [redacted]");
        assert_eq!(redact("sk-short is fine, ünïcode ok", &[]), "sk-short is fine, ünïcode ok");
    }
}
