//! The matcher's packed gallery, with no key material: templates shifted into slots of
//! GLWE blocks by monomial multiplication and addition; a slot freed by adding its owner's
//! encryption of the negation and reused; 1:N and 1:1 answered with one external product
//! per block ([`PreparedProbe`]).
//!
//! Changes are planned against the gallery ([`Gallery::plan_insert`],
//! [`Gallery::plan_erase`]), made durable by the caller from [`Change::record`], then
//! applied: the gallery itself never does I/O. [`GalleryBuilder`] rebuilds a gallery from
//! stored [`BlockRecord`]s.

use std::collections::{BTreeSet, HashMap};

use rayon::prelude::*;
use tfhe::core_crypto::algorithms::polynomial_algorithms::polynomial_wrapping_monic_monomial_mul_assign;
use tfhe::core_crypto::commons::traits::contiguous_entity_container::ContiguousEntityContainerMut;
use tfhe::core_crypto::prelude::{
    glwe_ciphertext_add_assign, ComputationBuffers, GlweCiphertext, MonomialDegree,
};

use super::block::{
    add_into, round_body, Block, BlockCiphertext, BlockRecord, Glwe, Held, MaskSeed,
};
use super::entities::EncryptedTemplate;
use super::id::TemplateId;
use super::mask;
use super::probe::PreparedProbe;
use super::result::{BlockResult, MatchResult};
use super::{HeError, Params};

/// Where a template sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub block: usize,
    pub slot: usize,
}

/// Which of its blocks' ciphertexts a gallery holds in memory. The slot table is always
/// whole; a block not held lives only in the owner's store, and everything that needs its
/// ciphertext (matching, planning a change into it, handing it to its owner) answers
/// [`HeError::NotHeld`] until the owner hands its record to [`Gallery::hold`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Residency {
    /// Every block (one matcher holding its whole gallery).
    #[default]
    All,
    /// The blocks whose number modulo `of` is in `kept` (a cluster node's shards).
    Modulo { of: usize, kept: BTreeSet<usize> },
}

impl Residency {
    pub fn holds(&self, block: usize) -> bool {
        match self {
            Residency::All => true,
            Residency::Modulo { of, kept } => kept.contains(&(block % (*of).max(1))),
        }
    }
}

/// Expands a seeded ciphertext into a full GLWE ciphertext in slot 0.
fn expand(seed: u128, body: &[u64], p: &Params) -> Glwe {
    let mut out = GlweCiphertext::new(0u64, p.glwe_size(), p.poly_size(), p.modulus());
    mask::fill(seed, 0, out.get_mut_mask().as_mut());
    out.get_mut_body().as_mut().copy_from_slice(body);
    out
}

/// `ct * X^shift` (negacyclic), every polynomial.
fn shifted(mut ct: Glwe, shift: usize) -> Glwe {
    for mut poly in ct.as_mut_polynomial_list().iter_mut() {
        polynomial_wrapping_monic_monomial_mul_assign(&mut poly, MonomialDegree(shift));
    }
    ct
}

/// What a change does to the slot it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// A new template fills the slot.
    Fill(TemplateId),
    /// The slot's template is cancelled (by its owner's fresh encryption of its negation)
    /// and the slot becomes free.
    Free(TemplateId),
}

/// A change computed against the gallery but not yet applied: the caller makes
/// [`Change::record`] durable first, then calls [`Gallery::apply`].
pub struct Change {
    location: Location,
    effect: Effect,
    /// The seeded ciphertext, expanded and shifted into the slot.
    addend: Glwe,
    seed: MaskSeed,
    /// The block's record once the change is applied.
    record: BlockRecord,
    new_block: bool,
    /// Set when the change empties the gallery's last occupied block: the blocks from this
    /// number on are all empty and are dropped (the store deletes their records).
    drop_from: Option<usize>,
}

impl Change {
    pub fn location(&self) -> Location {
        self.location
    }

    /// The block's durable form after this change.
    pub fn record(&self) -> &BlockRecord {
        &self.record
    }

    /// Blocks from this number on are empty once the change is applied and are dropped:
    /// the store deletes their records in the same transaction.
    pub fn drop_from(&self) -> Option<usize> {
        self.drop_from
    }
}

/// A template's move out of a sparse block (re-packing), planned as two changes committed
/// together: the erasure of its old slot, and its fresh encryption into a free slot of a
/// lower-numbered block.
pub struct Move {
    pub erase: Change,
    pub fill: Change,
}

