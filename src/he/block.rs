//! A gallery block and its stored forms: the in-memory [`Block`] (mask, summed body, slot
//! table), what the store keeps of it ([`BlockRecord`]: body rounded to
//! [`Params::body_bits`], mask as seeds or a dense base) and the rebuild from that record,
//! and [`BlockCiphertext`], a block as sent to its owner, with its wire encoding. Also the
//! negacyclic slot arithmetic the gallery packs with.

use serde::{Deserialize, Serialize};
use tfhe::core_crypto::prelude::GlweCiphertext;

use super::id::TemplateId;
use super::mask;
use super::wire::{self, Kind};
use super::{HeError, Params};

pub(super) type Glwe = GlweCiphertext<Vec<u64>>;

/// One seeded ciphertext summed into a block: its seed and the monomial shift it was
/// multiplied by. A block's mask is the sum of these expanded, shifted masks (plus a
/// dense base, see [`BlockRecord`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskSeed {
    pub seed: u128,
    pub shift: u32,
}

/// What the store keeps of one block, enough to rebuild it exactly without any
/// per-template ciphertext: the summed body, and the mask as the seeds summed into it
/// since the last dense snapshot (`base_mask`, written once the seeds would outweigh it).
/// Every body coefficient is a multiple of 2^(64 - [`Params::body_bits`]) (see
/// [`round_body`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRecord {
    pub body: Vec<u64>,
    pub base_mask: Option<Vec<u64>>,
    pub seeds: Vec<MaskSeed>,
}

impl BlockRecord {
    /// Seeds a record holds before its mask is stored densely instead: the point where
    /// the seeds' bytes (18 each on disk) would pass the mask's (8 per coefficient).
    pub fn seed_limit(params: &Params) -> usize {
        params.polynomial_size * 8 / 18
    }
}

/// A block's full ciphertext and slot table, for its owner (the key holder) to read: the
/// removal protocol's first step (see [`Gallery::plan_erase`](super::Gallery::plan_erase)
/// and `super::erasure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockCiphertext {
    pub(crate) params: Params,
    pub(crate) mask: Vec<u64>,
    pub(crate) body: Vec<u64>,
    pub slots: Vec<Option<TemplateId>>,
}

#[derive(Deserialize)]
struct BlockWire {
    mask: Vec<u64>,
    body: Vec<u64>,
    slots: Vec<Option<TemplateId>>,
}

/// Serializes exactly like [`BlockWire`], without copying the ciphertext.
#[derive(Serialize)]
struct BlockWireRef<'a> {
    mask: &'a [u64],
    body: &'a [u64],
    slots: &'a [Option<TemplateId>],
}

impl BlockCiphertext {
    fn wire(&self) -> BlockWireRef<'_> {
        BlockWireRef {
            mask: &self.mask,
            body: &self.body,
            slots: &self.slots,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        wire::encode(Kind::Block, &self.params, &self.wire())
    }

    /// `to_bytes().len()`, without serializing.
    pub fn wire_len(&self) -> usize {
        wire::encoded_len(&self.params, &self.wire())
    }

    pub fn from_bytes(bytes: &[u8], params: &Params) -> Result<Self, HeError> {
        let b: BlockWire = wire::decode(Kind::Block, params, bytes)?;
        let n = params.polynomial_size;
        if b.mask.len() != n || b.body.len() != n || b.slots.len() != params.slots_per_block() {
            return Err(HeError::Malformed {
                what: Kind::Block.name(),
                detail: "wrong dimensions".into(),
            });
        }
        Ok(BlockCiphertext {
            params: *params,
            mask: b.mask,
            body: b.body,
            slots: b.slots,
        })
    }
}

/// Rounds a body coefficient to the nearest multiple of 2^(64 - [`Params::body_bits`]),
/// exactly as the external product's decomposition rounds its input (half up).
///
/// Every addend's body is rounded once as it is packed, so a block's body is a sum of
/// such multiples and stays one (the store keeps its top `body_bits` only, 5.5 bytes a
/// coefficient instead of 8). The rounding adds at most 2^19 to each coefficient of the
/// template's phase, once, the same order as what the decomposition already discards;
/// the noise it adds to a readout is measured in tests/he_core.rs.
pub(crate) fn round_body(x: u64, p: &Params) -> u64 {
    let low = 64 - p.body_bits();
    let half = 1u64 << (low - 1);
    x.wrapping_add(half) & !((1u64 << low) - 1)
}

/// `acc += x * X^shift` (negacyclic, one polynomial of N coefficients).
fn add_shifted(acc: &mut [u64], x: &[u64], shift: usize) {
    let n = acc.len();
    let (low, high) = x.split_at(n - shift);
    for (a, &c) in acc[shift..].iter_mut().zip(low) {
        *a = a.wrapping_add(c);
    }
    for (a, &c) in acc[..shift].iter_mut().zip(high) {
        *a = a.wrapping_sub(c);
    }
}

