//! Match results: what the matcher sends back, in compact form, and the stream codec that
//! lets either side handle a result one block at a time.
//!
//! A block's result GLWE is switched from the 64-bit torus to 2^32 ([`RESULT_BITS`]): each
//! kept coefficient is `round(c / 2^32)`, its top 32 bits. Only the mask and the readout
//! coefficients travel. The rounding adds at most 2^31 per coefficient, so decryption's
//! error grows by at most (h + 1) * 2^31 for a key of Hamming weight h; measured, it stays
//! far below the integrity bound (`decrypt`, SECURITY.md, BENCHMARKS.md).
//!
//! Stream layout (kind `MatchResult`): the usual header (magic, wire version, kind,
//! parameters), `u64` block count, then each block as
//! `u8 entries || entries x (u8 slot, 7-byte id (0: empty slot), u32 readout) || N x u32
//! mask`, all little-endian, then SHA-256 of every preceding byte. [`ResultWriter`] and
//! [`ResultReader`] produce and consume it incrementally; [`MatchResult`] is the whole
//! thing in memory, for small results.

use std::io::Read;

use sha2::{Digest, Sha256};

use super::id::TemplateId;
use super::wire::{self, Kind};
use super::{HeError, Params};

/// Bits kept per result coefficient after modulus switching.
pub const RESULT_BITS: u32 = 32;
/// Bytes of one encoded entry: slot, 7-byte id, readout.
const ENTRY_BYTES: usize = 1 + 7 + 4;
const ID_BYTES: usize = 7;
const CHECKSUM_LEN: usize = 32;

/// Switches a 64-bit torus coefficient to [`RESULT_BITS`] bits (rounding to nearest).
pub(crate) fn switch_modulus(c: u64) -> u32 {
    (c.wrapping_add(1 << (63 - RESULT_BITS)) >> (64 - RESULT_BITS)) as u32
}

/// One slot's readout in a block result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotReadout {
    /// Slot index in the block.
    pub slot: u8,
    /// The template in that slot (`None`: empty, must decrypt to 0).
    pub id: Option<TemplateId>,
    /// The result body's coefficient at the slot's readout position, switched.
    pub readout: u32,
}

/// The matcher's answer for one block: the switched result mask and the readouts asked for
/// (every slot for identify, the asked slot for verify).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockResult {
    /// Mask polynomial of the result GLWE (N coefficients, switched).
    pub mask: Vec<u32>,
    pub entries: Vec<SlotReadout>,
}

impl BlockResult {
    /// Encoded size of a block with `entries` readouts.
    pub fn encoded_len(params: &Params, entries: usize) -> usize {
        1 + entries * ENTRY_BYTES + params.polynomial_size * 4
    }

    /// The block's bytes in a result stream.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(1 + self.entries.len() * ENTRY_BYTES + self.mask.len() * 4);
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.entries.len() as u8);
        for e in &self.entries {
            out.push(e.slot);
            let id = e.id.map_or(0, |id| id.0);
            out.extend_from_slice(&id.to_le_bytes()[..ID_BYTES]);
            out.extend_from_slice(&e.readout.to_le_bytes());
        }
        for c in &self.mask {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
}

/// A whole result in memory (verify, tests, small galleries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchResult {
    pub(crate) params: Params,
    pub blocks: Vec<BlockResult>,
}

