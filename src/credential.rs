//! How an API token is named without being shown: its sha256, lowercase hex. It is the key
//! of the `TOKENS` bucket and of the per-token counters; the bridge computes it from the
//! caller's header so that the plain token never travels on NATS.

use sha2::{Digest, Sha256};

/// sha256 of a token, lowercase hex.
pub fn hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        assert_eq!(super::hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
