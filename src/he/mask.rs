//! The uniform masks that tfhe's seeded ciphertexts stand for, expanded in bulk.
//!
//! A seeded GLWE or GGSW stores only its bodies and a 128-bit seed; its masks are the
//! output of tfhe-csprng's generator for that seed, 8 bytes (little-endian) per 64-bit
//! coefficient, forked generators taking consecutive byte ranges of the same stream.
//! That generator is AES-128 in counter mode (128-bit little-endian counter from 0, the
//! seed's little-endian bytes as key; tfhe-csprng's own tests check it against
//! RustCrypto's `ctr`), but it hands its bytes out one at a time, through a call and a
//! state update each: ~3.5 ns a byte, which made mask expansion most of the cost of
//! preparing a probe and of opening a store. Here the same keystream is produced by
//! RustCrypto's `aes` (AES-NI or ARMv8 when present) and `ctr`, eight blocks at a time.
//!
//! Nothing new is computed: the tests below compare every output with tfhe's own
//! decompression, so a change in tfhe's stream is a test failure, never a silently
//! different mask (which would decrypt to garbage, not to a wrong distance).
//!
//! Invariant: `fill(seed, offset, out)` equals the `out.len()` coefficients tfhe's
//! `RandomGenerator` for `Seed(seed)` yields after skipping `offset` bytes.

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};

type Keystream = ctr::Ctr128LE<Aes128>;

/// Fills `out` with the uniform 64-bit coefficients of `seed`'s stream, starting `offset`
/// bytes into it.
pub(crate) fn fill(seed: u128, offset: u64, out: &mut [u64]) {
    let mut stream = Keystream::new(&seed.to_le_bytes().into(), &[0u8; 16].into());
    stream.seek(offset);
    out.fill(0);
    stream.apply_keystream(bytemuck::cast_slice_mut(out));
    if cfg!(target_endian = "big") {
        for c in out.iter_mut() {
            *c = u64::from_le(*c);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use tfhe::core_crypto::commons::math::random::{CompressionSeed, RandomGenerator, Seed};
    use tfhe::core_crypto::prelude::{
        decompress_seeded_glwe_ciphertext, DefaultRandomGenerator, GlweCiphertext,
        SeededGlweCiphertext,
    };

    use super::*;
    use crate::he::Params;

    fn seeds() -> Vec<u128> {
        let mut rng = StdRng::seed_from_u64(0x6d61736b);
        let mut seeds = vec![0, 1, u128::MAX, 1 << 127, u64::MAX as u128];
        seeds.extend((0..200).map(|_| rng.random::<u128>()));
        seeds
    }

    #[test]
    fn glwe_masks_equal_tfhe_decompression() {
        let p = Params::v1();
        let n = p.polynomial_size;
        let body = vec![0u64; n];
        for seed in seeds() {
            let seeded = SeededGlweCiphertext::from_container(
                body.as_slice(),
                p.glwe_size(),
                CompressionSeed::from(Seed(seed)),
                p.modulus(),
            );
            let mut reference =
                GlweCiphertext::new(0u64, p.glwe_size(), p.poly_size(), p.modulus());
            decompress_seeded_glwe_ciphertext::<_, _, _, DefaultRandomGenerator>(
                &mut reference,
                &seeded,
            );
            let mut mask = vec![1u64; n * p.glwe_dimension];
            fill(seed, 0, &mut mask);
            assert!(
                mask == reference.get_mask().as_ref(),
                "mask of seed {seed:#x} differs from tfhe's"
            );
        }
    }

    #[test]
    fn any_offset_and_length_equals_tfhe_generator() {
        let mut rng = StdRng::seed_from_u64(7);
        for seed in seeds().into_iter().take(60) {
            // Offsets on and off the 16-byte AES block boundary, lengths from one
            // coefficient to several batches.
            let offset = 8 * rng.random_range(0..5000u64);
            let len = rng.random_range(1..3000usize);
            let mut gen = RandomGenerator::<DefaultRandomGenerator>::new(Seed(seed));
            let mut skipped = vec![0u8; offset as usize];
            gen.fill_slice_with_random_uniform(&mut skipped);
            let mut reference = vec![0u64; len];
            for c in reference.iter_mut() {
                *c = gen.random_uniform();
            }
            let mut got = vec![0u64; len];
            fill(seed, offset, &mut got);
            assert_eq!(got, reference, "seed {seed:#x}, offset {offset}, len {len}");
        }
    }
}
