//! App-side decryption of match results: exact integer squared distances, with integrity
//! checks that turn a wrong key or a corrupted result into an error instead of a plausible
//! distance; and the key holder's side of removal ([`erasure`]).
//!
//! Only the readout coefficients are decrypted (phase = body - (mask * s) at that
//! coefficient, modulo 2^32 for the switched results of `super::result`), not the whole
//! polynomial. Every readout must sit within `Delta / 16` of a multiple of Delta (fresh
//! results measured within 2^-4 of that bound, rounding included; a random phase passes
//! with probability 1/8 per readout), every empty slot must decrypt to exactly 0, and every
//! distance must lie in its possible range. A block computed from no fresh ciphertext (a
//! zero mask, or readouts without any noise: a forged, trivial result) is refused
//! ([`check_fresh`]).

use tfhe::core_crypto::prelude::{decrypt_glwe_ciphertext, GlweCiphertext, PlaintextList};

use super::block::BlockCiphertext;
use super::entities::{EncryptedTemplate, ProbeContext};
use super::id::TemplateId;
use super::result::{BlockResult, MatchResult, RESULT_BITS};
use super::{encrypt, HeError, Params, SecretKey};

/// One decrypted distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Distance {
    pub id: TemplateId,
    /// Exact squared Euclidean distance between the quantised templates.
    pub distance_sq: i64,
}

/// One decrypted readout: the decoded value and the residual noise, in 64-bit torus units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readout {
    pub value: i64,
    pub noise: i64,
}

/// Phase of coefficient `r` of a switched GLWE (k = 1): body_r - (mask * s)_r, negacyclic,
/// modulo 2^32.
fn phase_at(mask: &[u32], key_bits: &[u64], r: usize, body: u32) -> u32 {
    let n = mask.len();
    let mut acc = 0u32;
    for i in 0..=r {
        acc = acc.wrapping_add(mask[i].wrapping_mul(key_bits[r - i] as u32));
    }
    for i in r + 1..n {
        acc = acc.wrapping_sub(mask[i].wrapping_mul(key_bits[n + r - i] as u32));
    }
    body.wrapping_sub(acc)
}

/// Decodes the readouts of one block (value and noise), in entry order, without integrity
/// checks.
pub fn block_readouts(key: &SecretKey, block: &BlockResult) -> Result<Vec<Readout>, HeError> {
    let p = &key.params;
    if block.mask.len() != p.polynomial_size {
        return Err(HeError::Malformed {
            what: "match result",
            detail: "block mask has the wrong size".into(),
        });
    }
    let bits = key.bits();
    let shift = p.delta_log - (64 - RESULT_BITS);
    let half = 1u32 << (shift - 1);
    Ok(block
        .entries
        .iter()
        .map(|e| {
            let phase = phase_at(
                &block.mask,
                bits,
                p.slot_readout(e.slot as usize),
                e.readout,
            );
            let value = (phase.wrapping_add(half) as i32) >> shift;
            let noise = phase.wrapping_sub((value as u32) << shift) as i32;
            Readout {
                value: value as i64,
                noise: (noise as i64) << (64 - RESULT_BITS),
            }
        })
        .collect())
}

/// Decodes every readout of a result, without integrity checks.
pub fn readouts(key: &SecretKey, result: &MatchResult) -> Result<Vec<Vec<Readout>>, HeError> {
    check_params(key, result.params())?;
    result
        .blocks
        .iter()
        .map(|b| block_readouts(key, b))
        .collect()
}

fn check_params(key: &SecretKey, params: &Params) -> Result<(), HeError> {
    if *params != key.params {
        return Err(HeError::WrongParams {
            what: "match result",
        });
    }
    Ok(())
}

/// Readouts a block needs before "all of them noiseless" counts as forged: a compact
/// readout is exactly noiseless with probability about 2^-4.7 (noise ~10 units of 2^32),
/// so a block of a few readouts could be honest, while 8 or more (every block the
/// matcher sends has 15) are honest with probability below 2^-37.
const NOISELESS_READOUTS: usize = 8;

/// Refuses a block that no encryption went into: an all-zero mask (a trivial GLWE, whose
/// phase is its body), or at least [`NOISELESS_READOUTS`] readouts that all carry exactly
/// zero noise. It cannot catch a forger who runs a real external product on a template of
/// his choosing (see SECURITY.md): only TLS pinning keeps others from answering.
fn check_fresh(block: &BlockResult, readouts: &[Readout], b: usize) -> Result<(), HeError> {
    if block.mask.iter().all(|&c| c == 0)
        || (readouts.len() >= NOISELESS_READOUTS && readouts.iter().all(|r| r.noise == 0))
    {
        return Err(HeError::NoiselessResult { block: b });
    }
    Ok(())
}

/// Integrity bound on a readout's noise: Delta / 16.
pub fn noise_bound(params: &Params) -> i64 {
    1i64 << (params.delta_log - 4)
}

/// Decrypts one block of a result (block number `b`, for messages), checking its
/// integrity; the caller checked the result's parameters (a [`super::ResultReader`] made
/// for the key's parameters does).
pub fn decrypt_block(
    key: &SecretKey,
    probe: &ProbeContext,
    block: &BlockResult,
    b: usize,
) -> Result<Vec<Distance>, HeError> {
    let p = &key.params;
    let bound = noise_bound(p);
    let max_distance = 4 * p.dim as i64 * (p.q as i64) * (p.q as i64);
    let mut out = Vec::with_capacity(block.entries.len());
    let decoded = block_readouts(key, block)?;
    check_fresh(block, &decoded, b)?;
    for (e, r) in block.entries.iter().zip(decoded) {
        let bad = HeError::WrongKeyOrCorrupt {
            block: b,
            slot: e.slot as usize,
        };
        if r.noise.abs() >= bound {
            return Err(bad);
        }
        match e.id {
            None if r.value != 0 => return Err(bad),
            None => {}
            Some(id) => {
                let distance_sq = r.value + probe.norm_sq;
                if !(0..=max_distance).contains(&distance_sq) {
                    return Err(bad);
                }
                out.push(Distance { id, distance_sq });
            }
        }
    }
    Ok(out)
}

