//! The byte layout of what the store keeps per block and per template: a block's
//! [`BlockRecord`] (format 2: `u8 format || N x 44-bit summed body (two in 11 bytes) ||
//! u8 has_base || [N x u64 base mask] || u32 seed count || seeds x (u128 seed, u16
//! shift)`, little-endian; format 1, with a 64-bit body and u32 shifts, is still read),
//! written as parts of one redb page each, and a template's slot row (`u64 block || u8
//! slot || encrypted label`).

use crate::he::{round_body, BlockRecord, Location, MaskSeed, Params};

/// Block records written by this build: 44-bit bodies, 16-bit shifts.
const RECORD_FORMAT: u8 = 2;
/// Block records of the first block layout (read, rounded, rewritten on change).
const RECORD_FORMAT_V1: u8 = 1;
/// A seed on disk: the u128 seed and its u16 shift.
const SEED_BYTES: usize = 18;

/// A slot row: `u64 block || u8 slot || encrypted label`.
pub(super) fn encode_slot(block: usize, slot: usize, label: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(9 + label.len());
    row.extend_from_slice(&(block as u64).to_le_bytes());
    row.push(slot as u8);
    row.extend_from_slice(label);
    row
}

/// The location and label of a slot row (`None`: too short).
pub(super) fn split_slot(v: &[u8]) -> Option<(Location, &[u8])> {
    let block = u64::from_le_bytes(v.get(..8)?.try_into().ok()?) as usize;
    let slot = *v.get(8)? as usize;
    Some((Location { block, slot }, &v[9..]))
}

/// A record is stored in parts of at most this many bytes, keyed `block << PART_BITS |
/// part`, so that each part with its key fills one 4 KiB redb page alone: redb gives a
/// leaf larger than a page the next power of two (a whole record took 32 KiB), and small
/// entries inserted in order half-fill their pages. A full block's format-2 record
/// (11,540 bytes) is three parts, 12 KiB on disk; the ~230 bytes a page has beside its
/// part hold the key (a tenant id of up to ~200 bytes) and the leaf header.
pub(super) const PART_BYTES: usize = 3_860;
pub(super) const PART_BITS: u32 = 8;
pub(super) const PART_MASK: u64 = (1 << PART_BITS) - 1;

