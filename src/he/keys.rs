//! The secret key: generation with tfhe's CSPRNG, a short fingerprint, and its versioned,
//! checksummed bytes ([`SecretKey::to_bytes`], [`SecretKey::from_bytes`]). Where those
//! bytes are kept is the caller's business (the app writes them to an owner-only file).

use sha2::{Digest, Sha256};
use tfhe::core_crypto::prelude::{
    allocate_and_generate_new_binary_glwe_secret_key, new_seeder, DefaultRandomGenerator,
    GlweDimension, GlweSecretKey, PolynomialSize, SecretRandomGenerator,
};

use super::wire::{self, Kind};
use super::{HeError, Params};

/// The GLWE secret key (binary polynomial of size N, GLWE dimension 1).
///
/// Deliberately not `Clone`: one owner (the app-side client) holds it, and its bits are
/// zeroised when it is dropped. `Debug` shows only the fingerprint.
pub struct SecretKey {
    pub(crate) params: Params,
    pub(crate) key: GlweSecretKey<Vec<u64>>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.fingerprint())
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key.as_mut().zeroize();
    }
}

impl SecretKey {
    /// Generates a fresh key with tfhe's secret random generator seeded from the OS/CPU.
    pub fn generate(params: &Params) -> Self {
        let mut seeder = new_seeder();
        let mut gen = SecretRandomGenerator::<DefaultRandomGenerator>::new(seeder.seed());
        let key = allocate_and_generate_new_binary_glwe_secret_key(
            GlweDimension(params.glwe_dimension),
            PolynomialSize(params.polynomial_size),
            &mut gen,
        );
        SecretKey {
            params: *params,
            key,
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Key bits as 0/1 bytes.
    pub(crate) fn bits(&self) -> &[u64] {
        self.key.as_ref()
    }

    /// A short, stable fingerprint for display: `xxxx-xxxx-xxxx-xxxx`.
    pub fn fingerprint(&self) -> String {
        let digest = self.derive(b"blindface/fingerprint/v1");
        let hex = hex::encode(&digest[..8]);
        format!(
            "{}-{}-{}-{}",
            &hex[0..4],
            &hex[4..8],
            &hex[8..12],
            &hex[12..16]
        )
    }

    /// A 32-byte value derived from the key for one purpose (domain-separated SHA-256).
    /// Used for the fingerprint; callers needing an encryption key should use a KDF on top.
    pub fn derive(&self, purpose: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((purpose.len() as u64).to_le_bytes());
        h.update(purpose);
        h.update(wire::params_bytes(&self.params));
        for &b in self.bits() {
            h.update([b as u8]);
        }
        h.finalize().into()
    }

    /// Serializes the key (versioned, with parameters and checksum).
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let bits: zeroize::Zeroizing<Vec<u8>> =
            zeroize::Zeroizing::new(self.bits().iter().map(|&b| b as u8).collect());
        zeroize::Zeroizing::new(wire::encode(Kind::SecretKey, &self.params, &*bits))
    }

    /// Parses a key of any parameters this build knows ([`Params::known`]): a key's file
    /// says which it is, and so which galleries it makes and reads.
    pub fn from_bytes_known(bytes: &[u8]) -> Result<Self, HeError> {
        Self::from_bytes(bytes, &wire::known_params(Kind::SecretKey, bytes)?)
    }

    /// Parses a key, checking version, parameters, size and that every bit is 0 or 1.
    pub fn from_bytes(bytes: &[u8], params: &Params) -> Result<Self, HeError> {
        let bits: zeroize::Zeroizing<Vec<u8>> =
            zeroize::Zeroizing::new(wire::decode(Kind::SecretKey, params, bytes)?);
        let n = params.glwe_dimension * params.polynomial_size;
        if bits.len() != n || bits.iter().any(|&b| b > 1) {
            return Err(HeError::Malformed {
                what: Kind::SecretKey.name(),
                detail: format!("expected {n} key bits"),
            });
        }
        let key = GlweSecretKey::from_container(
            bits.iter().map(|&b| u64::from(b)).collect::<Vec<u64>>(),
            PolynomialSize(params.polynomial_size),
        );
        Ok(SecretKey {
            params: *params,
            key,
        })
    }
}
