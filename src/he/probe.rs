//! Matcher-side probe preparation and the external product: a seeded GGSW probe expanded
//! straight into the Fourier domain ([`PreparedProbe::new`], bit-exact with tfhe's own
//! decompression and conversion), then one external product per block, switched to a
//! compact [`BlockResult`]. No key material.

use rayon::prelude::*;
use tfhe::core_crypto::commons::math::random::{CompressionSeed, Seed, Uniform};
use tfhe::core_crypto::commons::traits::contiguous_entity_container::ContiguousEntityContainer;
use tfhe::core_crypto::fft_impl::fft64::crypto::ggsw::FourierGgswCiphertext;
use tfhe::core_crypto::fft_impl::fft64::math::polynomial::FourierPolynomial;
use tfhe::core_crypto::fft_impl::fft64::{c64, ABox};
use tfhe::core_crypto::prelude::{
    add_external_product_assign_mem_optimized,
    add_external_product_assign_mem_optimized_requirement, ComputationBuffers, Fft, GlweCiphertext,
    Polynomial, SeededGgswCiphertext,
};

use super::entities::EncryptedProbe;
use super::id::TemplateId;
use super::mask;
use super::result::{switch_modulus, BlockResult, SlotReadout};
use super::{HeError, Params};

type Glwe = GlweCiphertext<Vec<u64>>;

/// A probe converted to the Fourier domain, ready for external products.
pub struct PreparedProbe {
    pub(super) params: Params,
    fourier: FourierGgswCiphertext<ABox<[c64]>>,
    fft: Fft,
    /// Scratch bytes one external product needs.
    scratch_bytes: usize,
}

/// The probe's seeded GGSW, over its bodies (the masks come from its seed).
fn seeded_ggsw<'a>(probe: &'a EncryptedProbe, p: &Params) -> SeededGgswCiphertext<&'a [u64]> {
    SeededGgswCiphertext::from_container(
        probe.bodies.as_slice(),
        p.glwe_size(),
        p.poly_size(),
        p.base_log(),
        CompressionSeed::from(Seed(probe.seed)),
        p.modulus(),
    )
}

impl PreparedProbe {
    /// Expands the seeded GGSW and converts it to the Fourier domain (once per probe).
    pub fn new(probe: &EncryptedProbe, params: &Params) -> Result<Self, HeError> {
        if probe.params != *params {
            return Err(HeError::WrongParams {
                what: "encrypted probe",
            });
        }
        let p = params;
        let seeded = seeded_ggsw(probe, p);
        let fft = Fft::new(p.poly_size());
        let mut fourier =
            FourierGgswCiphertext::new(p.glwe_size(), p.poly_size(), p.base_log(), p.level_count());

        // Where each GGSW row's mask starts in the seed's stream: tfhe's
        // `decompress_seeded_ggsw_ciphertext` forks one generator per level matrix, then one
        // per row, each taking the next `mask_byte_count_per_child` bytes; the fork configs
        // are tfhe's own, only the bytes come from `mask::fill` (bit-exact, tested).
        let level_bytes = seeded
            .decompression_fork_config(Uniform)
            .mask_byte_count_per_child()
            .0 as u64;
        let row_bytes = seeded
            .iter()
            .next()
            .expect("a GGSW has at least one level")
            .decompression_fork_config(Uniform)
            .mask_byte_count_per_child()
            .0 as u64;
        let glwe_size = p.glwe_size().0;
        let row_offset = |row: usize| {
            (row / glwe_size) as u64 * level_bytes + (row % glwe_size) as u64 * row_bytes
        };

        // Each row (k mask polynomials from the stream, then its body, which is what the
        // seeded GGSW stores, N coefficients per row) goes straight to the Fourier domain,
        // in parallel: no standard GGSW is materialised.
        let n = p.polynomial_size;
        let k = p.glwe_dimension;
        let fourier_row = (k + 1) * n / 2;
        let fft_view = fft.as_view();
        let stack_bytes = fft_view.forward_scratch().unaligned_bytes_required();
        fourier
            .as_mut_view()
            .data()
            .par_chunks_exact_mut(fourier_row)
            .zip(probe.bodies.par_chunks_exact(n))
            .enumerate()
            .for_each_init(
                || (vec![0u64; k * n], ComputationBuffers::new()),
                |(mask, buffers), (row, (out, body))| {
                    mask::fill(probe.seed, row_offset(row), mask);
                    buffers.resize(stack_bytes);
                    let polys = mask.chunks_exact(n).chain([body]);
                    for (out, poly) in out.chunks_exact_mut(n / 2).zip(polys) {
                        fft_view.forward_as_torus(
                            FourierPolynomial { data: out },
                            Polynomial::from_container(poly),
                            buffers.stack(),
                        );
                    }
                },
            );

        Ok(Self::from_fourier(p, fourier, fft))
    }

