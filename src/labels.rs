//! Names of enrolled people, encrypted on the app side so that a matcher (built-in store
//! or remote server) only ever holds opaque bytes.
//!
//! XChaCha20-Poly1305 under a 256-bit key derived with HKDF-SHA256 from
//! `SecretKey::derive(b"blindface/labels/v1")`; a fresh random 24-byte nonce per label.
//! Sealed format: `b"BFL2" || nonce (24) || ciphertext + tag (16)`. The associated data is
//! the format tag and the template id the label belongs to (chosen by the app before
//! enrolling), so a label moved to another template (a swapped or edited store) fails to
//! open instead of naming the wrong person. Labels of the first format (`BFL1`, bound to
//! the format only) still open, for galleries enrolled before ids were bound. Any machine
//! holding the key file can read every label; nothing else can. No network, no UI.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;
use thiserror::Error;

use crate::he::{SecretKey, TemplateId};

const MAGIC: &[u8; 4] = b"BFL2";
/// The first format: associated data is the magic only (not bound to a template).
const MAGIC_V1: &[u8; 4] = b"BFL1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Longest name accepted, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 256;

/// Largest sealed label (what a matcher should accept).
pub const MAX_SEALED_LEN: usize = MAGIC.len() + NONCE_LEN + MAX_NAME_BYTES + TAG_LEN;

#[derive(Debug, Error)]
pub enum LabelError {
    #[error("a name must be 1 to {MAX_NAME_BYTES} bytes long and contain no control characters")]
    BadName,
    #[error("the label is not a blindface label (wrong format or truncated)")]
    Malformed,
    #[error(
        "the label cannot be decrypted: it was made with another key file, or it was corrupted"
    )]
    WrongKeyOrCorrupt,
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
}

/// The label encryption key (derived from the secret key; never stored).
pub struct LabelKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for LabelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LabelKey(..)")
    }
}

impl LabelKey {
    /// Derives the label key from the secret key.
    pub fn from_secret(key: &SecretKey) -> Self {
        let ikm = key.derive(b"blindface/labels/v1");
        let hk = Hkdf::<Sha256>::new(Some(b"blindface labels salt v1"), &ikm);
        let mut okm = [0u8; 32];
        hk.expand(b"blindface label key: xchacha20-poly1305", &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        LabelKey {
            cipher: XChaCha20Poly1305::new(&okm.into()),
        }
    }

    /// Encrypts a name for template `id` with a fresh random nonce.
    pub fn seal(&self, name: &str, id: TemplateId) -> Result<Vec<u8>, LabelError> {
        check_name(name)?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| LabelError::Random(e.to_string()))?;
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: name.as_bytes(),
                    aad: &aad(MAGIC, id),
                },
            )
            .map_err(|_| LabelError::Malformed)?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + ct.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts the sealed label of template `id`.
    pub fn open(&self, sealed: &[u8], id: TemplateId) -> Result<String, LabelError> {
        if sealed.len() < MAGIC.len() + NONCE_LEN + TAG_LEN || sealed.len() > MAX_SEALED_LEN {
            return Err(LabelError::Malformed);
        }
        let aad = match &sealed[..MAGIC.len()] {
            m if m == MAGIC => aad(MAGIC, id),
            m if m == MAGIC_V1 => MAGIC_V1.to_vec(),
            _ => return Err(LabelError::Malformed),
        };
        let (nonce, ct) = sealed[MAGIC.len()..].split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| LabelError::WrongKeyOrCorrupt)?;
        String::from_utf8(plain).map_err(|_| LabelError::WrongKeyOrCorrupt)
    }
}

/// Associated data: the format tag and the template id.
fn aad(magic: &[u8; 4], id: TemplateId) -> Vec<u8> {
    let mut a = magic.to_vec();
    a.extend_from_slice(&id.0.to_le_bytes());
    a
}

/// Checks that a name is acceptable (length, no control characters).
pub fn check_name(name: &str) -> Result<(), LabelError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(LabelError::BadName);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::he::Params;

    #[test]
    fn round_trip_fresh_nonces_and_wrong_key() {
        let p = Params::v1();
        let k1 = LabelKey::from_secret(&SecretKey::generate(&p));
        let k2 = LabelKey::from_secret(&SecretKey::generate(&p));
        let id = TemplateId(42);
        let a = k1.seal("Ada Lovelace", id).unwrap();
        let b = k1.seal("Ada Lovelace", id).unwrap();
        assert_ne!(a, b, "nonces must differ");
        assert_eq!(k1.open(&a, id).unwrap(), "Ada Lovelace");
        assert!(matches!(
            k2.open(&a, id),
            Err(LabelError::WrongKeyOrCorrupt)
        ));
        let mut t = a.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert!(matches!(
            k1.open(&t, id),
            Err(LabelError::WrongKeyOrCorrupt)
        ));
        assert!(matches!(k1.open(&a[..10], id), Err(LabelError::Malformed)));
        assert!(matches!(k1.seal("", id), Err(LabelError::BadName)));
        assert!(matches!(k1.seal("a\nb", id), Err(LabelError::BadName)));
        assert!(!a.windows(3).any(|w| w == b"Ada"));
    }

    #[test]
    fn a_label_moved_to_another_template_does_not_open() {
        let k = LabelKey::from_secret(&SecretKey::generate(&Params::v1()));
        let ada = k.seal("Ada", TemplateId(1)).unwrap();
        let bob = k.seal("Bob", TemplateId(2)).unwrap();
        // Swapped labels (an edited store): errors, never the other name.
        assert!(matches!(
            k.open(&ada, TemplateId(2)),
            Err(LabelError::WrongKeyOrCorrupt)
        ));
        assert!(matches!(
            k.open(&bob, TemplateId(1)),
            Err(LabelError::WrongKeyOrCorrupt)
        ));
        assert_eq!(k.open(&bob, TemplateId(2)).unwrap(), "Bob");
    }

    #[test]
    fn first_format_labels_still_open() {
        let k = LabelKey::from_secret(&SecretKey::generate(&Params::v1()));
        // A BFL1 label as the previous version sealed it (associated data = magic only).
        let nonce = [7u8; NONCE_LEN];
        let ct = k
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: b"Old Name",
                    aad: MAGIC_V1,
                },
            )
            .unwrap();
        let sealed = [MAGIC_V1.as_slice(), &nonce, &ct].concat();
        assert_eq!(k.open(&sealed, TemplateId(9)).unwrap(), "Old Name");
    }
}
