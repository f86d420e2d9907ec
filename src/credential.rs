//! How an API token is named without being shown, and the key it signs with.
//!
//! - [`hash`]: its sha256, lowercase hex. It names the token (the key of the `TOKENS` bucket,
//!   of the per-token counters, the `Ailurus-Token-Id` header); it is public and is **not** a
//!   credential anywhere.
//! - [`proof_key`]: HMAC-SHA256 keyed by the token over a fixed label. Only the token's holder
//!   and the `TOKENS` bucket know it; requests on NATS carry a MAC made with it
//!   (`bus::proof`), never the token nor this key.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// sha256 of a token, lowercase hex.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// The label the proof key is derived with (a new label is a new key for every token).
const PROOF_KEY_LABEL: &[u8] = b"ailurus-proof-key-v1";

/// The key a token's holder signs requests with: HMAC-SHA256(token, label), lowercase hex.
/// Not derivable from [`hash`], so the sha256 that names a token (in counter subjects and
/// headers) gives nobody the power to sign.
pub fn proof_key(token: &str) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(PROOF_KEY_LABEL);
    hex(&mac.finalize().into_bytes())
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
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

    #[test]
    fn proof_key_is_an_hmac_of_the_label_and_not_the_hash() {
        // As Python computes it: hmac.new(b"abc", b"ailurus-proof-key-v1", sha256).hexdigest().
        let k = super::proof_key("abc");
        assert_eq!(k, "d0cbe57437470f6fdf6fab380216a1377cbb7414997f163f6a05a337fc654666");
        assert_ne!(k, super::hash("abc"));
        assert_eq!(k, super::proof_key("abc"));
        assert_ne!(k, super::proof_key("abd"));
    }
}