/// Rebuilds a gallery from stored blocks, batch by batch (block numbers 0..n in any
/// order, each batch's seeds expanded in parallel), then the slot table.
pub struct GalleryBuilder {
    params: Params,
    residency: Residency,
    blocks: Vec<Option<Block>>,
}

fn corrupt(detail: String) -> HeError {
    HeError::Malformed {
        what: "stored gallery",
        detail,
    }
}

impl GalleryBuilder {
    /// A builder of a gallery holding every block.
    pub fn new(params: &Params) -> Self {
        Self::holding(params, Residency::All)
    }

    /// A builder of a gallery holding the blocks `residency` names (the others' records
    /// are not expanded: they stay in the store).
    pub fn holding(params: &Params, residency: Residency) -> Self {
        GalleryBuilder {
            params: *params,
            residency,
            blocks: Vec::new(),
        }
    }

    pub fn add(&mut self, records: Vec<(usize, BlockRecord)>) -> Result<(), HeError> {
        let p = self.params;
        let residency = &self.residency;
        let built: Vec<(usize, Result<Block, HeError>)> = records
            .into_par_iter()
            .map(|(no, r)| {
                if !residency.holds(no) {
                    return (no, Ok(Block::not_held(&p)));
                }
                let held = Held::from_record(&p, r).map(|h| Block {
                    slots: vec![None; p.slots_per_block()],
                    held: Some(h),
                });
                (no, held)
            })
            .collect();
        for (no, b) in built {
            if no >= self.blocks.len() {
                self.blocks.resize_with(no + 1, || None);
            }
            if self.blocks[no].is_some() {
                return Err(corrupt(format!("block {no} stored twice")));
            }
            self.blocks[no] = Some(b?);
        }
        Ok(())
    }

