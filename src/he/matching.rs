//! Matcher-side computation, with no key material: the packed gallery (templates shifted
//! into slots of GLWE blocks by monomial multiplication and addition, removed by
//! subtraction, re-packed when holes add up to a block) and the external product of a probe
//! GGSW with each block.

use std::collections::BTreeMap;

use rayon::prelude::*;
use tfhe::core_crypto::algorithms::polynomial_algorithms::polynomial_wrapping_monic_monomial_mul_assign;
use tfhe::core_crypto::commons::math::random::{CompressionSeed, RandomGenerator, Seed, Uniform};
use tfhe::core_crypto::commons::traits::contiguous_entity_container::{
    ContiguousEntityContainer, ContiguousEntityContainerMut,
};
use tfhe::core_crypto::fft_impl::fft64::crypto::ggsw::FourierGgswCiphertext;
use tfhe::core_crypto::fft_impl::fft64::math::polynomial::FourierPolynomial;
use tfhe::core_crypto::fft_impl::fft64::{c64, ABox};
use tfhe::core_crypto::prelude::{
    add_external_product_assign_mem_optimized,
    add_external_product_assign_mem_optimized_requirement, decompress_seeded_glwe_ciphertext,
    glwe_ciphertext_add_assign, glwe_ciphertext_sub_assign, ComputationBuffers,
    DefaultRandomGenerator, Fft, GlweCiphertext, MonomialDegree, Polynomial, SeededGgswCiphertext,
    SeededGlweCiphertext,
};

use super::entities::{BlockResult, EncryptedProbe, EncryptedTemplate, MatchResult, TemplateId};
use super::{HeError, Params};

type Glwe = GlweCiphertext<Vec<u64>>;

/// A probe converted to the Fourier domain, ready for external products.
pub struct PreparedProbe {
    params: Params,
    fourier: FourierGgswCiphertext<ABox<[c64]>>,
    fft: Fft,
    /// Scratch bytes one external product needs.
    scratch_bytes: usize,
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
        let seeded = SeededGgswCiphertext::from_container(
            probe.bodies.as_slice(),
            p.glwe_size(),
            p.poly_size(),
            p.base_log(),
            CompressionSeed::from(Seed(probe.seed)),
            p.modulus(),
        );
        let fft = Fft::new(p.poly_size());
        let mut fourier =
            FourierGgswCiphertext::new(p.glwe_size(), p.poly_size(), p.base_log(), p.level_count());

        // The mask generators of the GGSW's rows, forked exactly as tfhe's
        // `decompress_seeded_ggsw_ciphertext` forks them (one child per level matrix, then one
        // per row), so each row's mask is the same bytes of tfhe's own AES-CTR stream.
        let mut root = RandomGenerator::<DefaultRandomGenerator>::new(seeded.compression_seed());
        let levels = seeded.decompression_fork_config(Uniform);
        let mut rows = Vec::with_capacity(p.glwe_size().0 * p.decomp_level_count);
        for (matrix, mut level_gen) in seeded.iter().zip(
            root.try_fork(
                levels.children_count(),
                levels.mask_byte_count_per_child().0,
            )
            .expect("fresh generator forks into the GGSW levels"),
        ) {
            let config = matrix.decompression_fork_config(Uniform);
            let children = level_gen
                .try_fork(
                    config.children_count(),
                    config.mask_byte_count_per_child().0,
                )
                .expect("level generator forks into its rows");
            rows.extend(children);
        }

