//! Synthetic templates for benchmarks: Gaussian-like values with the spread of real
//! quantised SFace embeddings (per-component sigma ~ scale / sqrt(D)), reproducible from a
//! seed. Not used for anything a user's data goes through.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Params, Template};

/// `count` reproducible synthetic templates (template `i` is [`synthetic_template`]`(i)`).
pub fn synthetic_templates(count: usize, seed: u64, params: &Params) -> Vec<Template> {
    (0..count)
        .map(|i| synthetic_template(i as u64, seed, params))
        .collect()
}

/// Synthetic template number `index` of the series `seed`, computed on its own (so a
/// million-template gallery never needs its plaintexts in memory at once).
pub fn synthetic_template(index: u64, seed: u64, params: &Params) -> Template {
    let mut rng = StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let sigma = params.quant_scale() / (params.dim as f32).sqrt();
    let values = (0..params.dim)
        .map(|_| {
            // Sum of four uniforms, rescaled to unit variance: close enough to normal.
            let g: f32 = (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>() * 1.732;
            ((g * sigma).round() as i32).clamp(-params.q, params.q)
        })
        .collect();
    Template::new(values, params).expect("values clamped to range")
}
