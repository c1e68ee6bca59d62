//! Versioned wire format shared by every serialized object of the core.
//!
//! Layout: magic `BLFC`, format version (u16), kind (u8), [`Params`], body, SHA-256 of all
//! preceding bytes. Decoding checks, in order: magic and kind, size against the kind's
//! maximum (before any parsing), version, parameters, checksum, then the body with bincode
//! bounded by the input length and rejecting trailing bytes. Bodies are further checked for
//! dimensions by their owners.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};
use sha2::{Digest, Sha256};

use super::{HeError, Params};

/// Version of the wire layout above.
pub const WIRE_VERSION: u16 = 1;
const MAGIC: [u8; 4] = *b"BLFC";
const CHECKSUM_LEN: usize = 32;
/// Room for the header, length prefixes and the checksum.
const OVERHEAD: usize = 256;

/// What a payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    SecretKey = 1,
    Template = 2,
    Probe = 3,
    /// Compact, streamable results (`super::result`); kind 4 was the 64-bit result of
    /// blindface 0.1 and is no longer read.
    MatchResult = 5,
    /// A gallery block's full ciphertext, sent to its owner for removal.
    Block = 6,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::SecretKey => "secret key",
            Kind::Template => "encrypted template",
            Kind::Probe => "encrypted probe",
            Kind::MatchResult => "match result",
            Kind::Block => "gallery block",
        }
    }
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
}

/// Canonical bytes of a parameter set (also hashed into key-derived values).
pub fn params_bytes(params: &Params) -> Vec<u8> {
    options().serialize(params).expect("Params serializes")
}

/// The header every payload of `kind` starts with: magic, version, kind, parameters.
pub fn header(kind: Kind, params: &Params) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&WIRE_VERSION.to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&params_bytes(params));
    out
}

/// Checks a header as [`header`] writes it: magic and kind, version, then parameters.
pub fn check_header(kind: Kind, params: &Params, bytes: &[u8]) -> Result<(), HeError> {
    let what = kind.name();
    let fixed = MAGIC.len() + 2 + 1;
    if bytes.len() < fixed || bytes[..4] != MAGIC || bytes[6] != kind as u8 {
        return Err(HeError::WrongKind { expected: what });
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != WIRE_VERSION {
        return Err(HeError::WrongVersion {
            what,
            expected: WIRE_VERSION,
            got: version,
        });
    }
    let expected = params_bytes(params);
    if bytes.len() < fixed + expected.len() {
        return Err(HeError::Malformed {
            what,
            detail: format!("truncated header ({} bytes)", bytes.len()),
        });
    }
    if bytes[fixed..fixed + expected.len()] != expected[..] {
        return Err(HeError::WrongParams { what });
    }
    Ok(())
}

/// The parameters, among those this build knows ([`Params::known`]), that a payload of
/// `kind` names in its header; the error [`check_header`] gives when it names none.
pub fn known_params(kind: Kind, bytes: &[u8]) -> Result<Params, HeError> {
    let mut refused = None;
    for p in Params::known() {
        match check_header(kind, &p, bytes) {
            Ok(()) => return Ok(p),
            Err(e) => refused = Some(e),
        }
    }
    Err(refused.expect("this build knows at least one parameter set"))
}

/// Serializes `body` of `kind` under `params`.
pub fn encode<T: Serialize>(kind: Kind, params: &Params, body: &T) -> Vec<u8> {
    let mut out = header(kind, params);
    options()
        .serialize_into(&mut out, body)
        .expect("in-memory serialization cannot fail");
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// The length [`encode`] would produce for `body`, without serializing it.
pub fn encoded_len<T: Serialize>(params: &Params, body: &T) -> usize {
    let body_len = options()
        .serialized_size(body)
        .expect("in-memory size cannot fail") as usize;
    MAGIC.len() + 2 + 1 + params_bytes(params).len() + body_len + CHECKSUM_LEN
}

/// The largest payload of `kind` with a body of `body_bytes` bytes.
pub fn max_len(body_bytes: usize) -> usize {
    body_bytes + OVERHEAD
}

/// Parses a payload of `kind`, expecting `params`, at most `max` bytes long.
pub fn decode<T: DeserializeOwned>(
    kind: Kind,
    params: &Params,
    bytes: &[u8],
) -> Result<T, HeError> {
    decode_bounded(
        kind,
        params,
        bytes,
        max_len(default_body_bytes(kind, params)),
    )
}

/// As [`decode`] with an explicit maximum size (for variable-size kinds).
pub fn decode_bounded<T: DeserializeOwned>(
    kind: Kind,
    params: &Params,
    bytes: &[u8],
    max: usize,
) -> Result<T, HeError> {
    let what = kind.name();
    let fixed = MAGIC.len() + 2 + 1;
    if bytes.len() < fixed || bytes[..4] != MAGIC || bytes[6] != kind as u8 {
        return Err(HeError::WrongKind { expected: what });
    }
    if bytes.len() > max {
        return Err(HeError::TooLarge {
            what,
            got: bytes.len(),
            max,
        });
    }
    let params_end = fixed + params_bytes(params).len();
    if bytes.len() < params_end + CHECKSUM_LEN {
        check_header(kind, params, bytes)?;
        return Err(HeError::Malformed {
            what,
            detail: format!("only {} bytes", bytes.len()),
        });
    }
    check_header(kind, params, &bytes[..params_end])?;
    let (content, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if Sha256::digest(content).as_slice() != checksum {
        return Err(HeError::Checksum { what });
    }
    options()
        .with_limit(content.len() as u64)
        .reject_trailing_bytes()
        .deserialize(&content[params_end..])
        .map_err(|e| HeError::Malformed {
            what,
            detail: e.to_string(),
        })
}

/// Body size of the fixed-size kinds; variable kinds use [`decode_bounded`].
fn default_body_bytes(kind: Kind, p: &Params) -> usize {
    let n = p.polynomial_size;
    let k1 = p.glwe_dimension + 1;
    match kind {
        Kind::SecretKey => p.glwe_dimension * n,
        Kind::Template => 16 + n * 8,
        Kind::Probe => 16 + p.decomp_level_count * k1 * n * 8,
        // Results have their own codec (`super::result`) and bound.
        Kind::MatchResult => 0,
        Kind::Block => 3 * 8 + 2 * n * 8 + p.slots_per_block() * 9,
    }
}
