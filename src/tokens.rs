//! Tokens in links.
//!
//! Two kinds:
//! - Random one-time tokens (subscription confirmation): 128 bits from the OS generator, sent
//!   in the e-mail, stored only as a SHA-256 hash, with an expiry.
//! - Signed links (unsubscribe, preferences, digest web view): HMAC-SHA256 over a purpose and a
//!   subject (such as a subscriber id), with the key from the settings. They never expire and
//!   are produced at send time, so they are not stored; a copy of the database alone cannot
//!   forge one.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};

/// What a signed link lets its holder do; part of the signed text, so a token made for one
/// purpose is refused for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    Unsubscribe,
    Preferences,
    DigestView,
    /// The anti-forgery token of a web form, signed over the visitor's random cookie value.
    FormGuard,
}

impl LinkPurpose {
    fn label(self) -> &'static str {
        match self {
            LinkPurpose::Unsubscribe => "unsubscribe",
            LinkPurpose::Preferences => "preferences",
            LinkPurpose::DigestView => "digest-view",
            LinkPurpose::FormGuard => "form-guard",
        }
    }
}

/// The key that signs links. Its `Debug` form shows nothing of it.
#[derive(Clone)]
pub struct SigningKey(SecretSlice<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(********)")
    }
}

/// Bytes of the MAC kept in a link: 128 bits.
const MAC_BYTES: usize = 16;

impl SigningKey {
    pub fn from_bytes(bytes: &[u8]) -> SigningKey {
        SigningKey(SecretSlice::from(bytes.to_vec()))
    }

    /// The key from `tokens.signing_key`, or when that is empty the key kept in `key_file`,
    /// created with a random value (readable by the owner only) on first use.
    pub fn from_settings_or_file(configured: &str, key_file: &Path) -> std::io::Result<SigningKey> {
        if !configured.is_empty() {
            return Ok(SigningKey::from_bytes(configured.as_bytes()));
        }
        if let Ok(existing) = std::fs::read_to_string(key_file) {
            let trimmed = existing.trim();
            if trimmed.len() >= 32 {
                return Ok(SigningKey::from_bytes(trimmed.as_bytes()));
            }
        }
        if let Some(parent) = key_file.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let key = hex::encode(random_bytes::<32>());
        write_private_file(key_file, key.as_bytes())?;
        Ok(SigningKey::from_bytes(key.as_bytes()))
    }

    fn mac(&self, purpose: LinkPurpose, subject: &str) -> Hmac<Sha256> {
        let mut mac = match Hmac::<Sha256>::new_from_slice(self.0.expose_secret()) {
            Ok(mac) => mac,
            // HMAC accepts keys of any length; this arm cannot be reached.
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(purpose.label().as_bytes());
        mac.update(&[0]);
        mac.update(subject.as_bytes());
        mac
    }

    /// A link token for `subject` (for example a subscriber id), valid for `purpose` only.
    pub fn sign(&self, purpose: LinkPurpose, subject: &str) -> String {
        let tag = self.mac(purpose, subject).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(subject.as_bytes()),
            URL_SAFE_NO_PAD.encode(&tag[..MAC_BYTES])
        )
    }

    /// The subject of a token made by [`SigningKey::sign`] for `purpose`, if it is genuine.
    pub fn verify(&self, purpose: LinkPurpose, token: &str) -> Option<String> {
        let (subject, tag) = token.trim().split_once('.')?;
        let subject = String::from_utf8(URL_SAFE_NO_PAD.decode(subject).ok()?).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != MAC_BYTES {
            return None;
        }
        self.mac(purpose, &subject)
            .verify_truncated_left(&tag)
            .ok()?;
        Some(subject)
    }
}

fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A new random one-time token (128 bits), as sent in a link.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

/// The form in which a one-time token is stored: hex SHA-256 of the token text.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(b"test-key-test-key-test-key-test-key")
    }

    #[test]
    fn a_signed_link_verifies_for_its_purpose_only() {
        let token = key().sign(LinkPurpose::Unsubscribe, "42");
        assert_eq!(
            key().verify(LinkPurpose::Unsubscribe, &token).as_deref(),
            Some("42")
        );
        assert_eq!(key().verify(LinkPurpose::Preferences, &token), None);
    }

    #[test]
    fn a_link_signed_with_another_key_or_altered_is_refused() {
        let other = SigningKey::from_bytes(b"another-key-another-key-another-key");
        let token = other.sign(LinkPurpose::Unsubscribe, "42");
        assert_eq!(key().verify(LinkPurpose::Unsubscribe, &token), None);

        let genuine = key().sign(LinkPurpose::Unsubscribe, "42");
        let (_, tag) = genuine.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(b"43"));
        assert_eq!(key().verify(LinkPurpose::Unsubscribe, &forged), None);
        assert_eq!(key().verify(LinkPurpose::Unsubscribe, "garbage"), None);
        assert_eq!(key().verify(LinkPurpose::Unsubscribe, ""), None);
    }

    #[test]
    fn random_tokens_carry_128_bits_and_differ() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 16);
    }

    #[test]
    fn token_hashes_are_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing-key");
        let first = SigningKey::from_settings_or_file("", &path).unwrap();
        let second = SigningKey::from_settings_or_file("", &path).unwrap();
        let token = first.sign(LinkPurpose::DigestView, "7:2026-W07");
        assert_eq!(
            second.verify(LinkPurpose::DigestView, &token).as_deref(),
            Some("7:2026-W07")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }
}
