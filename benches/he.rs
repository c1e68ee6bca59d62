//! Encrypted path benchmarks: probe encryption, matcher time for galleries of 1 to 10,000
//! templates on 1 and 2 threads, decryption, and, measured in the same run, one squared
//! distance through tfhe's high-level integer API on 8 dimensions (the direct port of the
//! original idea) so the ratio can be stated honestly. Sizes come from `blindface bench`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::Duration;

use blindface::he::{
    decrypt, encrypt_probe, encrypt_template, synthetic_templates, Gallery, Params, PreparedProbe,
    SecretKey, TemplateId,
};

fn encrypted_path(c: &mut Criterion) {
    let p = Params::v1();
    let key = SecretKey::generate(&p);
    let templates = synthetic_templates(10_001, 7, &p);
    let (probe_t, rest) = templates.split_first().unwrap();

    c.bench_function("probe_encrypt", |b| b.iter(|| encrypt_probe(&key, probe_t)));
    let (probe, ctx) = encrypt_probe(&key, probe_t);
    c.bench_function("probe_to_fourier", |b| {
        b.iter(|| PreparedProbe::new(&probe, &p).unwrap())
    });
    c.bench_function("template_encrypt", |b| {
        b.iter(|| encrypt_template(&key, &rest[0]))
    });
    let prepared = PreparedProbe::new(&probe, &p).unwrap();

    let encrypted: Vec<_> = rest.iter().map(|t| encrypt_template(&key, t)).collect();
    let mut group = c.benchmark_group("match");
    group.measurement_time(Duration::from_secs(4));
    let mut gallery = Gallery::new(&p);
    let mut filled = 0;
    for n in [1usize, 15, 150, 1_500, 10_000] {
        while filled < n {
            gallery
                .insert(TemplateId(filled as u64 + 1), &encrypted[filled])
                .unwrap();
            filled += 1;
        }
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            group.bench_with_input(
                BenchmarkId::new(format!("{threads}_threads"), n),
                &n,
                |b, _| b.iter(|| pool.install(|| gallery.identify(&prepared).unwrap())),
            );
        }
    }
    group.finish();

    let result = gallery.identify(&prepared).unwrap();
    let mut group = c.benchmark_group("decrypt");
    group.bench_function("10000", |b| {
        b.iter(|| decrypt(&key, &ctx, &result).unwrap())
    });
    let one = gallery.verify(&prepared, TemplateId(1)).unwrap();
    group.bench_function("1", |b| b.iter(|| decrypt(&key, &ctx, &one).unwrap()));
    group.finish();
}

/// The direct port: FheInt16 subtract, multiply, sum over 8 dimensions (q = 31 keeps the
/// 8-D sum below 2^15; 128-D needs 32-bit integers, so x16 is a lower bound there).
fn high_level_baseline(c: &mut Criterion) {
    use tfhe::prelude::*;
    use tfhe::{generate_keys, set_server_key, ConfigBuilder, FheInt16};

    let (client, server) = generate_keys(ConfigBuilder::default());
    set_server_key(server);
    let a: Vec<i16> = (0..8).map(|i| (i * 7 % 63) as i16 - 31).collect();
    let b: Vec<i16> = (0..8).map(|i| (i * 13 % 63) as i16 - 31).collect();
    let ea: Vec<FheInt16> = a.iter().map(|&v| FheInt16::encrypt(v, &client)).collect();
    let eb: Vec<FheInt16> = b.iter().map(|&v| FheInt16::encrypt(v, &client)).collect();
    let expected: i16 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();

    let distance = || -> FheInt16 {
        ea.iter()
            .zip(&eb)
            .map(|(x, y)| {
                let d = x - y;
                &d * &d
            })
            .sum()
    };
    let got: i16 = distance().decrypt(&client);
    assert_eq!(got, expected, "baseline computes the right distance");

    let mut group = c.benchmark_group("baseline_tfhe_high_level");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("FheInt16_sq_distance_8d", |bch| bch.iter(distance));
    group.finish();
}

criterion_group!(benches, encrypted_path, high_level_baseline);
criterion_main!(benches);
