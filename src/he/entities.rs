//! Ciphertext entities exchanged between the app and the matcher (data only; the
//! algorithms live in `encrypt`, `probe`, `gallery` and `decrypt`).
//!
//! Every entity serializes through [`super::wire`] and is checked for version, parameters,
//! checksum and dimensions when parsed.

use serde::{Deserialize, Serialize};

use super::wire::{self, Kind};
use super::{HeError, Params};

/// A template encrypted by the app: seeded GLWE of Delta * g(X) in slot 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedTemplate {
    pub(crate) params: Params,
    /// Seed of the mask generator (the mask is re-expanded from it).
    pub(crate) seed: u128,
    /// Body polynomial, N coefficients.
    pub(crate) body: Vec<u64>,
}

/// A probe encrypted by the app: seeded GGSW of the probe polynomial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedProbe {
    pub(crate) params: Params,
    pub(crate) seed: u128,
    /// Bodies of the (levels x (k+1)) GLWE rows, N coefficients each.
    pub(crate) bodies: Vec<u64>,
}

/// What the app keeps about its own probe to finish the distances (never sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeContext {
    /// ||a||^2 of the quantised probe.
    pub norm_sq: i64,
}

#[derive(Deserialize)]
struct SeededBody {
    seed: u128,
    body: Vec<u64>,
}

/// Serializes exactly like [`SeededBody`], without copying the coefficients.
#[derive(Serialize)]
struct SeededBodyRef<'a> {
    seed: u128,
    body: &'a [u64],
}

fn malformed(kind: Kind, detail: String) -> HeError {
    HeError::Malformed {
        what: kind.name(),
        detail,
    }
}

/// Serializes a seeded ciphertext (seed and body) of `kind`.
fn encode_seeded(kind: Kind, params: &Params, seed: u128, body: &[u64]) -> Vec<u8> {
    wire::encode(kind, params, &SeededBodyRef { seed, body })
}

/// `n` bytes from the middle of `body` in its wire form (little-endian coefficients),
/// without serializing the rest.
fn body_sample(body: &[u64], n: usize) -> Vec<u8> {
    let words = n.div_ceil(8).min(body.len());
    let start = (body.len() - words) / 2;
    let mut out: Vec<u8> = body[start..start + words]
        .iter()
        .flat_map(|c| c.to_le_bytes())
        .collect();
    out.truncate(n);
    out
}

fn seeded_len(params: &Params, seed: u128, body: &[u64]) -> usize {
    wire::encoded_len(params, &SeededBodyRef { seed, body })
}

/// Parses a seeded ciphertext of `kind` whose body must hold `expected` coefficients.
fn decode_seeded(
    kind: Kind,
    params: &Params,
    bytes: &[u8],
    expected: usize,
) -> Result<SeededBody, HeError> {
    let b: SeededBody = wire::decode(kind, params, bytes)?;
    if b.body.len() != expected {
        return Err(malformed(
            kind,
            format!(
                "body has {} coefficients, expected {expected}",
                b.body.len()
            ),
        ));
    }
    Ok(b)
}

impl EncryptedTemplate {
    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        encode_seeded(Kind::Template, &self.params, self.seed, &self.body)
    }

    /// `to_bytes().len()`, without serializing.
    pub fn wire_len(&self) -> usize {
        seeded_len(&self.params, self.seed, &self.body)
    }

    /// `n` bytes of the body from its middle, as they stand in `to_bytes()`.
    pub fn wire_sample(&self, n: usize) -> Vec<u8> {
        body_sample(&self.body, n)
    }

    /// Parses a template of any parameters this build knows (a matcher holding galleries
    /// of several versions: it checks the template against its gallery's).
    pub fn from_bytes_known(bytes: &[u8]) -> Result<Self, HeError> {
        Self::from_bytes(bytes, &super::wire::known_params(Kind::Template, bytes)?)
    }

    pub fn from_bytes(bytes: &[u8], params: &Params) -> Result<Self, HeError> {
        let b = decode_seeded(Kind::Template, params, bytes, params.polynomial_size)?;
        Ok(EncryptedTemplate {
            params: *params,
            seed: b.seed,
            body: b.body,
        })
    }
}

impl EncryptedProbe {
    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        encode_seeded(Kind::Probe, &self.params, self.seed, &self.bodies)
    }

    /// `to_bytes().len()`, without serializing.
    pub fn wire_len(&self) -> usize {
        seeded_len(&self.params, self.seed, &self.bodies)
    }

    /// `n` bytes of the bodies from their middle, as they stand in `to_bytes()`.
    pub fn wire_sample(&self, n: usize) -> Vec<u8> {
        body_sample(&self.bodies, n)
    }

    /// Parses a probe of any parameters this build knows (see
    /// [`EncryptedTemplate::from_bytes_known`]).
    pub fn from_bytes_known(bytes: &[u8]) -> Result<Self, HeError> {
        Self::from_bytes(bytes, &super::wire::known_params(Kind::Probe, bytes)?)
    }

    pub fn from_bytes(bytes: &[u8], params: &Params) -> Result<Self, HeError> {
        let expected =
            params.decomp_level_count * (params.glwe_dimension + 1) * params.polynomial_size;
        let b = decode_seeded(Kind::Probe, params, bytes, expected)?;
        Ok(EncryptedProbe {
            params: *params,
            seed: b.seed,
            bodies: b.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::he::{encrypt_probe, encrypt_template, synthetic_templates, Params, SecretKey};

    #[test]
    fn wire_samples_are_the_bytes_on_the_wire() {
        let p = Params::v1();
        let key = SecretKey::generate(&p);
        let t = &synthetic_templates(1, 3, &p)[0];
        let (probe, _) = encrypt_probe(&key, t);
        let ct = encrypt_template(&key, t);
        for (sample, bytes, len) in [
            (probe.wire_sample(48), probe.to_bytes(), probe.wire_len()),
            (ct.wire_sample(48), ct.to_bytes(), ct.wire_len()),
        ] {
            assert_eq!(sample.len(), 48);
            assert_eq!(len, bytes.len());
            let at = bytes
                .windows(48)
                .position(|w| w == sample.as_slice())
                .expect("the sample is in the serialized ciphertext");
            assert!(
                at > bytes.len() / 3,
                "from the body's middle, not the header"
            );
        }
    }
}
