//! Errors of the encrypted matching core. Each message says what happened and, where it
//! helps, what to do.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum HeError {
    #[error("template has {got} components, expected {expected}")]
    Dimension { expected: usize, got: usize },
    #[error("template value {value} is outside [-{q}, {q}]")]
    OutOfRange { value: i32, q: i32 },
    #[error("embedding contains NaN or infinity")]
    NotFinite,
    #[error(
        "not a blindface {expected} (bad magic or kind); was the right file or payload given?"
    )]
    WrongKind { expected: &'static str },
    #[error("{what} uses format version {got}, this build reads version {expected}; upgrade blindface or re-create it")]
    WrongVersion {
        what: &'static str,
        expected: u16,
        got: u16,
    },
    #[error("{what} was made with different encryption parameters than this build uses; re-create it with this version")]
    WrongParams { what: &'static str },
    #[error("{what} is {got} bytes, more than the {max} allowed")]
    TooLarge {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("{what} is corrupt or truncated: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("{what} failed its checksum: the data was corrupted in storage or transit")]
    Checksum { what: &'static str },
    #[error("decryption failed its integrity check (block {block}, slot {slot}): the result was made for another key, or was corrupted or tampered with")]
    WrongKeyOrCorrupt { block: usize, slot: usize },
    #[error("the matcher's answer was not computed from fresh ciphertexts (block {block} carries no encryption noise): it was forged, by the matcher or by someone answering in its place; it was refused")]
    NoiselessResult { block: usize },
    #[error("no template with id {0} in the gallery")]
    UnknownTemplate(crate::he::TemplateId),
    #[error("template id {0} is out of range (ids lie in [1, 2^53))")]
    InvalidId(crate::he::TemplateId),
    #[error("a template with id {0} is already in the gallery")]
    DuplicateTemplate(crate::he::TemplateId),
    #[error("block {block}'s ciphertext is not held in memory here (its record is in the store)")]
    NotHeld { block: usize },
    #[error("key file {path}: {reason}")]
    KeyIo {
        path: String,
        reason: std::io::Error,
    },
    #[error("key file {path} already exists; refusing to overwrite it")]
    KeyExists { path: String },
}
