//! App-side encryption: templates as seeded GLWE ciphertexts, probes as seeded GGSW
//! ciphertexts of a non-constant polynomial.
//!
//! tfhe only encrypts constants in a GGSW. A GGSW row is a GLWE encryption of zero plus a
//! message, so we let tfhe encrypt the constant 0 (seeded, with its own generator forking,
//! which keeps seeded decompression compatible by construction) and add the message to the
//! bodies: for gadget level l with factor g_l = 2^(64 - base_log * l), the mask row gets
//! -(P * s) * g_l and the last row gets P * g_l, exactly what
//! `encrypt_constant_ggsw_ciphertext` writes for a constant P.

use tfhe::core_crypto::algorithms::polynomial_algorithms::polynomial_karatsuba_wrapping_mul;
use tfhe::core_crypto::commons::math::random::CompressionSeed;
use tfhe::core_crypto::commons::traits::contiguous_entity_container::ContiguousEntityContainer;
use tfhe::core_crypto::prelude::{
    encrypt_constant_seeded_ggsw_ciphertext, encrypt_seeded_glwe_ciphertext, new_seeder, Cleartext,
    PlaintextList, Polynomial, SeededGgswCiphertext, SeededGlweCiphertext,
};

use super::entities::{EncryptedProbe, EncryptedTemplate, ProbeContext};
use super::{layout, SecretKey, Template};

/// Encrypts a gallery template (slot 0, Delta-scaled, -2 folded in).
pub fn encrypt_template(key: &SecretKey, template: &Template) -> EncryptedTemplate {
    encrypt_polynomial(key, &layout::gallery_polynomial(template, &key.params))
}

/// Encrypts an integer polynomial (N coefficients, Delta-scaled) as a seeded GLWE.
pub(crate) fn encrypt_polynomial(key: &SecretKey, poly: &[i64]) -> EncryptedTemplate {
    let p = key.params;
    let delta = p.delta();
    let plain: Vec<u64> = poly
        .iter()
        .copied()
        .map(|v| (v as u64).wrapping_mul(delta))
        .collect();
    let mut seeder = new_seeder();
    let seed = seeder.seed();
    let mut ct = SeededGlweCiphertext::new(
        0u64,
        p.glwe_size(),
        p.poly_size(),
        CompressionSeed::from(seed),
        p.modulus(),
    );
    encrypt_seeded_glwe_ciphertext(
        &key.key,
        &mut ct,
        &PlaintextList::from_container(plain),
        p.noise(),
        seeder.as_mut(),
    );
    EncryptedTemplate {
        params: p,
        seed: seed.0,
        body: ct.into_container(),
    }
}

/// Encrypts a probe; the context stays with the app.
pub fn encrypt_probe(key: &SecretKey, template: &Template) -> (EncryptedProbe, ProbeContext) {
    let p = key.params;
    let message: Vec<u64> = layout::probe_polynomial(template, &p)
        .into_iter()
        .map(|v| v as u64)
        .collect();
    let mut seeder = new_seeder();
    let seed = seeder.seed();
    let mut ggsw = SeededGgswCiphertext::new(
        0u64,
        p.glwe_size(),
        p.poly_size(),
        p.base_log(),
        p.level_count(),
        CompressionSeed::from(seed),
        p.modulus(),
    );
    encrypt_constant_seeded_ggsw_ciphertext(
        &key.key,
        &mut ggsw,
        Cleartext(0u64),
        p.noise(),
        seeder.as_mut(),
    );

    // P * s (k = 1: one key polynomial).
    let message = Polynomial::from_container(message);
    let mut p_times_s = Polynomial::new(0u64, p.poly_size());
    let key_polys = key.key.as_polynomial_list();
    polynomial_karatsuba_wrapping_mul(&mut p_times_s, &message, &key_polys.get(0));

    let n = p.polynomial_size;
    let levels = p.decomp_level_count;
    let data: &mut [u64] = ggsw.as_mut();
    // Seeded layout: per level matrix (highest level first), one body per row (k + 1 = 2).
    for (matrix_index, rows) in data.chunks_exact_mut(2 * n).enumerate() {
        let level = levels - matrix_index;
        let factor = 1u64 << (64 - p.decomp_base_log * level);
        let (mask_row, body_row) = rows.split_at_mut(n);
        for (b, &ps) in mask_row.iter_mut().zip(p_times_s.as_ref()) {
            *b = b.wrapping_sub(ps.wrapping_mul(factor));
        }
        for (b, &m) in body_row.iter_mut().zip(message.as_ref()) {
            *b = b.wrapping_add(m.wrapping_mul(factor));
        }
    }
    let probe = EncryptedProbe {
        params: p,
        seed: seed.0,
        bodies: ggsw.into_container(),
    };
    (
        probe,
        ProbeContext {
            norm_sq: template.norm_sq(),
        },
    )
}
