//! Secrets at rest: upstream API keys entered through `ailurus channels add` or the management
//! API are sealed with XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`: a 24-byte random
//! nonce per seal, so random nonces never collide in practice) before they reach the
//! `CHANNELS` bucket, bound to the channel's name as associated data (a sealed key copied
//! into another channel's record does not open). The 32-byte key comes from
//! `AILURUS_SECRET_KEY` (64 hex digits), else the file `[live] secret_key_file` or
//! `AILURUS_SECRET_KEY_FILE` names, else `<data dir>/secret-key`, which `ailurus up` creates
//! with mode 0600. Neither the key nor an opened secret is ever logged or shown.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::path::{Path, PathBuf};

/// The environment variable holding the key (64 hex digits).
pub const KEY_ENV: &str = "AILURUS_SECRET_KEY";
/// The environment variable naming a file that holds the key.
pub const KEY_FILE_ENV: &str = "AILURUS_SECRET_KEY_FILE";
/// The key file's name in the data directory.
pub const KEY_FILE: &str = "secret-key";
/// The data directory when `AILURUS_DATA` is not set (as `ailurus up`'s default).
pub const DEFAULT_DATA_DIR: &str = ".ailurus-data";
/// What a sealed value starts with (the format version).
const PREFIX: &str = "xc1:";

/// The sealing key. Its `Debug` hides it.
#[derive(Clone)]
pub struct SealKey([u8; 32]);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(***)")
    }
}

impl SealKey {
    /// A key from 64 hex digits (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a secret key is 64 hex digits (32 bytes)".into());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|_| "a secret key is 64 hex digits")?;
        }
        Ok(Self(out))
    }

    /// A new random key from the OS's CSPRNG.
    pub fn generate() -> Result<Self, String> {
        let mut out = [0u8; 32];
        getrandom::getrandom(&mut out).map_err(|e| format!("no randomness: {e}"))?;
        Ok(Self(out))
    }

    /// The key as 64 hex digits (for the key file only).
    fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key from the environment or a file: `AILURUS_SECRET_KEY`, else `file`, else the
    /// file `AILURUS_SECRET_KEY_FILE` names, else `<AILURUS_DATA or .ailurus-data>/secret-key`
    /// if it exists. `None` when there is none; an error (naming the source, never the key)
    /// when one is set but unreadable.
    pub fn load(file: Option<&Path>) -> Result<Option<Self>, String> {
        if let Some(v) = std::env::var(KEY_ENV).ok().filter(|v| !v.trim().is_empty()) {
            return Self::parse(&v).map(Some).map_err(|e| format!("{KEY_ENV}: {e}"));
        }
        let named = file.map(Path::to_path_buf).or_else(|| std::env::var_os(KEY_FILE_ENV).map(PathBuf::from));
        let path = match named {
            Some(p) => p,
            None => {
                let p = data_dir().join(KEY_FILE);
                if !p.exists() {
                    return Ok(None);
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|e| format!("secret key file {}: {e}", path.display()))?;
        Self::parse(&text).map(Some).map_err(|e| format!("secret key file {}: {e}", path.display()))
    }

    /// The key in `<dir>/secret-key`, made (random, mode 0600) when the file does not exist.
    pub fn load_or_create(dir: &Path) -> Result<(Self, PathBuf), String> {
        let path = dir.join(KEY_FILE);
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            return Self::parse(&text).map(|k| (k, path.clone())).map_err(|e| format!("{}: {e}", path.display()));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let key = Self::generate()?;
        write_private(&path, &key.to_hex())?;
        Ok((key, path))
    }

    /// Seal `plain` for the record named `name`: `xc1:` + base64url(nonce ‖ ciphertext).
    pub fn seal(&self, plain: &str, name: &str) -> Result<String, String> {
        let mut nonce = [0u8; 24];
        getrandom::getrandom(&mut nonce).map_err(|e| format!("no randomness: {e}"))?;
        let cipher = XChaCha20Poly1305::new_from_slice(&self.0).map_err(|_| "bad secret key length")?;
        let ct = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain.as_bytes(), aad: name.as_bytes() })
            .map_err(|_| "sealing failed".to_string())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        use base64::Engine;
        Ok(format!("{PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)))
    }

    /// Open what [`Self::seal`] made for `name`. The error says why, never what.
    pub fn open(&self, sealed: &str, name: &str) -> Result<String, String> {
        use base64::Engine;
        let body = sealed.strip_prefix(PREFIX).ok_or("not a sealed value of this version")?;
        let raw =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).map_err(|_| "sealed value is not base64")?;
        if raw.len() < 24 + 16 {
            return Err("sealed value is too short".into());
        }
        let (nonce, ct) = raw.split_at(24);
        let cipher = XChaCha20Poly1305::new_from_slice(&self.0).map_err(|_| "bad secret key length")?;
        let plain = cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: name.as_bytes() })
            .map_err(|_| "sealed value does not open with this secret key (another key, or another channel's)")?;
        String::from_utf8(plain).map_err(|_| "sealed value is not text".into())
    }
}

/// The data directory: `AILURUS_DATA`, else `.ailurus-data`.
pub fn data_dir() -> PathBuf {
    std::env::var_os("AILURUS_DATA").map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), PathBuf::from)
}

/// Write `text` to a new file only its owner may read.
fn write_private(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

/// How a secret is shown: its first three and last four characters around `…` when it is
/// long enough that this leaves most of it hidden, else `***`.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 20 {
        return "***".into();
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_key_and_the_name() {
        let key = SealKey::generate().unwrap();
        let other = SealKey::generate().unwrap();
        let secret = "sk-live-0123456789abcdef";
        let sealed = key.seal(secret, "deepseek").unwrap();
        assert!(sealed.starts_with(PREFIX) && !sealed.contains(secret));
        assert_ne!(sealed, key.seal(secret, "deepseek").unwrap(), "a fresh nonce each time");
        assert_eq!(key.open(&sealed, "deepseek").unwrap(), secret);
        // (key, name, sealed) that must not open; no error names the secret.
        let cases = [
            (&other, "deepseek", sealed.clone()),
            (&key, "openai", sealed.clone()),
            (&key, "deepseek", {
                let mut s = sealed.clone();
                s.pop();
                s.push(if sealed.ends_with('A') { 'B' } else { 'A' });
                s
            }),
        ];
        for (k, name, value) in cases {
            let err = k.open(&value, name).unwrap_err();
            assert!(!err.contains(secret), "{err}");
        }
        assert!(key.open("plain", "deepseek").is_err());
        assert_eq!(format!("{key:?}"), "SealKey(***)");
    }

    #[test]
    fn keys_parse_round_trip_and_the_file_is_private() {
        let key = SealKey::generate().unwrap();
        assert_eq!(SealKey::parse(&key.to_hex()).unwrap().0, key.0);
        assert!(SealKey::parse("abc").is_err());
        assert!(SealKey::parse(&"z".repeat(64)).is_err());
        let dir = tempfile::tempdir().unwrap();
        let (made, path) = SealKey::load_or_create(dir.path()).unwrap();
        let (again, _) = SealKey::load_or_create(dir.path()).unwrap();
        assert_eq!(made.0, again.0, "the file is read back, not replaced");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(SealKey::load(Some(&path)).unwrap().map(|k| k.0), Some(made.0));
    }

    #[test]
    fn masks_hide_most_of_a_secret() {
        assert_eq!(mask("sk-abcdefghijklmnopqrstuvwxyz"), "sk-…wxyz");
        assert_eq!(mask("short-key"), "***");
    }
}