/// `acc += x`, coefficient by coefficient (wrapping).
pub(super) fn add_into(acc: &mut [u64], x: &[u64]) {
    for (a, &b) in acc.iter_mut().zip(x) {
        *a = a.wrapping_add(b);
    }
}

/// One block of the gallery in memory: its slot table always, its ciphertext when the
/// gallery holds it ([`Held`]; a gallery may keep only some blocks' ciphertexts, the rest
/// staying in its owner's store: see [`Residency`](super::Residency)).
pub(super) struct Block {
    pub(super) slots: Vec<Option<TemplateId>>,
    pub(super) held: Option<Held>,
}

/// A block's ciphertext in memory, with what its record is made of.
pub(super) struct Held {
    /// Mask and summed body: the only ciphertext the matcher keeps.
    pub(super) ct: Glwe,
    /// How the store rebuilds the mask: a dense snapshot (rare) and seeds since.
    pub(super) base_mask: Option<Box<[u64]>>,
    pub(super) seeds: Vec<MaskSeed>,
}

impl Block {
    /// An empty block, held (an encryption of zero in every slot).
    pub(super) fn empty(p: &Params) -> Self {
        Block {
            slots: vec![None; p.slots_per_block()],
            held: Some(Held::empty(p)),
        }
    }

    /// A block whose ciphertext is not held (the slot table is filled in afterwards).
    pub(super) fn not_held(p: &Params) -> Self {
        Block {
            slots: vec![None; p.slots_per_block()],
            held: None,
        }
    }

    pub(super) fn occupied(&self) -> usize {
        self.slots.iter().flatten().count()
    }
}

impl Held {
    pub(super) fn empty(p: &Params) -> Self {
        Held {
            ct: GlweCiphertext::new(0u64, p.glwe_size(), p.poly_size(), p.modulus()),
            base_mask: None,
            seeds: Vec::new(),
        }
    }

    /// Rebuilds one block's ciphertext from its record: body and base copied, seeds
    /// expanded.
    pub(super) fn from_record(p: &Params, r: BlockRecord) -> Result<Self, HeError> {
        let n = p.polynomial_size;
        if r.body.len() != n || r.base_mask.as_ref().is_some_and(|m| m.len() != n) {
            return Err(HeError::Malformed {
                what: "stored block",
                detail: "wrong dimensions".into(),
            });
        }
        if r.body.iter().any(|&c| round_body(c, p) != c) {
            return Err(HeError::Malformed {
                what: "stored block",
                detail: "body beyond the stored precision".into(),
            });
        }
        let mut block = Held::empty(p);
        block.ct.get_mut_body().as_mut().copy_from_slice(&r.body);
        if let Some(base) = &r.base_mask {
            block.ct.get_mut_mask().as_mut().copy_from_slice(base);
        }
        let mut mask = vec![0u64; n * p.glwe_dimension];
        for s in &r.seeds {
            if s.shift as usize >= n {
                return Err(HeError::Malformed {
                    what: "stored block",
                    detail: format!("seed shift {} beyond the block", s.shift),
                });
            }
            mask::fill(s.seed, 0, &mut mask);
            for (acc, poly) in block
                .ct
                .get_mut_mask()
                .as_mut()
                .chunks_exact_mut(n)
                .zip(mask.chunks_exact(n))
            {
                add_shifted(acc, poly, s.shift as usize);
            }
        }
        block.base_mask = r.base_mask.map(Vec::into_boxed_slice);
        block.seeds = r.seeds;
        Ok(block)
    }

    /// The block's record as it stands.
    pub(super) fn record(&self) -> BlockRecord {
        BlockRecord {
            body: self.ct.get_body().as_ref().to_vec(),
            base_mask: self.base_mask.as_ref().map(|m| m.to_vec()),
            seeds: self.seeds.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use tfhe::core_crypto::algorithms::polynomial_algorithms::polynomial_wrapping_monic_monomial_mul_assign;
    use tfhe::core_crypto::prelude::{MonomialDegree, Polynomial};

    use super::*;

    #[test]
    fn add_shifted_is_the_negacyclic_monomial_product() {
        let p = Params::v1();
        let n = p.polynomial_size;
        let mut rng = StdRng::seed_from_u64(5);
        for shift in [0, 1, p.slot_width(), 14 * p.slot_width(), n / 2, n - 1] {
            let x: Vec<u64> = (0..n).map(|_| rng.random()).collect();
            let acc0: Vec<u64> = (0..n).map(|_| rng.random()).collect();
            let mut fast = acc0.clone();
            add_shifted(&mut fast, &x, shift);
            let mut poly = Polynomial::from_container(x.clone());
            polynomial_wrapping_monic_monomial_mul_assign(&mut poly, MonomialDegree(shift));
            let mut reference = acc0.clone();
            add_into(&mut reference, poly.as_ref());
            assert_eq!(fast, reference, "shift {shift}");
        }
    }
}
