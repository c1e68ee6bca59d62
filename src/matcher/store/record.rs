//! The byte layout of what the store keeps per block and per template: a block's
//! [`BlockRecord`] (format 4: `u8 format || u16 parameter version || N x 44-bit summed
//! body (two in 11 bytes) || u8 has_base || [N x u64 base mask] || u32 seed count ||
//! seeds x (u128 seed, u16 shift) || checksum`, little-endian; format 3 is the same
//! without the version, and its blocks are of parameters v1, the only ones builds before
//! format 4 made; formats 2 (format 3 without checksum) and 1 (a 64-bit body, u32 shifts)
//! are read by the migration only), written as parts of one redb page each, and a
//! template's slot row (`u64 block || u8 slot || encrypted label || checksum`; schema 2's
//! rows had no checksum).
//!
//! Invariant: a block record names the parameters it was made with, so a gallery's
//! version is read from its blocks and never assumed from the build.
//!
//! A checksum is the first 8 bytes of the SHA-256 of a domain tag, the record's key
//! (tenant and block number, or tenant and id) and its bytes: a flipped byte, a record
//! cut short, or a record moved to another key (two blocks swapped, a row moved to
//! another id or tenant) does not verify. It guards against damage, not against an
//! attacker who can write the file (who can recompute it): SECURITY.md.

use sha2::{Digest, Sha256};

use crate::he::{round_body, BlockRecord, Location, MaskSeed, Params};

/// Block records written by this build: the parameter version, 44-bit bodies, 16-bit
/// shifts, a checksum.
const RECORD_FORMAT: u8 = 4;
/// Block records without a parameter version (parameters v1), still read.
const RECORD_FORMAT_V3: u8 = 3;
/// Block records of schema 2 (no checksum; read by the migration only).
const RECORD_FORMAT_V2: u8 = 2;
/// Block records of the first block layout (read, rounded and rewritten by the migration).
const RECORD_FORMAT_V1: u8 = 1;
/// A seed on disk: the u128 seed and its u16 shift.
const SEED_BYTES: usize = 18;
/// Bytes of a record's or a row's checksum.
const CHECKSUM_BYTES: usize = 8;

/// The checksum of `bytes` stored under (`tenant`, `key`) in the table named by `domain`.
fn checksum(domain: &[u8], tenant: &str, key: u64, bytes: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let mut h = Sha256::new();
    h.update(domain);
    h.update((tenant.len() as u64).to_le_bytes());
    h.update(tenant.as_bytes());
    h.update(key.to_le_bytes());
    h.update(bytes);
    h.finalize()[..CHECKSUM_BYTES].try_into().expect("8 bytes")
}

const BLOCK_DOMAIN: &[u8] = b"blindface block record v3\0";
const SLOT_DOMAIN: &[u8] = b"blindface slot row v3\0";

/// `bytes` without their checksum, if it is that of (`domain`, `tenant`, `key`).
fn verified<'a>(domain: &[u8], tenant: &str, key: u64, v: &'a [u8]) -> Option<&'a [u8]> {
    let (bytes, sum) = v.split_at(v.len().checked_sub(CHECKSUM_BYTES)?);
    (checksum(domain, tenant, key, bytes) == sum).then_some(bytes)
}

/// A slot row of template `id` of `tenant`: `u64 block || u8 slot || encrypted label ||
/// checksum`.
pub(super) fn encode_slot(
    tenant: &str,
    id: u64,
    block: usize,
    slot: usize,
    label: &[u8],
) -> Vec<u8> {
    let mut row = Vec::with_capacity(9 + label.len() + CHECKSUM_BYTES);
    row.extend_from_slice(&(block as u64).to_le_bytes());
    row.push(slot as u8);
    row.extend_from_slice(label);
    let sum = checksum(SLOT_DOMAIN, tenant, id, &row);
    row.extend_from_slice(&sum);
    row
}

/// The location and label of template `id`'s slot row (`None`: its checksum does not
/// match, or it is too short).
pub(super) fn split_slot<'a>(v: &'a [u8], tenant: &str, id: u64) -> Option<(Location, &'a [u8])> {
    split_slot_v2(verified(SLOT_DOMAIN, tenant, id, v)?)
}