impl MatchResult {
    pub fn new(params: &Params, blocks: Vec<BlockResult>) -> Self {
        MatchResult {
            params: *params,
            blocks,
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Number of templates the result covers.
    pub fn template_count(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| b.entries.iter().filter(|e| e.id.is_some()).count())
            .sum()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = ResultWriter::new(&self.params, self.blocks.len());
        let mut out = w.header();
        for b in &self.blocks {
            w.block(b, &mut out);
        }
        w.finish(&mut out);
        out
    }

    /// `to_bytes().len()`, without serializing.
    pub fn wire_len(&self) -> usize {
        let p = &self.params;
        header_len(p)
            + self
                .blocks
                .iter()
                .map(|b| BlockResult::encoded_len(p, b.entries.len()))
                .sum::<usize>()
            + CHECKSUM_LEN
    }

    /// The largest serialized result of `max_blocks` blocks.
    pub fn max_wire_len(params: &Params, max_blocks: usize) -> usize {
        header_len(params)
            + max_blocks * BlockResult::encoded_len(params, params.slots_per_block())
            + CHECKSUM_LEN
    }

    /// Parses a whole result of at most `max_blocks` blocks.
    pub fn from_bytes(bytes: &[u8], params: &Params, max_blocks: usize) -> Result<Self, HeError> {
        let max = Self::max_wire_len(params, max_blocks);
        if bytes.len() > max {
            return Err(HeError::TooLarge {
                what: Kind::MatchResult.name(),
                got: bytes.len(),
                max,
            });
        }
        let mut reader = ResultReader::new(bytes, params, max_blocks)?;
        let mut blocks = Vec::with_capacity(reader.block_count());
        while let Some(b) = reader.next_block()? {
            blocks.push(b);
        }
        Ok(MatchResult {
            params: *params,
            blocks,
        })
    }
}

fn header_len(params: &Params) -> usize {
    wire::header(Kind::MatchResult, params).len() + 8
}

/// Writes a result stream block by block; the caller sends each piece as it comes.
pub struct ResultWriter {
    params: Params,
    remaining: usize,
    hasher: Sha256,
}

impl ResultWriter {
    pub fn new(params: &Params, block_count: usize) -> Self {
        ResultWriter {
            params: *params,
            remaining: block_count,
            hasher: Sha256::new(),
        }
    }

    /// The header and block count: the first bytes of the stream.
    pub fn header(&mut self) -> Vec<u8> {
        let mut out = wire::header(Kind::MatchResult, &self.params);
        out.extend_from_slice(&(self.remaining as u64).to_le_bytes());
        self.hasher.update(&out);
        out
    }

    /// Appends one block to `out`.
    pub fn block(&mut self, block: &BlockResult, out: &mut Vec<u8>) {
        assert!(self.remaining > 0, "more blocks than announced");
        self.remaining -= 1;
        let start = out.len();
        block.encode_into(out);
        self.hasher.update(&out[start..]);
    }

    /// Appends one block already encoded (a cluster node's share of an identify, as
    /// [`BlockResult::encode`] made it), unparsed: the reader at the other end checks it.
    pub fn encoded_block(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        assert!(self.remaining > 0, "more blocks than announced");
        self.remaining -= 1;
        out.extend_from_slice(bytes);
        self.hasher.update(bytes);
    }

    /// Appends the checksum: the last bytes of the stream.
    pub fn finish(self, out: &mut Vec<u8>) {
        assert_eq!(self.remaining, 0, "fewer blocks than announced");
        out.extend_from_slice(&self.hasher.finalize());
    }
}

/// Reads a result stream block by block from any reader (a socket, a slice), checking the
/// header first, every block's dimensions as it arrives, and the checksum and the absence
/// of trailing bytes at the end. A block handed out before the checksum is checked is
/// still verified by decryption (see `decrypt`); a stream that ends early or fails its
/// checksum is an error from [`ResultReader::next_block`].
pub struct ResultReader<R> {
    reader: R,
    params: Params,
    remaining: usize,
    total: usize,
    hasher: Sha256,
}

fn malformed(detail: impl Into<String>) -> HeError {
    HeError::Malformed {
        what: Kind::MatchResult.name(),
        detail: detail.into(),
    }
}

impl<R: Read> ResultReader<R> {
    /// Reads and checks the header; at most `max_blocks` blocks are accepted.
    pub fn new(mut reader: R, params: &Params, max_blocks: usize) -> Result<Self, HeError> {
        let mut header = vec![0u8; header_len(params)];
        read_exact(&mut reader, &mut header)?;
        let expected = wire::header(Kind::MatchResult, params);
        wire::check_header(Kind::MatchResult, params, &header[..expected.len()])?;
        let count = u64::from_le_bytes(header[expected.len()..].try_into().expect("8 bytes"));
        if count > max_blocks as u64 {
            return Err(HeError::TooLarge {
                what: Kind::MatchResult.name(),
                got: MatchResult::max_wire_len(params, count.min(1 << 40) as usize),
                max: MatchResult::max_wire_len(params, max_blocks),
            });
        }
        let mut hasher = Sha256::new();
        hasher.update(&header);
        Ok(ResultReader {
            reader,
            params: *params,
            remaining: count as usize,
            total: count as usize,
            hasher,
        })
    }

