//! App-side decryption of match results: exact integer squared distances, with integrity
//! checks that turn a wrong key or a corrupted result into an error instead of a plausible
//! distance.
//!
//! Only the readout coefficients are decrypted (phase = body - (mask * s) at that
//! coefficient), not the whole polynomial. Every readout must sit within `Delta / 16` of a
//! multiple of Delta (fresh results sit within 2^-6 of that bound; a random phase passes
//! with probability 1/8 per readout), every empty slot must decrypt to exactly 0, and every
//! distance must lie in its possible range. A block computed from no fresh ciphertext (a
//! zero mask, or readouts without any noise: a forged, trivial result) is refused
//! ([`check_fresh`]).

use super::entities::{MatchResult, ProbeContext, TemplateId};
use super::{HeError, SecretKey};

/// One decrypted distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Distance {
    pub id: TemplateId,
    /// Exact squared Euclidean distance between the quantised templates.
    pub distance_sq: i64,
}

/// One decrypted readout: the decoded value and the residual noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readout {
    pub value: i64,
    pub noise: i64,
}

/// Phase of coefficient `r` of a GLWE (k = 1): body_r - (mask * s)_r, negacyclic.
fn phase_at(mask: &[u64], key_bits: &[u64], r: usize, body: u64) -> u64 {
    let n = mask.len();
    let mut acc = 0u64;
    for i in 0..=r {
        acc = acc.wrapping_add(mask[i].wrapping_mul(key_bits[r - i]));
    }
    for i in r + 1..n {
        acc = acc.wrapping_sub(mask[i].wrapping_mul(key_bits[n + r - i]));
    }
    body.wrapping_sub(acc)
}

/// Decodes every readout of a result (value and noise), without integrity checks.
pub fn readouts(key: &SecretKey, result: &MatchResult) -> Result<Vec<Vec<Readout>>, HeError> {
    let p = &key.params;
    if result.params != *p {
        return Err(HeError::WrongParams {
            what: "match result",
        });
    }
    let bits = key.bits();
    let delta_log = p.delta_log;
    let half = 1u64 << (delta_log - 1);
    Ok(result
        .blocks
        .iter()
        .map(|block| {
            block
                .readouts
                .iter()
                .enumerate()
                .map(|(j, &body)| {
                    let phase = phase_at(&block.mask, bits, p.slot_readout(j), body);
                    let value = (phase.wrapping_add(half) as i64) >> delta_log;
                    let noise = phase.wrapping_sub((value as u64) << delta_log) as i64;
                    Readout { value, noise }
                })
                .collect()
        })
        .collect())
}

/// Refuses a block that no encryption went into: an all-zero mask (a trivial GLWE, whose
/// phase is its body), or readouts that all carry exactly zero noise. A fresh result's
/// readouts carry noise of about 2^33, exactly 0 with probability about 2^-35 each, so
/// an honest block (15 readouts) never fails this. It cannot catch a forger who runs a
/// real external product on a template of his choosing (see SECURITY.md).
fn check_fresh(result: &MatchResult, readouts: &[Vec<Readout>]) -> Result<(), HeError> {
    for (block, (b, r)) in result.blocks.iter().zip(readouts).enumerate() {
        if b.mask.iter().all(|&c| c == 0) || r.iter().all(|r| r.noise == 0) {
            return Err(HeError::NoiselessResult { block });
        }
    }
    Ok(())
}

/// Decrypts every distance of a result, checking its integrity.
pub fn decrypt(
    key: &SecretKey,
    probe: &ProbeContext,
    result: &MatchResult,
) -> Result<Vec<Distance>, HeError> {
    let p = &key.params;
    let bound = 1i64 << (p.delta_log - 4);
    let max_distance = 4 * p.dim as i64 * (p.q as i64) * (p.q as i64);
    let mut out = Vec::with_capacity(result.template_count());
    let decoded = readouts(key, result)?;
    check_fresh(result, &decoded)?;
    for (b, (block, readouts)) in result.blocks.iter().zip(decoded).enumerate() {
        for (s, (slot, r)) in block.slots.iter().zip(readouts).enumerate() {
            let bad = HeError::WrongKeyOrCorrupt { block: b, slot: s };
            if r.noise.abs() >= bound {
                return Err(bad);
            }
            match slot {
                None if r.value != 0 => return Err(bad),
                None => {}
                Some(id) => {
                    let distance_sq = r.value + probe.norm_sq;
                    if !(0..=max_distance).contains(&distance_sq) {
                        return Err(bad);
                    }
                    out.push(Distance {
                        id: *id,
                        distance_sq,
                    });
                }
            }
        }
    }
    Ok(out)
}