    /// The gallery, with every template placed; fails on a gap in the block numbers or a
    /// slot table that does not fit the blocks.
    pub fn finish(
        self,
        slots: impl IntoIterator<Item = (TemplateId, Location)>,
    ) -> Result<Gallery, HeError> {
        let p = self.params;
        let blocks = self
            .blocks
            .into_iter()
            .enumerate()
            .map(|(no, b)| b.ok_or_else(|| corrupt(format!("block {no} is missing"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut g = Gallery {
            params: p,
            residency: self.residency,
            index: HashMap::new(),
            blocks,
            with_room: BTreeSet::new(),
        };
        for (id, loc) in slots {
            let block = g
                .blocks
                .get_mut(loc.block)
                .ok_or_else(|| corrupt(format!("template {id} in missing block {}", loc.block)))?;
            match block.slots.get_mut(loc.slot) {
                Some(s @ None) => *s = Some(id),
                _ => {
                    return Err(corrupt(format!(
                        "template {id}: slot taken or out of range"
                    )))
                }
            }
            if g.index.insert(id, loc).is_some() {
                return Err(HeError::DuplicateTemplate(id));
            }
        }
        g.with_room = (0..g.blocks.len())
            .filter(|&b| g.blocks[b].occupied() < p.slots_per_block())
            .collect();
        Ok(g)
    }
}

/// The matcher's encrypted gallery: packed blocks and the slot table, nothing else. No
/// per-template ciphertext is kept once a template is packed.
///
/// Invariants: `index[id] == loc` iff `blocks[loc.block].slots[loc.slot] == Some(id)`;
/// a slot that is `None` holds an encryption of zero (it never held a template, or its
/// template was cancelled by its owner); block numbers never change (an emptied block is
/// reused, never renumbered; only a trailing run of empty blocks is dropped), so the
/// store's block keys stay valid.
pub struct Gallery {
    params: Params,
    /// Which blocks' ciphertexts are kept; a block outside it may still be held (loaded
    /// for a request) until [`Gallery::release`].
    residency: Residency,
    index: HashMap<TemplateId, Location>,
    blocks: Vec<Block>,
    /// Blocks with at least one free slot (the lowest is filled first).
    with_room: BTreeSet<usize>,
}

impl Gallery {
    pub fn new(params: &Params) -> Self {
        Self::holding(params, Residency::All)
    }

    /// An empty gallery that will keep the blocks `residency` names.
    pub fn holding(params: &Params, residency: Residency) -> Self {
        Gallery {
            params: *params,
            residency,
            index: HashMap::new(),
            blocks: Vec::new(),
            with_room: BTreeSet::new(),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Blocks holding at least one template (what an identify answers with).
    pub fn occupied_blocks(&self) -> usize {
        self.blocks.iter().filter(|b| b.occupied() > 0).count()
    }

    pub fn ids(&self) -> impl Iterator<Item = TemplateId> + '_ {
        self.index.keys().copied()
    }

    pub fn contains(&self, id: TemplateId) -> bool {
        self.index.contains_key(&id)
    }

    pub fn location(&self, id: TemplateId) -> Option<Location> {
        self.index.get(&id).copied()
    }

    /// The record of block `b` as it stands, if the block exists and is held.
    pub fn record(&self, b: usize) -> Option<BlockRecord> {
        self.blocks.get(b)?.held.as_ref().map(Held::record)
    }

    /// Block `b`'s ciphertext, or [`HeError::NotHeld`].
    fn held(&self, b: usize) -> Result<&Held, HeError> {
        self.blocks
            .get(b)
            .and_then(|x| x.held.as_ref())
            .ok_or(HeError::NotHeld { block: b })
    }

    /// Blocks whose ciphertext is held now.
    pub fn held_blocks(&self) -> usize {
        self.blocks.iter().filter(|b| b.held.is_some()).count()
    }

    /// Of the blocks `numbers`, those that exist and are not held, ascending, deduplicated.
    pub fn not_held(&self, numbers: impl IntoIterator<Item = usize>) -> Vec<usize> {
        let set: BTreeSet<usize> = numbers
            .into_iter()
            .filter(|&b| self.blocks.get(b).is_some_and(|x| x.held.is_none()))
            .collect();
        set.into_iter().collect()
    }

    /// The blocks `residency` names that exist and are not held (what
    /// [`Gallery::set_residency`] leaves to be loaded).
    pub fn missing(&self, residency: &Residency) -> Vec<usize> {
        self.not_held((0..self.blocks.len()).filter(|&b| residency.holds(b)))
    }

    /// Keeps the blocks `residency` names from now on: the ciphertexts of the others are
    /// dropped (returns how many); those it names but the gallery does not hold are
    /// [`Gallery::missing`], for the owner to [`Gallery::hold`].
    pub fn set_residency(&mut self, residency: Residency) -> usize {
        self.residency = residency;
        self.release()
    }

    /// Drops the ciphertexts of held blocks outside the residency (loaded for a request),
    /// returning how many.
    pub fn release(&mut self) -> usize {
        self.release_only(0..self.blocks.len())
    }

    /// [`Gallery::release`] of the given blocks only (those one request loaded).
    pub fn release_only(&mut self, numbers: impl IntoIterator<Item = usize>) -> usize {
        let mut dropped = 0;
        for b in numbers {
            if let Some(block) = self.blocks.get_mut(b) {
                if block.held.is_some() && !self.residency.holds(b) {
                    block.held = None;
                    dropped += 1;
                }
            }
        }
        dropped
    }

    /// Holds the given blocks from their records (as the owner's store has them now: the
    /// caller makes sure no change is applied between reading them and this call). Block
    /// numbers beyond the gallery are [`HeError::Malformed`]; blocks held already are
    /// left as they are.
    pub fn hold(&mut self, records: Vec<(usize, BlockRecord)>) -> Result<(), HeError> {
        let p = self.params;
        let records: Vec<(usize, BlockRecord)> = records
            .into_iter()
            .filter(|(b, _)| self.blocks.get(*b).is_none_or(|x| x.held.is_none()))
            .collect();
        if let Some((b, _)) = records.iter().find(|(b, _)| *b >= self.blocks.len()) {
            return Err(HeError::Malformed {
                what: "block numbers",
                detail: format!("block {b} is beyond the gallery's {}", self.blocks.len()),
            });
        }
        let built: Vec<(usize, Held)> = records
            .into_par_iter()
            .map(|(b, r)| Held::from_record(&p, r).map(|h| (b, h)))
            .collect::<Result<_, _>>()?;
        for (b, h) in built {
            self.blocks[b].held = Some(h);
        }
        Ok(())
    }

    /// The lowest block with a free slot: where the next template goes, and the lowest a
    /// move can take a template to (`None`: a new block).
    pub fn first_with_room(&self) -> Option<usize> {
        self.with_room.first().copied()
    }

    /// The full ciphertext of the block holding `id`, for its owner.
    pub fn block_of(&self, id: TemplateId) -> Result<(Location, BlockCiphertext), HeError> {
        let loc = self.location(id).ok_or(HeError::UnknownTemplate(id))?;
        let held = self.held(loc.block)?;
        Ok((
            loc,
            BlockCiphertext {
                params: self.params,
                mask: held.ct.get_mask().as_ref().to_vec(),
                body: held.ct.get_body().as_ref().to_vec(),
                slots: self.blocks[loc.block].slots.clone(),
            },
        ))
    }

    fn check_template(&self, t: &EncryptedTemplate) -> Result<(), HeError> {
        if t.params != self.params {
            return Err(HeError::WrongParams {
                what: "encrypted template",
            });
        }
        Ok(())
    }

    /// Plans packing a template into the first free slot (a new block if none).
    pub fn plan_insert(
        &self,
        id: TemplateId,
        template: &EncryptedTemplate,
    ) -> Result<Change, HeError> {
        self.check_template(template)?;
        if !id.is_valid() {
            return Err(HeError::InvalidId(id));
        }
        if self.index.contains_key(&id) {
            return Err(HeError::DuplicateTemplate(id));
        }
        let (location, new_block) = match self.with_room.first() {
            Some(&block) => {
                let slot = self.blocks[block]
                    .slots
                    .iter()
                    .position(Option::is_none)
                    .expect("blocks in with_room have a free slot");
                (Location { block, slot }, false)
            }
            None => (
                Location {
                    block: self.blocks.len(),
                    slot: 0,
                },
                true,
            ),
        };
        self.plan(location, Effect::Fill(id), template, new_block)
    }

    /// Plans the removal step of the erasure protocol: `negation` is the owner's fresh
    /// encryption (in slot 0) of the negation of what the slot of `id` holds, made with
    /// `super::erasure` from [`Gallery::block_of`]. Adding it shifted into the slot leaves
    /// an encryption of zero there, and the slot is reused. The matcher cannot check the
    /// plaintext (it has no key): see SECURITY.md for what a wrong one can do.
    pub fn plan_erase(
        &self,
        id: TemplateId,
        negation: &EncryptedTemplate,
    ) -> Result<Change, HeError> {
        self.check_template(negation)?;
        let location = self.location(id).ok_or(HeError::UnknownTemplate(id))?;
        let mut change = self.plan(location, Effect::Free(id), negation, false)?;
        let b = location.block;
        let empties = self.blocks[b].occupied() == 1;
        if empties && self.blocks[b + 1..].iter().all(|x| x.occupied() == 0) {
            let first = self.blocks[..b]
                .iter()
                .rposition(|x| x.occupied() > 0)
                .map_or(0, |last| last + 1);
            change.drop_from = Some(first);
        }
        Ok(change)
    }

    /// Plans moving `id` into the first free slot of a block numbered below its own
    /// (re-packing a sparse gallery with no key on the matcher): `negation` cancels its
    /// old slot as in [`Gallery::plan_erase`], `fresh` is its owner's new encryption of the
    /// same template (both from `super::relocation`). `None` when no lower block has room
    /// (the template is already as low as it can go).
    pub fn plan_move(
        &self,
        id: TemplateId,
        negation: &EncryptedTemplate,
        fresh: &EncryptedTemplate,
    ) -> Result<Option<Move>, HeError> {
        self.check_template(fresh)?;
        let mut erase = self.plan_erase(id, negation)?;
        let from = erase.location.block;
        let Some(&block) = self.with_room.range(..from).next() else {
            return Ok(None);
        };
        let slot = self.blocks[block]
            .slots
            .iter()
            .position(Option::is_none)
            .expect("blocks in with_room have a free slot");
        let fill = self.plan(Location { block, slot }, Effect::Fill(id), fresh, false)?;
        // The target may itself be an empty block of the trailing run the erasure drops:
        // it is occupied after the move, so only the blocks behind it go.
        erase.drop_from = erase.drop_from.map(|first| first.max(block + 1));
        Ok(Some(Move { erase, fill }))
    }

    /// Applies a planned move (after both records are durable, in one transaction).
    pub fn apply_move(&mut self, m: Move) {
        self.apply(m.erase);
        self.apply(m.fill);
    }

    fn plan(
        &self,
        location: Location,
        effect: Effect,
        ct: &EncryptedTemplate,
        new_block: bool,
    ) -> Result<Change, HeError> {
        let p = &self.params;
        let shift = location.slot * p.slot_width();
        let mut addend = shifted(expand(ct.seed, &ct.body, p), shift);
        for c in addend.get_mut_body().as_mut() {
            *c = round_body(*c, p);
        }
        let seed = MaskSeed {
            seed: ct.seed,
            shift: shift as u32,
        };
        let empty = Held::empty(p);
        let block = if new_block {
            &empty
        } else {
            self.held(location.block)?
        };
        let mut body = block.ct.get_body().as_ref().to_vec();
        add_into(&mut body, addend.get_body().as_ref());
        let record = if block.seeds.len() < BlockRecord::seed_limit(p) {
            let mut seeds = block.seeds.clone();
            seeds.push(seed);
            BlockRecord {
                body,
                base_mask: block.base_mask.as_ref().map(|m| m.to_vec()),
                seeds,
            }
        } else {
            let mut mask = block.ct.get_mask().as_ref().to_vec();
            add_into(&mut mask, addend.get_mask().as_ref());
            BlockRecord {
                body,
                base_mask: Some(mask),
                seeds: Vec::new(),
            }
        };
        Ok(Change {
            location,
            effect,
            addend,
            seed,
            record,
            new_block,
            drop_from: None,
        })
    }

    /// Applies a planned change (after its record is durable). The gallery must not have
    /// changed since the plan (the caller holds its writer lock across both). A block
    /// released since the plan only has its slot table changed (its record is the
    /// store's).
    pub fn apply(&mut self, change: Change) -> BlockRecord {
        let Change {
            location: Location { block: b, slot },
            effect,
            addend,
            seed,
            record,
            new_block,
            drop_from,
        } = change;
        if new_block {
            assert_eq!(b, self.blocks.len(), "planned against this gallery");
            self.blocks.push(Block::empty(&self.params));
        }
        let block = &mut self.blocks[b];
        if let Some(held) = block.held.as_mut() {
            glwe_ciphertext_add_assign(&mut held.ct, &addend);
            if record.seeds.is_empty() {
                held.base_mask = record.base_mask.clone().map(Vec::into_boxed_slice);
                held.seeds.clear();
            } else {
                held.seeds.push(seed);
            }
        }
        match effect {
            Effect::Fill(id) => {
                block.slots[slot] = Some(id);
                self.index.insert(id, Location { block: b, slot });
            }
            Effect::Free(id) => {
                block.slots[slot] = None;
                self.index.remove(&id);
            }
        }
        if block.occupied() < self.params.slots_per_block() {
            self.with_room.insert(b);
        } else {
            self.with_room.remove(&b);
        }
        if let Some(first) = drop_from {
            debug_assert!(self.blocks[first..].iter().all(|x| x.occupied() == 0));
            self.blocks.truncate(first);
            self.with_room.split_off(&first);
        }
        record
    }

    /// Plans and applies an insert (no store: tests, benches, in-memory use).
    pub fn insert(&mut self, id: TemplateId, template: &EncryptedTemplate) -> Result<(), HeError> {
        let change = self.plan_insert(id, template)?;
        self.apply(change);
        Ok(())
    }

    /// Plans and applies an erasure (no store: tests, benches, in-memory use).
    pub fn erase(&mut self, id: TemplateId, negation: &EncryptedTemplate) -> Result<(), HeError> {
        let change = self.plan_erase(id, negation)?;
        self.apply(change);
        Ok(())
    }

    /// 1:N, streamed: one external product per occupied block, `chunk` blocks at a time in
    /// parallel on the current rayon pool, each chunk handed to `sink` in block order
    /// before the next is computed (so at most one chunk of results is held).
    pub fn identify_chunks<E>(
        &self,
        probe: &PreparedProbe,
        chunk: usize,
        sink: impl FnMut(Vec<BlockResult>) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<HeError>,
    {
        self.identify_blocks(probe, &self.occupied_block_numbers(), chunk, sink)
    }

    /// The numbers of the blocks holding a template, ascending: the blocks an identify
    /// answers, in its order.
    pub fn occupied_block_numbers(&self) -> Vec<usize> {
        (0..self.blocks.len())
            .filter(|&b| self.blocks[b].occupied() > 0)
            .collect()
    }

    /// [`Gallery::identify_chunks`] over the given blocks only (a cluster node's share of
    /// an identify), in the order given; a block number beyond the gallery is
    /// [`HeError::Malformed`].
    pub fn identify_blocks<E>(
        &self,
        probe: &PreparedProbe,
        numbers: &[usize],
        chunk: usize,
        mut sink: impl FnMut(Vec<BlockResult>) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<HeError>,
    {
        self.check_probe(probe)?;
        let blocks: Vec<(&Block, &Held)> = numbers
            .iter()
            .map(|&b| match self.blocks.get(b) {
                None => Err(HeError::Malformed {
                    what: "block numbers",
                    detail: format!("block {b} is beyond the gallery's {}", self.blocks.len()),
                }),
                Some(block) => Ok((block, self.held(b)?)),
            })
            .collect::<Result<_, _>>()?;
        for part in blocks.chunks(chunk.max(1)) {
            let results = part
                .par_iter()
                .map_init(ComputationBuffers::new, |buffers, (b, held)| {
                    probe.block_result(&held.ct, b.slots.iter().copied().enumerate(), buffers)
                })
                .collect();
            sink(results)?;
        }
        Ok(())
    }

    /// 1:N into one in-memory result.
    pub fn identify(&self, probe: &PreparedProbe) -> Result<MatchResult, HeError> {
        let mut blocks = Vec::with_capacity(self.occupied_blocks());
        self.identify_chunks(probe, 256, |mut part| {
            blocks.append(&mut part);
            Ok::<(), HeError>(())
        })?;
        Ok(MatchResult::new(&self.params, blocks))
    }

    /// 1:1: one external product with the template's block. Every slot's readout is
    /// returned (the app keeps the asked one), so that decryption checks all 15 against
    /// the noise bound and the empty slots against zero: a 1:1 answered for another key
    /// then fails with probability about 1 - 2^-60, where one readout alone would pass
    /// with probability about 1/16.
    pub fn verify(&self, probe: &PreparedProbe, id: TemplateId) -> Result<MatchResult, HeError> {
        self.check_probe(probe)?;
        let loc = self.location(id).ok_or(HeError::UnknownTemplate(id))?;
        let mut buffers = ComputationBuffers::new();
        let held = self.held(loc.block)?;
        let block = probe.block_result(
            &held.ct,
            self.blocks[loc.block].slots.iter().copied().enumerate(),
            &mut buffers,
        );
        Ok(MatchResult::new(&self.params, vec![block]))
    }

    fn check_probe(&self, probe: &PreparedProbe) -> Result<(), HeError> {
        if probe.params != self.params {
            return Err(HeError::WrongParams {
                what: "encrypted probe",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::he::{
        decrypt, decrypt_gallery_block, encrypt_probe, encrypt_template, erasure, relocation,
        synthetic_templates, SecretKey, Template,
    };

    #[test]
    fn a_block_not_held_is_refused_until_its_record_is_handed_over() {
        let p = Params::v1();
        let m = p.slots_per_block();
        let key = SecretKey::generate(&p);
        let templates = synthetic_templates(2 * m, 3, &p);
        let mut whole = Gallery::new(&p);
        for (i, t) in templates.iter().enumerate() {
            whole
                .insert(TemplateId(i as u64 + 1), &encrypt_template(&key, t))
                .unwrap();
        }
        let mut b = GalleryBuilder::holding(
            &p,
            Residency::Modulo {
                of: 2,
                kept: [0].into(),
            },
        );
        b.add((0..2).map(|n| (n, whole.record(n).unwrap())).collect())
            .unwrap();
        let mut g = b
            .finish(
                (1..=2 * m as u64).map(|i| (TemplateId(i), whole.location(TemplateId(i)).unwrap())),
            )
            .unwrap();
        assert_eq!(g.held_blocks(), 1);
        assert_eq!(g.not_held([0, 1, 1, 7]), vec![1]);
        let (probe, ctx) = encrypt_probe(&key, &templates[0]);
        let prepared = PreparedProbe::new(&probe, &p).unwrap();
        let in_block_1 = TemplateId(m as u64 + 1);
        assert!(matches!(
            g.identify(&prepared),
            Err(HeError::NotHeld { block: 1 })
        ));
        assert!(matches!(
            g.verify(&prepared, in_block_1),
            Err(HeError::NotHeld { block: 1 })
        ));
        assert!(matches!(
            g.block_of(in_block_1),
            Err(HeError::NotHeld { block: 1 })
        ));
        g.hold(vec![(1, whole.record(1).unwrap())]).unwrap();
        let got = decrypt(&key, &ctx, &g.identify(&prepared).unwrap()).unwrap();
        let want = decrypt(&key, &ctx, &whole.identify(&prepared).unwrap()).unwrap();
        assert_eq!(got, want);
        assert_eq!(g.release(), 1);
        assert_eq!(g.held_blocks(), 1);
        assert!(g.hold(vec![(5, whole.record(1).unwrap())]).is_err());
    }

    #[test]
    fn moves_fill_lower_blocks_and_trailing_empty_blocks_are_dropped() {
        let p = Params::v1();
        let m = p.slots_per_block();
        let key = SecretKey::generate(&p);
        let templates = synthetic_templates(3 * m, 21, &p);
        let mut g = Gallery::new(&p);
        let mut plain = BTreeMap::new();
        for (i, t) in templates.iter().enumerate() {
            let id = TemplateId(i as u64 + 1);
            g.insert(id, &encrypt_template(&key, t)).unwrap();
            plain.insert(id, t.clone());
        }
        let remove = |g: &mut Gallery, plain: &mut BTreeMap<TemplateId, Template>, id| {
            let (loc, block) = g.block_of(id).unwrap();
            g.erase(id, &erasure(&key, &block, loc.slot).unwrap())
                .unwrap();
            plain.remove(&id);
        };
        // Empty block 1 entirely, and all but one of block 2: block 1 stays (block 2
        // behind it is occupied), nothing is dropped.
        for i in m..3 * m - 1 {
            remove(&mut g, &mut plain, TemplateId(i as u64 + 1));
        }
        assert_eq!(g.block_count(), 3);
        assert_eq!(g.occupied_blocks(), 2);
        // Block 0 is full, so the last template moves into the empty block 1, and block 2
        // (now empty, last) is dropped; block 1 is not.
        let last = TemplateId(3 * m as u64);
        let (loc, block) = g.block_of(last).unwrap();
        let (negation, fresh) = relocation(&key, &block, loc.slot).unwrap();
        let mv = g.plan_move(last, &negation, &fresh).unwrap().unwrap();
        assert_eq!(mv.fill.location(), Location { block: 1, slot: 0 });
        assert_eq!(mv.erase.drop_from(), Some(2));
        g.apply_move(mv);
        assert_eq!(g.block_count(), 2);
        assert_eq!(g.location(last), Some(Location { block: 1, slot: 0 }));
        // Every slot decrypts to its template or to zeros; the moved one is exact.
        for b in 0..2 {
            let id = if b == 0 { TemplateId(1) } else { last };
            let (_, block) = g.block_of(id).unwrap();
            let values = decrypt_gallery_block(&key, &block).unwrap();
            for (slot, owner) in block.slots.iter().enumerate() {
                let w = &values[slot * p.slot_width()..(slot + 1) * p.slot_width()];
                match owner {
                    None => assert!(w.iter().all(|&v| v == 0), "block {b} slot {slot}"),
                    Some(id) => {
                        let t = &plain[id];
                        let norm: i64 = t.values().iter().map(|&v| (v as i64).pow(2)).sum();
                        assert_eq!(w[0], norm, "block {b} slot {slot}");
                    }
                }
            }
        }
        // Nothing lower has room for a template of block 0: no move.
        let (loc, block) = g.block_of(TemplateId(1)).unwrap();
        let (negation, fresh) = relocation(&key, &block, loc.slot).unwrap();
        assert!(g
            .plan_move(TemplateId(1), &negation, &fresh)
            .unwrap()
            .is_none());
        // Removing the last template of the last block drops it.
        remove(&mut g, &mut plain, last);
        assert_eq!(g.block_count(), 1);
        let (probe, ctx) = encrypt_probe(&key, &templates[0]);
        let prepared = PreparedProbe::new(&probe, &p).unwrap();
        let got = decrypt(&key, &ctx, &g.identify(&prepared).unwrap()).unwrap();
        assert_eq!(got.len(), plain.len());
        for d in got {
            assert_eq!(d.distance_sq, templates[0].distance_sq(&plain[&d.id]));
        }
    }
}