    /// Blocks announced by the header.
    pub fn block_count(&self) -> usize {
        self.total
    }

    /// The next block, or `None` after the last one once the checksum has matched.
    pub fn next_block(&mut self) -> Result<Option<BlockResult>, HeError> {
        if self.remaining == 0 {
            let mut sum = [0u8; CHECKSUM_LEN];
            read_exact(&mut self.reader, &mut sum)?;
            if self.hasher.clone().finalize().as_slice() != sum {
                return Err(HeError::Checksum {
                    what: Kind::MatchResult.name(),
                });
            }
            let mut extra = [0u8; 1];
            match self.reader.read(&mut extra) {
                Ok(0) => {}
                Ok(_) => return Err(malformed("trailing bytes after the checksum")),
                Err(e) => return Err(malformed(format!("read failed: {e}"))),
            }
            self.total = 0;
            return Ok(None);
        }
        let p = &self.params;
        let m = p.slots_per_block();
        let mut count = [0u8; 1];
        read_exact(&mut self.reader, &mut count)?;
        let entries_len = count[0] as usize;
        if entries_len == 0 || entries_len > m {
            return Err(malformed(format!(
                "block with {entries_len} readouts (1 to {m} allowed)"
            )));
        }
        let mut buf = vec![0u8; entries_len * ENTRY_BYTES + p.polynomial_size * 4];
        read_exact(&mut self.reader, &mut buf)?;
        self.hasher.update(count);
        self.hasher.update(&buf);
        let (entry_bytes, mask_bytes) = buf.split_at(entries_len * ENTRY_BYTES);
        let mut entries = Vec::with_capacity(entries_len);
        for e in entry_bytes.chunks_exact(ENTRY_BYTES) {
            let slot = e[0];
            if slot as usize >= m || entries.iter().any(|x: &SlotReadout| x.slot == slot) {
                return Err(malformed(format!("bad or repeated slot {slot}")));
            }
            let mut id = [0u8; 8];
            id[..ID_BYTES].copy_from_slice(&e[1..1 + ID_BYTES]);
            let id = u64::from_le_bytes(id);
            let readout = u32::from_le_bytes(e[1 + ID_BYTES..].try_into().expect("4 bytes"));
            entries.push(SlotReadout {
                slot,
                id: (id != 0).then_some(TemplateId(id)),
                readout,
            });
        }
        let mask = mask_bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        self.remaining -= 1;
        Ok(Some(BlockResult { mask, entries }))
    }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8]) -> Result<(), HeError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            malformed("truncated")
        } else {
            malformed(format!("read failed: {e}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_rounds_to_the_nearest_multiple() {
        assert_eq!(switch_modulus(0), 0);
        assert_eq!(switch_modulus((1 << 31) - 1), 0);
        assert_eq!(switch_modulus(1 << 31), 1);
        assert_eq!(switch_modulus(5 << 32), 5);
        assert_eq!(switch_modulus(u64::MAX), 0, "wraps around the torus");
    }

    #[test]
    fn one_full_block_is_at_most_560_bytes_per_template() {
        let p = Params::v1();
        let m = p.slots_per_block();
        assert!(BlockResult::encoded_len(&p, m) <= 560 * m);
    }
}
