//! `blindface bench`: timings and sizes of the encrypted path on a synthetic gallery,
//! with every decrypted distance checked against the plaintext.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use serde::Serialize;

use blindface::he::{
    decrypt, encrypt_probe, encrypt_template, synthetic_templates, Gallery, Params, PreparedProbe,
    SecretKey, TemplateId,
};

use super::{emit, Globals};

#[derive(Serialize)]
struct BenchOutput {
    gallery: usize,
    blocks: usize,
    threads: usize,
    probe_encrypt_ms: f64,
    probe_prepare_ms: f64,
    template_encrypt_ms: f64,
    match_1to1_ms: f64,
    match_ms: f64,
    match_1thread_ms: f64,
    decrypt_ms: f64,
    probe_bytes: usize,
    template_bytes: usize,
    packed_bytes_per_template: usize,
    result_bytes: usize,
    exact: bool,
}

/// Median wall time of `reps` runs of `f`, in milliseconds.
fn median_ms<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let mut times: Vec<Duration> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

pub fn bench(globals: &Globals, n: usize) -> Result<()> {
    ensure!(n >= 1, "--gallery must be at least 1");
    let params = Params::v1();
    let key = SecretKey::generate(&params);
    let templates = synthetic_templates(n + 1, 2026, &params);
    let (probe_t, gallery_t) = templates.split_first().expect("n + 1 >= 2 templates");

    let start = Instant::now();
    let encrypted: Vec<_> = gallery_t
        .iter()
        .map(|t| encrypt_template(&key, t))
        .collect();
    let template_encrypt_ms = start.elapsed().as_secs_f64() * 1e3 / n as f64;
    let template_bytes = encrypted[0].to_bytes().len();
    let mut gallery = Gallery::new(&params);
    for (id, t) in encrypted.into_iter().enumerate() {
        gallery.insert(TemplateId(id as u64), t)?;
    }

    let probe_encrypt_ms = median_ms(21, || encrypt_probe(&key, probe_t));
    let (probe, ctx) = encrypt_probe(&key, probe_t);
    let probe_bytes = probe.to_bytes().len();
    let probe_prepare_ms = median_ms(21, || PreparedProbe::new(&probe, &params));
    let prepared = PreparedProbe::new(&probe, &params)?;

    let reps = (4000 / gallery.block_count().max(1)).clamp(3, 201);
    let match_1to1_ms = median_ms(201, || gallery.verify(&prepared, TemplateId(0)));
    let match_ms = median_ms(reps, || gallery.identify(&prepared));
    let single = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let match_1thread_ms = single.install(|| median_ms(reps, || gallery.identify(&prepared)));
    let result = gallery.identify(&prepared)?;
    let result_bytes = result.to_bytes().len();
    let decrypt_ms = median_ms(reps, || decrypt(&key, &ctx, &result));

    let distances = decrypt(&key, &ctx, &result)?;
    let exact = distances.len() == n
        && distances
            .iter()
            .all(|d| d.distance_sq == probe_t.distance_sq(&gallery_t[d.id.0 as usize]));

    let block_bytes = 8 * params.polynomial_size * (params.glwe_dimension + 1);
    let out = BenchOutput {
        gallery: n,
        blocks: gallery.block_count(),
        threads: rayon::current_num_threads(),
        probe_encrypt_ms,
        probe_prepare_ms,
        template_encrypt_ms,
        match_1to1_ms,
        match_ms,
        match_1thread_ms,
        decrypt_ms,
        probe_bytes,
        template_bytes,
        packed_bytes_per_template: block_bytes / params.slots_per_block(),
        result_bytes,
        exact,
    };
    emit(globals, &out, || {
        format!(
            "encrypted path, gallery {} ({} blocks of {}), {} threads\n\
             \x20 probe encryption       {:>9.3} ms   ({} bytes)\n\
             \x20 probe to Fourier       {:>9.3} ms   (matcher, once per probe)\n\
             \x20 template encryption    {:>9.3} ms   ({} bytes uploaded, {} bytes per template packed)\n\
             \x20 match 1:1              {:>9.3} ms\n\
             \x20 match 1:{:<6}         {:>9.3} ms   ({:.3} ms on 1 thread)\n\
             \x20 decrypt 1:{:<6}       {:>9.3} ms   (result {} bytes)\n\
             \x20 every distance exact   {}\n",
            out.gallery,
            out.blocks,
            params.slots_per_block(),
            out.threads,
            out.probe_encrypt_ms,
            out.probe_bytes,
            out.probe_prepare_ms,
            out.template_encrypt_ms,
            out.template_bytes,
            out.packed_bytes_per_template,
            out.match_1to1_ms,
            out.gallery,
            out.match_ms,
            out.match_1thread_ms,
            out.gallery,
            out.decrypt_ms,
            out.result_bytes,
            if out.exact { "yes" } else { "NO" }
        )
    });
    ensure!(
        exact,
        "decrypted distances differ from the plaintext computation"
    );
    Ok(())
}