/// The location and label of a schema-2 slot row (no checksum; `None`: too short).
pub(super) fn split_slot_v2(v: &[u8]) -> Option<(Location, &[u8])> {
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

/// Block `block` of `tenant`, made with `params`, as a record in this build's format (4).
pub(super) fn encode_record(
    r: &BlockRecord,
    tenant: &str,
    block: usize,
    params: &Params,
) -> Vec<u8> {
    let n = r.body.len();
    let mut out = Vec::with_capacity(
        3 + packed_body_len(n)
            + 1
            + r.base_mask.as_ref().map_or(0, |m| 8 * m.len())
            + 4
            + SEED_BYTES * r.seeds.len()
            + CHECKSUM_BYTES,
    );
    out.push(RECORD_FORMAT);
    out.extend_from_slice(&params.version.to_le_bytes());
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
    let sum = checksum(BLOCK_DOMAIN, tenant, block as u64, &out);
    out.extend_from_slice(&sum);
    out
}

/// Block `block` of `tenant` as builds before format 4 wrote it (format 3: no parameter
/// version, parameters v1), for tests of reading old stores.
#[cfg(test)]
pub(super) fn encode_record_v3(r: &BlockRecord, tenant: &str, block: usize) -> Vec<u8> {
    let v4 = encode_record(r, tenant, block, &Params::v1());
    let (_, body) = record_header(&v4).expect("a format-4 record");
    let mut out = vec![RECORD_FORMAT_V3];
    out.extend_from_slice(&body[..body.len() - CHECKSUM_BYTES]);
    let sum = checksum(BLOCK_DOMAIN, tenant, block as u64, &out);
    out.extend_from_slice(&sum);
    out
}

/// What a record's first bytes say about it: the version of the parameters its block was
/// made with, as written (format 4) or implied (format 3: v1). `None`: not a record of
/// format 3 or 4, or too short to tell. The checksum is not checked: a record read in
/// full goes through [`decode_record`], which does.
pub(super) fn record_version(v: &[u8]) -> Option<u16> {
    record_header(v).map(|(version, _)| version)
}

/// A record's parameter version and what follows its header (the one place that knows
/// the headers of formats 4 and 3).
fn record_header(v: &[u8]) -> Option<(u16, &[u8])> {
    match *v.first()? {
        RECORD_FORMAT => Some((u16::from_le_bytes(v.get(1..3)?.try_into().ok()?), &v[3..])),
        RECORD_FORMAT_V3 => Some((1, &v[1..])),
        _ => None,
    }
}

/// Decodes block `block` of `tenant`, a record of format 4 or 3, with the parameters it
/// names (`None`: its checksum does not match, it is not a valid record, or its
/// parameter version is not one this build knows).
pub(super) fn decode_record(v: &[u8], tenant: &str, block: usize) -> Option<(Params, BlockRecord)> {
    let bytes = verified(BLOCK_DOMAIN, tenant, block as u64, v)?;
    let (version, body) = record_header(bytes)?;
    let params = Params::of_version(version)?;
    Some((params, decode_body(RECORD_FORMAT_V3, body, &params)?))
}

/// Decodes a record of schema 2, format 2 or 1 (64-bit body, 32-bit shifts; its body is
/// rounded to the stored precision as it is read, the one-time rounding a format-1 block
/// gets), for the migration to rewrite it in this build's format. Such blocks are of
/// parameters v1, the only ones their builds made.
pub(super) fn decode_legacy(v: &[u8]) -> Option<BlockRecord> {
    let format = *v.first()?;
    matches!(format, RECORD_FORMAT_V1 | RECORD_FORMAT_V2)
        .then(|| decode_body(format, &v[1..], &Params::v1()))
        .flatten()
}

/// Decodes what follows a record's header, without its checksum, laid out as `format`
/// lays it out (formats 4, 3 and 2 share the layout of everything after their header).
fn decode_body(format: u8, v: &[u8], params: &Params) -> Option<BlockRecord> {
    let n = params.polynomial_size;
    let mut at = 0usize;
    let mut take = |len: usize| -> Option<&[u8]> {
        let s = v.get(at..at + len)?;
        at += len;
        Some(s)
    };
    let words = |b: &[u8]| -> Vec<u64> {
        b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    };
    let body = match format {
        RECORD_FORMAT_V3 | RECORD_FORMAT_V2 => unpack_body(take(packed_body_len(n))?, params),
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
        let shift = if format != RECORD_FORMAT_V1 {
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
            let bytes = encode_record(&record, "t", 5, &p);
            assert_eq!(decode_record(&bytes, "t", 5), Some((p, record.clone())));
            for cut in [0, 1, 100, bytes.len() - 1] {
                assert_eq!(decode_record(&bytes[..cut], "t", 5), None);
            }
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(decode_record(&long, "t", 5), None);
            let mut unknown = bytes.clone();
            unknown[0] = 9;
            assert_eq!(decode_record(&unknown, "t", 5), None);
            // Its checksum binds it to its key: another block or tenant does not verify.
            assert_eq!(decode_record(&bytes, "t", 6), None);
            assert_eq!(decode_record(&bytes, "u", 5), None);
            for at in [1, 500, bytes.len() / 2, bytes.len() - 9, bytes.len() - 1] {
                let mut flipped = bytes.clone();
                flipped[at] ^= 0x10;
                assert_eq!(decode_record(&flipped, "t", 5), None, "byte {at}");
            }
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
        assert_eq!(
            encode_record(&full, "t", 0, &p).len().div_ceil(PART_BYTES),
            3
        );
    }

    #[test]
    fn a_record_names_its_parameters_and_a_format_3_record_is_v1() {
        let mut rng = StdRng::seed_from_u64(5);
        for p in Params::known() {
            let record = BlockRecord {
                body: (0..p.polynomial_size)
                    .map(|_| round_body(rng.random(), &p))
                    .collect(),
                base_mask: None,
                seeds: (0..p.slots_per_block())
                    .map(|i| MaskSeed {
                        seed: rng.random(),
                        shift: (i * p.slot_width()) as u32,
                    })
                    .collect(),
            };
            let bytes = encode_record(&record, "t", 2, &p);
            assert_eq!(record_version(&bytes), Some(p.version));
            assert_eq!(decode_record(&bytes, "t", 2), Some((p, record.clone())));
            if p == Params::v1() {
                // As builds before format 4 wrote it: no version, read as v1.
                let old = encode_record_v3(&record, "t", 2);
                assert_eq!(old[0], RECORD_FORMAT_V3);
                assert_eq!(record_version(&old), Some(1));
                assert_eq!(decode_record(&old, "t", 2), Some((p, record.clone())));
                assert_eq!(decode_record(&old, "t", 3), None, "bound to its key");
            }
            // The version is covered by the checksum: another one does not verify.
            let mut relabelled = bytes.clone();
            relabelled[1] ^= 3;
            assert_eq!(decode_record(&relabelled, "t", 2), None);
        }
        // A version this build does not know is not read with any parameters.
        let p = Params::v2();
        let record = BlockRecord {
            body: vec![0; p.polynomial_size],
            base_mask: None,
            seeds: vec![],
        };
        let mut unknown = encode_record(&record, "t", 0, &p);
        unknown[1..3].copy_from_slice(&99u16.to_le_bytes());
        let n = unknown.len() - CHECKSUM_BYTES;
        let sum = checksum(BLOCK_DOMAIN, "t", 0, &unknown[..n]);
        unknown[n..].copy_from_slice(&sum);
        assert_eq!(record_version(&unknown), Some(99));
        assert_eq!(decode_record(&unknown, "t", 0), None);
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
    fn a_format_1_record_is_read_with_its_body_rounded_and_rewritten_as_format_3() {
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
        let read = decode_legacy(&encode_record_v1(&old)).unwrap();
        assert_eq!(read.seeds, old.seeds);
        for (r, o) in read.body.iter().zip(&old.body) {
            assert_eq!(*r, round_body(*o, &p));
            let err = r.wrapping_sub(*o) as i64;
            assert!(err.unsigned_abs() <= 1 << (63 - p.body_bits()), "{err}");
        }
        assert_eq!(
            decode_record(&encode_record(&read, "t", 0, &p), "t", 0),
            Some((p, read))
        );
    }

    #[test]
    fn slot_rows_round_trip_and_a_flipped_or_moved_row_is_rejected() {
        let row = encode_slot("t", 7, 3, 14, b"label");
        let (loc, label) = split_slot(&row, "t", 7).unwrap();
        assert_eq!((loc.block, loc.slot, label), (3, 14, &b"label"[..]));
        assert_eq!(split_slot(&row, "t", 8), None);
        assert_eq!(split_slot(&row, "u", 7), None);
        for at in 0..row.len() {
            let mut flipped = row.clone();
            flipped[at] ^= 1;
            assert_eq!(split_slot(&flipped, "t", 7), None, "byte {at}");
        }
        assert_eq!(split_slot(&row[..4], "t", 7), None);
    }
}