type BlockTable<'t> = redb::Table<'t, (&'static str, u64), &'static [u8]>;

/// Writes a block's record as its parts, removing parts a longer earlier record left.
#[allow(clippy::result_large_err)]
pub(super) fn put_record(
    table: &mut BlockTable<'_>,
    tenant: &str,
    block: usize,
    bytes: &[u8],
) -> Result<(), redb::Error> {
    let base = (block as u64) << PART_BITS;
    let parts = bytes.len().div_ceil(PART_BYTES) as u64;
    assert!(parts <= PART_MASK, "a record fits in 255 parts");
    table.retain_in(
        (tenant, base + parts)..=(tenant, base | PART_MASK),
        |_, _| false,
    )?;
    for (i, chunk) in bytes.chunks(PART_BYTES).enumerate() {
        table.insert((tenant, base + i as u64), chunk)?;
    }
    Ok(())
}

/// Packs a body (each coefficient a multiple of 2^(64 - body_bits)) as its top
/// `body_bits` = 44 bits, two coefficients in 11 bytes.
fn pack_body(body: &[u64], params: &Params, out: &mut Vec<u8>) {
    let low = 64 - params.body_bits();
    debug_assert_eq!(params.body_bits(), 44, "the packing below is for 44 bits");
    for pair in body.chunks_exact(2) {
        debug_assert!(pair.iter().all(|c| c & ((1 << low) - 1) == 0));
        let v = (pair[0] >> low) as u128 | ((pair[1] >> low) as u128) << 44;
        out.extend_from_slice(&v.to_le_bytes()[..11]);
    }
}

fn unpack_body(bytes: &[u8], params: &Params) -> Vec<u64> {
    let low = 64 - params.body_bits();
    let mut body = Vec::with_capacity(bytes.len() / 11 * 2);
    for chunk in bytes.chunks_exact(11) {
        let mut b = [0u8; 16];
        b[..11].copy_from_slice(chunk);
        let v = u128::from_le_bytes(b);
        let mask = (1u128 << 44) - 1;
        body.push(((v & mask) as u64) << low);
        body.push((((v >> 44) & mask) as u64) << low);
    }
    body
}

/// Bytes of a packed body of `n` coefficients.
fn packed_body_len(n: usize) -> usize {
    n / 2 * 11
}

/// A block record in this build's format (2).
pub(super) fn encode_record(r: &BlockRecord, params: &Params) -> Vec<u8> {
    let n = r.body.len();
    let mut out = Vec::with_capacity(
        1 + packed_body_len(n)
            + 1
            + r.base_mask.as_ref().map_or(0, |m| 8 * m.len())
            + 4
            + SEED_BYTES * r.seeds.len(),
    );
    out.push(RECORD_FORMAT);
    pack_body(&r.body, params, &mut out);
    match &r.base_mask {
        Some(m) => {
            out.push(1);
            for c in m {
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(r.seeds.len() as u32).to_le_bytes());
    for s in &r.seeds {
        out.extend_from_slice(&s.seed.to_le_bytes());
        out.extend_from_slice(&(s.shift as u16).to_le_bytes());
    }
    out
}

/// Decodes a record of format 2 (this build's) or 1 (64-bit body, 32-bit shifts; its
/// body is rounded to the stored precision as it is read, the one-time rounding a
/// format-1 block gets; the record is rewritten as format 2 at its next change).
pub(super) fn decode_record(v: &[u8], params: &Params) -> Option<BlockRecord> {
    let n = params.polynomial_size;
    let mut at = 0usize;
    let mut take = |len: usize| -> Option<&[u8]> {
        let s = v.get(at..at + len)?;
        at += len;
        Some(s)
    };
    let format = take(1)?[0];
    let words = |b: &[u8]| -> Vec<u64> {
        b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    };
    let body = match format {
        RECORD_FORMAT => unpack_body(take(packed_body_len(n))?, params),
        RECORD_FORMAT_V1 => words(take(8 * n)?)
            .into_iter()
            .map(|c| round_body(c, params))
            .collect(),
        _ => return None,
    };
    let base_mask = match take(1)?[0] {
        0 => None,
        1 => Some(words(take(8 * n)?)),
        _ => return None,
    };
    let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    if count > BlockRecord::seed_limit(params) {
        return None;
    }
    let mut seeds = Vec::with_capacity(count);
    for _ in 0..count {
        let seed = u128::from_le_bytes(take(16)?.try_into().ok()?);
        let shift = if format == RECORD_FORMAT {
            u16::from_le_bytes(take(2)?.try_into().ok()?) as u32
        } else {
            u32::from_le_bytes(take(4)?.try_into().ok()?)
        };
        if shift as usize >= n {
            return None;
        }
        seeds.push(MaskSeed { seed, shift });
    }
    if at != v.len() {
        return None;
    }
    Some(BlockRecord {
        body,
        base_mask,
        seeds,
    })
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn block_records_round_trip_and_corrupt_ones_are_rejected() {
        let p = Params::v1();
        let n = p.polynomial_size;
        let low = 64 - p.body_bits();
        let mut rng = StdRng::seed_from_u64(3);
        // Bodies at the stored precision, including both ends of the 44 bits.
        let mut body: Vec<u64> = (0..n).map(|_| round_body(rng.random(), &p)).collect();
        body[0] = 0;
        body[1] = u64::MAX << low;
        body[2] = 1 << low;
        body[n - 1] = 1 << 63;
        for base_mask in [None, Some((0..n).map(|_| rng.random()).collect())] {
            let record = BlockRecord {
                body: body.clone(),
                base_mask,
                seeds: vec![
                    MaskSeed { seed: 1, shift: 0 },
                    MaskSeed {
                        seed: u128::MAX,
                        shift: 129 * 14,
                    },
                ],
            };
            let bytes = encode_record(&record, &p);
            assert_eq!(decode_record(&bytes, &p), Some(record.clone()));
            for cut in [0, 1, 100, bytes.len() - 1] {
                assert_eq!(decode_record(&bytes[..cut], &p), None);
            }
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(decode_record(&long, &p), None);
            let mut unknown = bytes.clone();
            unknown[0] = 9;
            assert_eq!(decode_record(&unknown, &p), None);
        }
        // A full block of 15 seeds is three parts of one page each.
        let full = BlockRecord {
            body,
            base_mask: None,
            seeds: (0..15)
                .map(|i| MaskSeed {
                    seed: i,
                    shift: i as u32 * 129,
                })
                .collect(),
        };
        assert_eq!(encode_record(&full, &p).len().div_ceil(PART_BYTES), 3);
    }

    /// The first block layout's encoding (64-bit body, u32 shifts), as earlier builds wrote it.
    fn encode_record_v1(r: &BlockRecord) -> Vec<u8> {
        let mut out = vec![RECORD_FORMAT_V1];
        for c in &r.body {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.push(0);
        out.extend_from_slice(&(r.seeds.len() as u32).to_le_bytes());
        for s in &r.seeds {
            out.extend_from_slice(&s.seed.to_le_bytes());
            out.extend_from_slice(&s.shift.to_le_bytes());
        }
        out
    }

    #[test]
    fn a_format_1_record_is_read_with_its_body_rounded_and_rewritten_as_format_2() {
        let p = Params::v1();
        let mut rng = StdRng::seed_from_u64(4);
        let old = BlockRecord {
            body: (0..p.polynomial_size).map(|_| rng.random()).collect(),
            base_mask: None,
            seeds: vec![MaskSeed {
                seed: rng.random(),
                shift: 129 * 3,
            }],
        };
        let read = decode_record(&encode_record_v1(&old), &p).unwrap();
        assert_eq!(read.seeds, old.seeds);
        for (r, o) in read.body.iter().zip(&old.body) {
            assert_eq!(*r, round_body(*o, &p));
            let err = r.wrapping_sub(*o) as i64;
            assert!(err.unsigned_abs() <= 1 << (63 - p.body_bits()), "{err}");
        }
        assert_eq!(decode_record(&encode_record(&read, &p), &p), Some(read));
    }
}