    /// A probe already in the Fourier domain, with the scratch its products need.
    fn from_fourier(p: &Params, fourier: FourierGgswCiphertext<ABox<[c64]>>, fft: Fft) -> Self {
        let scratch_bytes = add_external_product_assign_mem_optimized_requirement::<u64>(
            p.glwe_size(),
            p.poly_size(),
            fft.as_view(),
        )
        .unaligned_bytes_required();
        PreparedProbe {
            params: *p,
            fourier,
            fft,
            scratch_bytes,
        }
    }

    /// External product with one block; returns the result GLWE.
    fn product(&self, block: &Glwe, buffers: &mut ComputationBuffers) -> Glwe {
        let p = &self.params;
        let fft = self.fft.as_view();
        buffers.resize(self.scratch_bytes);
        let mut out = GlweCiphertext::new(0u64, p.glwe_size(), p.poly_size(), p.modulus());
        add_external_product_assign_mem_optimized(
            &mut out,
            &self.fourier,
            block,
            fft,
            buffers.stack(),
        );
        out
    }

    /// Keeps only what the app reads, switched to 32 bits: the mask and the readouts of
    /// `entries` (slot, template).
    pub(super) fn block_result(
        &self,
        block: &Glwe,
        entries: impl Iterator<Item = (usize, Option<TemplateId>)>,
        buffers: &mut ComputationBuffers,
    ) -> BlockResult {
        let p = &self.params;
        let out = self.product(block, buffers);
        let body = out.get_body();
        let entries = entries
            .map(|(slot, id)| SlotReadout {
                slot: slot as u8,
                id,
                readout: switch_modulus(body.as_ref()[p.slot_readout(slot)]),
            })
            .collect();
        BlockResult {
            mask: out
                .get_mask()
                .as_ref()
                .iter()
                .map(|&c| switch_modulus(c))
                .collect(),
            entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use tfhe::core_crypto::prelude::convert_standard_ggsw_ciphertext_to_fourier;

    use super::*;
    use crate::he::{decrypt, encrypt_probe, encrypt_template, Gallery, SecretKey, Template};

    /// The straightforward preparation the optimised one replaced: tfhe's own decompression
    /// of the whole standard GGSW, then tfhe's own conversion to the Fourier domain.
    fn prepare_reference(probe: &EncryptedProbe, p: &Params) -> PreparedProbe {
        let standard = seeded_ggsw(probe, p).decompress_into_ggsw_ciphertext();
        let mut fourier =
            FourierGgswCiphertext::new(p.glwe_size(), p.poly_size(), p.base_log(), p.level_count());
        convert_standard_ggsw_ciphertext_to_fourier(&standard, &mut fourier);
        PreparedProbe::from_fourier(p, fourier, Fft::new(p.poly_size()))
    }

    fn fourier_bits(probe: &PreparedProbe) -> Vec<(u64, u64)> {
        probe
            .fourier
            .as_view()
            .data()
            .iter()
            .map(|c| (c.re.to_bits(), c.im.to_bits()))
            .collect()
    }

    #[test]
    fn optimised_preparation_is_bit_exact_with_tfhe_decompression_and_conversion() {
        let p = Params::v1();
        let key = SecretKey::generate(&p);
        let mut rng = StdRng::seed_from_u64(13);
        let q = p.q;
        let d = p.dim;
        let mk = |f: &dyn Fn(usize) -> i32| Template::new((0..d).map(f).collect(), &p).unwrap();
        let mut templates = vec![
            mk(&|_| q),
            mk(&|_| -q),
            mk(&|i| if i % 2 == 0 { q } else { -q }),
            mk(&|i| if i % 2 == 0 { -q } else { q }),
            mk(&|_| 0),
        ];
        for _ in 0..35 {
            templates.push(
                Template::new((0..d).map(|_| rng.random_range(-q..=q)).collect(), &p).unwrap(),
            );
        }
        let mut gallery = Gallery::new(&p);
        let mut plain = BTreeMap::new();
        for (i, t) in templates.iter().enumerate() {
            gallery
                .insert(TemplateId(i as u64 + 1), &encrypt_template(&key, t))
                .unwrap();
            plain.insert(TemplateId(i as u64 + 1), t.clone());
        }
        // Probes: the extremes (values +-31) and random ones; fresh seeds for each.
        for probe_t in templates.iter().take(5).chain(templates.iter().skip(30)) {
            let (probe, ctx) = encrypt_probe(&key, probe_t);
            let fast = PreparedProbe::new(&probe, &p).unwrap();
            let reference = prepare_reference(&probe, &p);
            assert!(
                fourier_bits(&fast) == fourier_bits(&reference),
                "Fourier GGSW differs"
            );
            let got = gallery.identify(&fast).unwrap();
            assert_eq!(got, gallery.identify(&reference).unwrap());
            let one = gallery.verify(&fast, TemplateId(1)).unwrap();
            assert_eq!(one, gallery.verify(&reference, TemplateId(1)).unwrap());
            let distances = decrypt(&key, &ctx, &got).unwrap();
            assert_eq!(distances.len(), templates.len());
            for dist in distances {
                assert_eq!(dist.distance_sq, probe_t.distance_sq(&plain[&dist.id]));
            }
        }
    }
}