        // Each row (k mask polynomials from its generator, then its body, which is what the
        // seeded GGSW stores, N coefficients per row) goes straight to the
        // Fourier domain, in parallel: no standard GGSW is materialised. The mask bytes are
        // what ~90% of the time goes to (tfhe-csprng yields them one by one).
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
            .zip(rows)
            .for_each_init(
                || (vec![0u64; k * n], ComputationBuffers::new()),
                |(mask, buffers), ((out, body), mut gen)| {
                    gen.fill_slice_with_random_uniform(mask);
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

        let scratch_bytes = add_external_product_assign_mem_optimized_requirement::<u64>(
            p.glwe_size(),
            p.poly_size(),
            fft.as_view(),
        )
        .unaligned_bytes_required();
        Ok(PreparedProbe {
            params: *p,
            fourier,
            fft,
            scratch_bytes,
        })
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

    /// Keeps only what the app reads: the mask and the readout coefficients.
    fn block_result(
        &self,
        block: &Glwe,
        slots: Vec<Option<TemplateId>>,
        buffers: &mut ComputationBuffers,
    ) -> BlockResult {
        let p = &self.params;
        let out = self.product(block, buffers);
        let body = out.get_body();
        let readouts = (0..p.slots_per_block())
            .map(|j| body.as_ref()[p.slot_readout(j)])
            .collect();
        BlockResult {
            mask: out.get_mask().as_ref().to_vec(),
            readouts,
            slots,
        }
    }
}

/// Expands a seeded template into a full GLWE ciphertext in slot 0.
fn expand(t: &EncryptedTemplate) -> Glwe {
    let p = &t.params;
    let seeded = SeededGlweCiphertext::from_container(
        t.body.as_slice(),
        p.glwe_size(),
        CompressionSeed::from(Seed(t.seed)),
        p.modulus(),
    );
    let mut out = GlweCiphertext::new(0u64, p.glwe_size(), p.poly_size(), p.modulus());
    decompress_seeded_glwe_ciphertext::<_, _, _, DefaultRandomGenerator>(&mut out, &seeded);
    out
}

/// Whether a shifted ciphertext is added into a block (packing) or subtracted (removal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sign {
    Add,
    Subtract,
}

/// `block += sign * ct * X^shift`: exact, keyless.
fn add_shifted(block: &mut Glwe, ct: &Glwe, shift: usize, sign: Sign) {
    let mut shifted = ct.clone();
    for mut poly in shifted.as_mut_polynomial_list().iter_mut() {
        polynomial_wrapping_monic_monomial_mul_assign(&mut poly, MonomialDegree(shift));
    }
    match sign {
        Sign::Add => glwe_ciphertext_add_assign(block, &shifted),
        Sign::Subtract => glwe_ciphertext_sub_assign(block, &shifted),
    }
}

struct Block {
    ct: Glwe,
    slots: Vec<Option<TemplateId>>,
}

/// Where a template sits: its own ciphertext, its block and its slot in that block.
struct Placement {
    template: EncryptedTemplate,
    block: usize,
    slot: usize,
}

/// The matcher's encrypted gallery: per-template ciphertexts (the source of truth, needed
/// to subtract and re-pack) and the packed blocks derived from them.
///
/// Invariant: `blocks[p.block].slots[p.slot] == Some(id)` for every `(id, p)` in
/// `templates`, and every other slot is `None` and holds an encryption of zero.
pub struct Gallery {
    params: Params,
    templates: BTreeMap<TemplateId, Placement>,
    blocks: Vec<Block>,
}

impl Gallery {
    pub fn new(params: &Params) -> Self {
        Gallery {
            params: *params,
            templates: BTreeMap::new(),
            blocks: Vec::new(),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn len(&self) -> usize {
        self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    pub fn ids(&self) -> impl Iterator<Item = TemplateId> + '_ {
        self.templates.keys().copied()
    }

    pub fn contains(&self, id: TemplateId) -> bool {
        self.templates.contains_key(&id)
    }

    /// Packs a template into the first free slot (a new block if none).
    pub fn insert(&mut self, id: TemplateId, template: EncryptedTemplate) -> Result<(), HeError> {
        if template.params != self.params {
            return Err(HeError::WrongParams {
                what: "encrypted template",
            });
        }
        if self.templates.contains_key(&id) {
            return Err(HeError::DuplicateTemplate(id));
        }
        let (block, slot) = self.free_slot();
        let ct = expand(&template);
        add_shifted(
            &mut self.blocks[block].ct,
            &ct,
            slot * self.params.slot_width(),
            Sign::Add,
        );
        self.blocks[block].slots[slot] = Some(id);
        self.templates.insert(
            id,
            Placement {
                template,
                block,
                slot,
            },
        );
        Ok(())
    }

    /// Subtracts a template from its block; re-packs once the holes add up to a block.
    pub fn remove(&mut self, id: TemplateId) -> Result<EncryptedTemplate, HeError> {
        let Placement {
            template,
            block,
            slot,
        } = self
            .templates
            .remove(&id)
            .ok_or(HeError::UnknownTemplate(id))?;
        let ct = expand(&template);
        add_shifted(
            &mut self.blocks[block].ct,
            &ct,
            slot * self.params.slot_width(),
            Sign::Subtract,
        );
        self.blocks[block].slots[slot] = None;
        let capacity = self.blocks.len() * self.params.slots_per_block();
        if capacity - self.templates.len() >= self.params.slots_per_block() {
            self.repack();
        }
        Ok(template)
    }

    /// Rebuilds the blocks densely from the per-template ciphertexts.
    pub fn repack(&mut self) {
        let entries: Vec<(TemplateId, EncryptedTemplate)> = std::mem::take(&mut self.templates)
            .into_iter()
            .map(|(id, p)| (id, p.template))
            .collect();
        self.blocks.clear();
        for (id, t) in entries {
            self.insert(id, t)
                .expect("ids unique and params checked on first insert");
        }
    }

    fn free_slot(&mut self) -> (usize, usize) {
        for (b, block) in self.blocks.iter().enumerate() {
            if let Some(s) = block.slots.iter().position(Option::is_none) {
                return (b, s);
            }
        }
        let p = &self.params;
        self.blocks.push(Block {
            ct: GlweCiphertext::new(0u64, p.glwe_size(), p.poly_size(), p.modulus()),
            slots: vec![None; p.slots_per_block()],
        });
        (self.blocks.len() - 1, 0)
    }

    /// 1:N: one external product per block, in parallel on the current rayon pool.
    pub fn identify(&self, probe: &PreparedProbe) -> Result<MatchResult, HeError> {
        self.check_probe(probe)?;
        let blocks = self
            .blocks
            .par_iter()
            .filter(|b| b.slots.iter().any(Option::is_some))
            .map_init(ComputationBuffers::new, |buffers, b| {
                probe.block_result(&b.ct, b.slots.clone(), buffers)
            })
            .collect();
        Ok(MatchResult {
            params: self.params,
            blocks,
        })
    }

    /// 1:1: one external product with the template's own (slot 0) ciphertext.
    pub fn verify(&self, probe: &PreparedProbe, id: TemplateId) -> Result<MatchResult, HeError> {
        self.check_probe(probe)?;
        let template = &self
            .templates
            .get(&id)
            .ok_or(HeError::UnknownTemplate(id))?
            .template;
        let mut slots = vec![None; self.params.slots_per_block()];
        slots[0] = Some(id);
        let mut buffers = ComputationBuffers::new();
        let block = probe.block_result(&expand(template), slots, &mut buffers);
        Ok(MatchResult {
            params: self.params,
            blocks: vec![block],
        })
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

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use tfhe::core_crypto::prelude::convert_standard_ggsw_ciphertext_to_fourier;

    use super::*;
    use crate::he::{decrypt, encrypt_probe, encrypt_template, SecretKey, Template};

    /// The straightforward preparation the optimised one replaced: tfhe's own decompression
    /// of the whole standard GGSW, then tfhe's own conversion to the Fourier domain.
    fn prepare_reference(probe: &EncryptedProbe, p: &Params) -> PreparedProbe {
        let seeded = SeededGgswCiphertext::from_container(
            probe.bodies.as_slice(),
            p.glwe_size(),
            p.poly_size(),
            p.base_log(),
            CompressionSeed::from(Seed(probe.seed)),
            p.modulus(),
        );
        let standard = seeded.decompress_into_ggsw_ciphertext();
        let mut fourier =
            FourierGgswCiphertext::new(p.glwe_size(), p.poly_size(), p.base_log(), p.level_count());
        convert_standard_ggsw_ciphertext_to_fourier(&standard, &mut fourier);
        let fft = Fft::new(p.poly_size());
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
                .insert(TemplateId(i as u64), encrypt_template(&key, t))
                .unwrap();
            plain.insert(TemplateId(i as u64), t.clone());
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