/// Decrypts every distance of a whole result, checking its integrity.
pub fn decrypt(
    key: &SecretKey,
    probe: &ProbeContext,
    result: &MatchResult,
) -> Result<Vec<Distance>, HeError> {
    check_params(key, result.params())?;
    let mut out = Vec::with_capacity(result.template_count());
    for (b, block) in result.blocks.iter().enumerate() {
        out.extend(decrypt_block(key, probe, block, b)?);
    }
    Ok(out)
}

/// Decrypts a 1:1 result (every readout of the block is checked) and returns the distance
/// of the template asked for; a result without it is [`HeError::UnknownTemplate`].
pub fn decrypt_for(
    key: &SecretKey,
    probe: &ProbeContext,
    result: &MatchResult,
    id: TemplateId,
) -> Result<Distance, HeError> {
    decrypt(key, probe, result)?
        .into_iter()
        .find(|d| d.id == id)
        .ok_or(HeError::UnknownTemplate(id))
}

/// Decrypts a whole gallery block (every coefficient, decoded), checking that each sits
/// within the integrity bound of a multiple of Delta. For the owner's removal and audits.
pub fn decrypt_gallery_block(
    key: &SecretKey,
    block: &BlockCiphertext,
) -> Result<Vec<i64>, HeError> {
    let p = &key.params;
    if block.params != *p {
        return Err(HeError::WrongParams {
            what: "gallery block",
        });
    }
    let n = p.polynomial_size;
    let mut data = Vec::with_capacity(2 * n);
    data.extend_from_slice(&block.mask);
    data.extend_from_slice(&block.body);
    let ct = GlweCiphertext::from_container(data, p.poly_size(), p.modulus());
    let mut plain = PlaintextList::new(0u64, tfhe::core_crypto::prelude::PlaintextCount(n));
    decrypt_glwe_ciphertext(&key.key, &ct, &mut plain);
    let half = 1u64 << (p.delta_log - 1);
    let bound = noise_bound(p);
    plain
        .as_ref()
        .iter()
        .enumerate()
        .map(|(i, &phase)| {
            let value = (phase.wrapping_add(half) as i64) >> p.delta_log;
            let noise = phase.wrapping_sub((value as u64) << p.delta_log) as i64;
            if noise.abs() >= bound {
                Err(HeError::WrongKeyOrCorrupt {
                    block: 0,
                    slot: i / p.slot_width(),
                })
            } else {
                Ok(value)
            }
        })
        .collect()
}

/// The owner's step of removal: reads the template in `slot` of `block` and returns a
/// fresh encryption (in slot 0) of its negation, which the matcher adds shifted into the
/// slot so that it decrypts to exactly zero. Fails if the slot does not hold a well-formed
/// template (wrong key, or a tampered block).
pub fn erasure(
    key: &SecretKey,
    block: &BlockCiphertext,
    slot: usize,
) -> Result<EncryptedTemplate, HeError> {
    let packed = slot_template(key, block, slot)?;
    let negation: Vec<i64> = packed.iter().map(|&v| -v).collect();
    Ok(encrypt::encrypt_polynomial(key, &negation))
}

/// The owner's step of re-packing (moving a template out of a sparse block): the
/// [`erasure`] of the template in `slot`, and a fresh encryption of the same template for
/// the slot it moves to.
pub fn relocation(
    key: &SecretKey,
    block: &BlockCiphertext,
    slot: usize,
) -> Result<(EncryptedTemplate, EncryptedTemplate), HeError> {
    let packed = slot_template(key, block, slot)?;
    let negation: Vec<i64> = packed.iter().map(|&v| -v).collect();
    Ok((
        encrypt::encrypt_polynomial(key, &negation),
        encrypt::encrypt_polynomial(key, &packed),
    ))
}

/// The packed template in `slot` of `block`, as a polynomial in slot 0, checked to be
/// well-formed.
fn slot_template(
    key: &SecretKey,
    block: &BlockCiphertext,
    slot: usize,
) -> Result<Vec<i64>, HeError> {
    let p = &key.params;
    let values = decrypt_gallery_block(key, block)?;
    let w = p.slot_width();
    let d = p.dim;
    if slot >= p.slots_per_block() {
        return Err(HeError::WrongKeyOrCorrupt { block: 0, slot });
    }
    let window = &values[slot * w..slot * w + w];
    // A packed template is g = (||b||^2, -2 b_{D-1}, ..., -2 b_0): check that shape.
    let bad = HeError::WrongKeyOrCorrupt { block: 0, slot };
    let mut norm = 0i64;
    for &v in &window[1..=d] {
        if v % 2 != 0 || v.abs() > 2 * p.q as i64 {
            return Err(bad);
        }
        norm += (v / 2) * (v / 2);
    }
    if window[0] != norm {
        return Err(bad);
    }
    let mut packed = vec![0i64; p.polynomial_size];
    packed[..w].copy_from_slice(window);
    Ok(packed)
}
