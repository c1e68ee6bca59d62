//! Encrypted matching core: packed GGSW x GLWE external product on `tfhe::core_crypto`.
//!
//! The app quantises an embedding to a [`Template`], encrypts gallery templates as seeded
//! GLWE ciphertexts ([`encrypt_template`]) and probes as seeded GGSW ciphertexts
//! ([`encrypt_probe`]). The matcher holds no key: its [`Gallery`] packs templates into
//! blocks of M = 15 slots (and keeps nothing else) and answers a probe with one external
//! product per block, switched to 32 bits per coefficient (`result`). The app decrypts
//! exact integer squared distances ([`decrypt`], block by block with [`decrypt_block`]) and
//! removes a template by cancelling it ([`erasure`]). See `layout` for the encoding and
//! SECURITY.md for the assumptions. This module depends on neither UI, camera, network
//! nor ONNX.

mod block;
mod decrypt;
mod encrypt;
mod entities;
mod error;
mod gallery;
mod id;
mod keys;
pub mod layout;
mod mask;
mod params;
mod probe;
mod quantise;
mod result;
mod synthetic;
pub mod wire;

pub(crate) use block::round_body;
pub use block::{BlockCiphertext, BlockRecord, MaskSeed};
pub use decrypt::{
    block_readouts, decrypt, decrypt_block, decrypt_for, decrypt_gallery_block, erasure,
    noise_bound, readouts, relocation, Distance, Readout,
};
pub use encrypt::{encrypt_probe, encrypt_template};
pub use entities::{EncryptedProbe, EncryptedTemplate, ProbeContext};
pub use error::HeError;
pub use gallery::{Change, Gallery, GalleryBuilder, Location, Move, Residency};
pub use id::TemplateId;
pub use keys::SecretKey;
pub use params::{Params, PARAMS_VERSION};
pub use probe::PreparedProbe;
pub use quantise::{quantise, to_float_l2, Quantised, Template, Threshold};
pub use result::{BlockResult, MatchResult, ResultReader, ResultWriter, SlotReadout, RESULT_BITS};
pub use synthetic::{synthetic_template, synthetic_templates};
