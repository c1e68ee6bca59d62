//! Encrypted matching core: exact decrypted distances against plaintext computation over
//! many random and extreme templates, the noise budget, slot independence, gallery
//! add/remove/re-pack, and rejection of wrong keys and bad payloads.

use blindface::client::keys::KeyFile;
use blindface::he::{
    decrypt, encrypt_probe, encrypt_template, erasure, noise_bound, readouts, EncryptedProbe,
    EncryptedTemplate, Gallery, HeError, MatchResult, Params, PreparedProbe, SecretKey, Template,
    TemplateId,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn params() -> Params {
    Params::v1()
}

/// Gaussian-like values (sum of uniforms) around the spread real embeddings have.
fn random_template(rng: &mut StdRng, p: &Params) -> Template {
    let sigma = p.quant_scale() / (p.dim as f32).sqrt();
    let values = (0..p.dim)
        .map(|_| {
            let g: f32 = (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>() * 1.732;
            ((g * sigma).round() as i32).clamp(-p.q, p.q)
        })
        .collect();
    Template::new(values, p).unwrap()
}

fn uniform_template(rng: &mut StdRng, p: &Params) -> Template {
    Template::new(
        (0..p.dim).map(|_| rng.random_range(-p.q..=p.q)).collect(),
        p,
    )
    .unwrap()
}

fn extremes(p: &Params) -> Vec<Template> {
    let q = p.q;
    let d = p.dim;
    let mk = |f: &dyn Fn(usize) -> i32| Template::new((0..d).map(f).collect(), p).unwrap();
    vec![
        mk(&|_| q),
        mk(&|_| -q),
        mk(&|i| if i % 2 == 0 { q } else { -q }),
        mk(&|i| if i % 2 == 0 { -q } else { q }),
        mk(&|_| 0),
        mk(&|i| if i == 0 { q } else { 0 }),
        mk(&|i| if i == d - 1 { -q } else { 0 }),
    ]
}

/// Removes `id` as the app does: reads its slot from its block with the key and has the
/// gallery add a fresh encryption of the negation.
fn remove(gallery: &mut Gallery, key: &SecretKey, id: TemplateId) -> Result<(), HeError> {
    let (loc, block) = gallery.block_of(id)?;
    let negation = erasure(key, &block, loc.slot)?;
    gallery.erase(id, &negation)
}

/// Checks every decrypted distance of `result` against the plaintext.
fn assert_exact(
    key: &SecretKey,
    probe: &Template,
    gallery: &std::collections::BTreeMap<TemplateId, Template>,
    result: &MatchResult,
    expected_count: usize,
) {
    let (_, ctx) = (
        0,
        blindface::he::ProbeContext {
            norm_sq: probe.norm_sq(),
        },
    );
    let distances = decrypt(key, &ctx, result).unwrap();
    assert_eq!(distances.len(), expected_count);
    for d in distances {
        assert_eq!(
            d.distance_sq,
            probe.distance_sq(&gallery[&d.id]),
            "template {}",
            d.id
        );
    }
}

/// Under every parameter set this build knows (v1: 128-D, 15 a block; v2: 80-D, 25).
#[test]
fn ten_thousand_random_and_extreme_templates_decrypt_exactly() {
    for p in Params::known() {
        ten_thousand_exact(p);
    }
}

fn ten_thousand_exact(p: Params) {
    let key = SecretKey::generate(&p);
    let mut rng = StdRng::seed_from_u64(0xB11D);
    let mut plain = std::collections::BTreeMap::new();
    let mut gallery = Gallery::new(&p);
    let mut templates: Vec<Template> = extremes(&p);
    while templates.len() < 10_050 {
        let t = if templates.len().is_multiple_of(3) {
            uniform_template(&mut rng, &p)
        } else {
            random_template(&mut rng, &p)
        };
        templates.push(t);
    }
    for (id, t) in templates.into_iter().enumerate() {
        gallery
            .insert(TemplateId(id as u64 + 1), &encrypt_template(&key, &t))
            .unwrap();
        plain.insert(TemplateId(id as u64 + 1), t);
    }
    assert_eq!(
        gallery.block_count(),
        10_050usize.div_ceil(p.slots_per_block())
    );

    // Probes: every extreme (identical and opposite vectors to gallery extremes, giving
    // distance 0 and the maximum 4*D*q^2) and random ones.
    let mut probes = extremes(&p);
    probes.push(random_template(&mut rng, &p));
    probes.push(uniform_template(&mut rng, &p));
    let max = 4 * p.dim as i64 * (p.q as i64).pow(2);
    let mut saw_zero = false;
    let mut saw_max = false;
    for probe in &probes {
        let (enc, ctx) = encrypt_probe(&key, probe);
        let prepared = PreparedProbe::new(&enc, &p).unwrap();
        let result = gallery.identify(&prepared).unwrap();
        let distances = decrypt(&key, &ctx, &result).unwrap();
        assert_eq!(distances.len(), plain.len());
        for d in &distances {
            assert_eq!(
                d.distance_sq,
                probe.distance_sq(&plain[&d.id]),
                "template {}",
                d.id
            );
            saw_zero |= d.distance_sq == 0;
            saw_max |= d.distance_sq == max;
        }
        // 1:1 on a few ids, including the extremes.
        for id in [1u64, 2, 3, 4, 5, 5001, 10_050] {
            let id = TemplateId(id);
            let r = gallery.verify(&prepared, id).unwrap();
            // The whole block answers (so every readout is checked); the asked one is exact.
            assert_eq!(r.blocks.len(), 1);
            assert_eq!(r.blocks[0].entries.len(), p.slots_per_block());
            let d = blindface::he::decrypt_for(&key, &ctx, &r, id).unwrap();
            assert_eq!(d.distance_sq, probe.distance_sq(&plain[&id]));
        }
    }
    assert!(
        saw_zero && saw_max,
        "extremes must include distance 0 and the maximum"
    );
}

/// Under every parameter set this build knows.
#[test]
fn noise_stays_far_below_the_decoding_margin() {
    for p in Params::known() {
        noise_below_margin(p);
    }
}

fn noise_below_margin(p: Params) {
    let mut worst = 0i64;
    let mut total = 0usize;
    let mut sum_sq = 0f64;
    let mut rng = StdRng::seed_from_u64(7);
    // Fresh keys, extreme probes against extreme and random galleries: 10 keys x 8 probes
    // x 1,500 templates = 120,000 readouts of compact (32-bit) results.
    for trial in 0..10 {
        let key = SecretKey::generate(&p);
        let mut gallery = Gallery::new(&p);
        let mut pool = extremes(&p);
        while pool.len() < 1500 {
            pool.push(uniform_template(&mut rng, &p));
        }
        for (id, t) in pool.iter().enumerate() {
            gallery
                .insert(TemplateId(id as u64 + 1), &encrypt_template(&key, t))
                .unwrap();
        }
        let mut probes = extremes(&p);
        probes.push(uniform_template(&mut rng, &p));
        for probe in probes {
            let (enc, _) = encrypt_probe(&key, &probe);
            let prepared = PreparedProbe::new(&enc, &p).unwrap();
            let result = gallery.identify(&prepared).unwrap();
            for block in readouts(&key, &result).unwrap() {
                for r in block {
                    worst = worst.max(r.noise.abs());
                    sum_sq += (r.noise as f64) * (r.noise as f64);
                    total += 1;
                }
            }
        }
        eprintln!(
            "trial {trial}: worst |noise| so far 2^{:.2}",
            (worst as f64).log2()
        );
    }
    let worst_log2 = (worst as f64).log2();
    let rms_log2 = (sum_sq / total as f64).sqrt().log2();
    let bound_log2 = (noise_bound(&p) as f64).log2();
    eprintln!(
        "params v{}: worst |noise| over {total} readouts: 2^{worst_log2:.2} (rms 2^{rms_log2:.2}); \
         integrity bound 2^{bound_log2}, decoding margin 2^{}",
        p.version,
        p.margin_log2()
    );
    assert!(total >= 100_000);
    // Compact results add the rounding of the modulus switch (std ~2^35.2 for a key of
    // weight ~N/2; measured worst 2^37.7 over 120,000): the worst readout must stay 2^1
    // below the integrity bound (~12 sigma), so honest results are never rejected.
    assert!(
        worst_log2 <= bound_log2 - 1.0,
        "worst noise 2^{worst_log2:.2} is not 2^1 below the integrity bound 2^{bound_log2}"
    );
}

#[test]
fn add_remove_reuse_keeps_every_distance_exact() {
    let p = params();
    let key = SecretKey::generate(&p);
    let mut rng = StdRng::seed_from_u64(42);
    let mut gallery = Gallery::new(&p);
    let mut plain = std::collections::BTreeMap::new();
    let mut next = 1u64;
    let mut add = |gallery: &mut Gallery,
                   plain: &mut std::collections::BTreeMap<TemplateId, Template>,
                   rng: &mut StdRng| {
        let t = uniform_template(rng, &p);
        gallery
            .insert(TemplateId(next), &encrypt_template(&key, &t))
            .unwrap();
        plain.insert(TemplateId(next), t);
        next += 1;
    };
    for _ in 0..50 {
        add(&mut gallery, &mut plain, &mut rng);
    }
    assert_eq!(gallery.block_count(), 4);
    let probe = uniform_template(&mut rng, &p);
    let (enc, _) = encrypt_probe(&key, &probe);
    let prepared = PreparedProbe::new(&enc, &p).unwrap();

    // Remove a scattered handful: holes, then the re-pack once a block's worth is free.
    for id in [3u64, 17, 18, 31, 44] {
        let id = TemplateId(id);
        remove(&mut gallery, &key, id).unwrap();
        plain.remove(&id);
        assert_exact(
            &key,
            &probe,
            &plain,
            &gallery.identify(&prepared).unwrap(),
            plain.len(),
        );
    }
    for id in (0..50u64).filter(|i| i % 4 == 1 && ![17, 18].contains(i)) {
        let id = TemplateId(id);
        remove(&mut gallery, &key, id).unwrap();
        plain.remove(&id);
    }
    assert_eq!(plain.len(), 33);
    assert_eq!(
        gallery.block_count(),
        4,
        "blocks keep their numbers; holes are reused"
    );
    assert_exact(
        &key,
        &probe,
        &plain,
        &gallery.identify(&prepared).unwrap(),
        33,
    );
    // Refill the holes and grow again.
    for _ in 0..20 {
        add(&mut gallery, &mut plain, &mut rng);
    }
    assert_eq!(gallery.block_count(), 53usize.div_ceil(p.slots_per_block()));
    assert_exact(
        &key,
        &probe,
        &plain,
        &gallery.identify(&prepared).unwrap(),
        53,
    );
    assert!(matches!(
        remove(&mut gallery, &key, TemplateId(9999)),
        Err(HeError::UnknownTemplate(TemplateId(9999)))
    ));
    let any = *plain.keys().next().unwrap();
    let dup = encrypt_template(&key, &plain[&any]);
    assert!(matches!(
        gallery.insert(any, &dup),
        Err(HeError::DuplicateTemplate(_))
    ));
}

#[test]
fn changing_one_template_changes_only_its_own_distance() {
    let p = params();
    let key = SecretKey::generate(&p);
    let mut rng = StdRng::seed_from_u64(3);
    let mut gallery = Gallery::new(&p);
    let originals: Vec<Template> = (0..30).map(|_| uniform_template(&mut rng, &p)).collect();
    for (id, t) in originals.iter().enumerate() {
        gallery
            .insert(TemplateId(id as u64 + 1), &encrypt_template(&key, t))
            .unwrap();
    }
    let probe = uniform_template(&mut rng, &p);
    let (enc, ctx) = encrypt_probe(&key, &probe);
    let prepared = PreparedProbe::new(&enc, &p).unwrap();
    let before = decrypt(&key, &ctx, &gallery.identify(&prepared).unwrap()).unwrap();
    // Replace template 7 (middle of block 0) by its opposite, in place.
    let changed: Vec<i32> = originals[7].values().iter().map(|v| -v).collect();
    let changed = Template::new(changed, &p).unwrap();
    remove(&mut gallery, &key, TemplateId(8)).unwrap();
    gallery
        .insert(TemplateId(8), &encrypt_template(&key, &changed))
        .unwrap();
    let after = decrypt(&key, &ctx, &gallery.identify(&prepared).unwrap()).unwrap();
    let find = |v: &[blindface::he::Distance], id: u64| {
        v.iter()
            .find(|d| d.id == TemplateId(id + 1))
            .unwrap()
            .distance_sq
    };
    for id in 0..30u64 {
        if id == 7 {
            assert_eq!(find(&after, 7), probe.distance_sq(&changed));
            assert_ne!(find(&after, 7), find(&before, 7));
        } else {
            assert_eq!(find(&after, id), find(&before, id), "template {id} moved");
        }
    }
}

fn small_setup() -> (
    Params,
    SecretKey,
    Gallery,
    EncryptedProbe,
    blindface::he::ProbeContext,
    Vec<Template>,
) {
    let p = params();
    let key = SecretKey::generate(&p);
    let mut rng = StdRng::seed_from_u64(11);
    let templates: Vec<Template> = (0..20).map(|_| uniform_template(&mut rng, &p)).collect();
    let mut gallery = Gallery::new(&p);
    for (id, t) in templates.iter().enumerate() {
        gallery
            .insert(TemplateId(id as u64 + 1), &encrypt_template(&key, t))
            .unwrap();
    }
    let (probe, ctx) = encrypt_probe(&key, &templates[0]);
    (p, key, gallery, probe, ctx, templates)
}

#[test]
fn a_wrong_key_is_an_error_never_a_distance() {
    let (p, _key, gallery, probe, ctx, _) = small_setup();
    let prepared = PreparedProbe::new(&probe, &p).unwrap();
    for _ in 0..10 {
        let other = SecretKey::generate(&p);
        let identify = gallery.identify(&prepared).unwrap();
        assert!(matches!(
            decrypt(&other, &ctx, &identify),
            Err(HeError::WrongKeyOrCorrupt { .. })
        ));
        let verify = gallery.verify(&prepared, TemplateId(3)).unwrap();
        assert!(matches!(
            decrypt(&other, &ctx, &verify),
            Err(HeError::WrongKeyOrCorrupt { .. })
        ));
    }
    // A probe made under another key against this gallery: also rejected.
    let other = SecretKey::generate(&p);
    let mut rng = StdRng::seed_from_u64(5);
    let (foreign, fctx) = encrypt_probe(&other, &uniform_template(&mut rng, &p));
    let result = gallery
        .identify(&PreparedProbe::new(&foreign, &p).unwrap())
        .unwrap();
    assert!(decrypt(&other, &fctx, &result).is_err());
}

#[test]
fn tampered_results_are_detected() {
    let (p, key, gallery, probe, ctx, templates) = small_setup();
    let prepared = PreparedProbe::new(&probe, &p).unwrap();
    let clean = gallery.identify(&prepared).unwrap();
    let d = decrypt(&key, &ctx, &clean).unwrap();
    assert_eq!(
        d.iter()
            .find(|d| d.id == TemplateId(1))
            .unwrap()
            .distance_sq,
        0
    );
    assert_eq!(d.len(), templates.len());

    // Any bit flipped in the serialized result fails the checksum.
    let bytes = clean.to_bytes();
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..50 {
        let mut b = bytes.clone();
        let i = rng.random_range(0..b.len());
        b[i] ^= 1 << rng.random_range(0..8);
        assert!(MatchResult::from_bytes(&b, &p, 10).is_err());
    }
    // Bypassing the checksum: a flipped mask bit in the noise range moves the phase of about
    // half the readouts off the Delta grid. (A flip at bit >= delta_log moves phases by whole
    // multiples of Delta; only the checksum catches that, see SECURITY.md.)
    let low = p.delta_log - 2 - (64 - blindface::he::RESULT_BITS);
    let mut tampered = clean.clone();
    tampered.blocks[0].mask[100] ^= 1 << low;
    assert!(matches!(
        decrypt(&key, &ctx, &tampered),
        Err(HeError::WrongKeyOrCorrupt { .. })
    ));
    // Noise-range bits of a readout, and an empty slot given a value: detected.
    let mut tampered = clean.clone();
    tampered.blocks[0].entries[2].readout ^= 1 << low;
    assert!(decrypt(&key, &ctx, &tampered).is_err());
    let mut tampered = clean.clone();
    let r = &mut tampered.blocks[1].entries[14].readout;
    *r = r.wrapping_add(5 << (p.delta_log - (64 - blindface::he::RESULT_BITS)));
    assert!(matches!(
        decrypt(&key, &ctx, &tampered),
        Err(HeError::WrongKeyOrCorrupt { block: 1, slot: 14 })
    ));
}

#[test]
fn payloads_round_trip_and_bad_payloads_are_rejected() {
    let (p, key, gallery, probe, ctx, templates) = small_setup();
    let template = encrypt_template(&key, &templates[1]);

    // Round trips.
    let t2 = EncryptedTemplate::from_bytes(&template.to_bytes(), &p).unwrap();
    assert_eq!(t2, template);
    let probe2 = EncryptedProbe::from_bytes(&probe.to_bytes(), &p).unwrap();
    assert_eq!(probe2, probe);
    let result = gallery
        .identify(&PreparedProbe::new(&probe2, &p).unwrap())
        .unwrap();
    let result2 = MatchResult::from_bytes(&result.to_bytes(), &p, 10).unwrap();
    assert_eq!(result2, result);
    let d = decrypt(&key, &ctx, &result2).unwrap();
    assert_eq!(
        d.iter()
            .find(|d| d.id == TemplateId(2))
            .unwrap()
            .distance_sq,
        templates[0].distance_sq(&templates[1])
    );
    let key2 = SecretKey::from_bytes(&key.to_bytes(), &p).unwrap();
    assert_eq!(key2.fingerprint(), key.fingerprint());

    // Sizes (targets: probe <= 200 KB, template upload 16 KB seeded).
    let probe_bytes = probe.to_bytes().len();
    assert!(probe_bytes < 200_000, "probe {probe_bytes} bytes");

    for bytes in [
        template.to_bytes(),
        probe.to_bytes(),
        result.to_bytes(),
        key.to_bytes().to_vec(),
    ] {
        // Truncated anywhere.
        for cut in [0, 3, 7, 50, bytes.len() / 2, bytes.len() - 1] {
            assert!(EncryptedTemplate::from_bytes(&bytes[..cut], &p).is_err());
            assert!(EncryptedProbe::from_bytes(&bytes[..cut], &p).is_err());
            assert!(MatchResult::from_bytes(&bytes[..cut], &p, 10).is_err());
            assert!(SecretKey::from_bytes(&bytes[..cut], &p).is_err());
        }
        // Garbage appended.
        let mut long = bytes.clone();
        long.extend_from_slice(&[0u8; 64]);
        assert!(EncryptedTemplate::from_bytes(&long, &p).is_err());
        assert!(EncryptedProbe::from_bytes(&long, &p).is_err());
    }
    // Wrong kind: a template is not a probe, a probe is not a key.
    assert!(matches!(
        EncryptedProbe::from_bytes(&template.to_bytes(), &p),
        Err(HeError::WrongKind { .. })
    ));
    assert!(matches!(
        SecretKey::from_bytes(&probe.to_bytes(), &p),
        Err(HeError::WrongKind { .. })
    ));
    // Oversized, with a valid header: rejected by size before parsing.
    for valid in [probe.to_bytes(), result.to_bytes()] {
        let mut huge = valid.clone();
        huge.resize(50_000_000, 0);
        assert!(matches!(
            EncryptedProbe::from_bytes(&huge, &p),
            Err(HeError::TooLarge { .. }) | Err(HeError::WrongKind { .. })
        ));
        assert!(matches!(
            MatchResult::from_bytes(&huge, &p, 10),
            Err(HeError::TooLarge { .. }) | Err(HeError::WrongKind { .. })
        ));
    }
    let mut huge = probe.to_bytes();
    huge.resize(50_000_000, 0);
    assert!(matches!(
        EncryptedProbe::from_bytes(&huge, &p),
        Err(HeError::TooLarge { .. })
    ));
    // Wrong version.
    let mut v = template.to_bytes();
    v[4] = 99;
    assert!(matches!(
        EncryptedTemplate::from_bytes(&v, &p),
        Err(HeError::WrongVersion { got: 99, .. })
    ));
    // Wrong parameters, both as a payload and as an in-memory object.
    let mut other = p;
    other.decomp_level_count = 3;
    assert!(matches!(
        EncryptedTemplate::from_bytes(&template.to_bytes(), &other),
        Err(HeError::WrongParams { .. })
    ));
    let other_key = SecretKey::generate(&Params { q: 15, ..p });
    let foreign = encrypt_template(&other_key, &Template::new(vec![1; p.dim], &p).unwrap());
    let mut g = Gallery::new(&p);
    assert!(matches!(
        g.insert(TemplateId(1), &foreign),
        Err(HeError::WrongParams { .. })
    ));
    // A body of the wrong length with a valid checksum.
    let bad = blindface::he::wire::encode(
        blindface::he::wire::Kind::Template,
        &p,
        &(0u128, vec![0u64; 100]),
    );
    assert!(matches!(
        EncryptedTemplate::from_bytes(&bad, &p),
        Err(HeError::Malformed { .. })
    ));
}

#[test]
fn key_files_are_private_versioned_and_never_silently_replaced() {
    let p = params();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("key.bfk");
    let key = SecretKey::generate(&p);
    key.save(&path, false).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let loaded = SecretKey::load(&path).unwrap();
    assert_eq!(loaded.fingerprint(), key.fingerprint());
    assert_eq!(key.fingerprint().len(), 19);
    let other = SecretKey::generate(&p);
    assert_ne!(other.fingerprint(), key.fingerprint());
    assert!(matches!(
        other.save(&path, false),
        Err(HeError::KeyExists { .. })
    ));
    assert_eq!(
        SecretKey::load(&path).unwrap().fingerprint(),
        key.fingerprint(),
        "no data lost"
    );
    other.save(&path, true).unwrap();
    assert_eq!(
        SecretKey::load(&path).unwrap().fingerprint(),
        other.fingerprint()
    );
    let missing = SecretKey::load(&dir.path().join("nope")).unwrap_err();
    assert!(missing.to_string().contains("nope"));
    std::fs::write(&path, b"not a key").unwrap();
    assert!(SecretKey::load(&path).is_err());
}

#[test]
fn removal_erases_the_slot_and_a_thousand_cycles_stay_exact() {
    use blindface::he::{decrypt_gallery_block, GalleryBuilder};
    let p = params();
    let key = SecretKey::generate(&p);
    let mut rng = StdRng::seed_from_u64(1000);
    let mut gallery = Gallery::new(&p);
    let mut plain = std::collections::BTreeMap::new();
    for id in 1..=20u64 {
        let t = uniform_template(&mut rng, &p);
        gallery
            .insert(TemplateId(id), &encrypt_template(&key, &t))
            .unwrap();
        plain.insert(TemplateId(id), t);
    }
    // Remove template 8 (block 0, slot 7): the slot decrypts to all zeros, the others are
    // untouched.
    let (loc, before) = gallery.block_of(TemplateId(8)).unwrap();
    assert_eq!((loc.block, loc.slot), (0, 7));
    let before = decrypt_gallery_block(&key, &before).unwrap();
    remove(&mut gallery, &key, TemplateId(8)).unwrap();
    plain.remove(&TemplateId(8));
    let (_, after) = gallery.block_of(TemplateId(1)).unwrap();
    assert_eq!(after.slots[7], None);
    let after = decrypt_gallery_block(&key, &after).unwrap();
    let w = p.slot_width();
    assert!(
        after[7 * w..8 * w].iter().all(|&v| v == 0),
        "nothing of the removed face is left"
    );
    assert!(before[7 * w..8 * w].iter().any(|&v| v != 0));
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        if !(7 * w..8 * w).contains(&i) {
            assert_eq!(b, a, "coefficient {i} outside the slot changed");
        }
    }
    // 1,000 cycles on the same slot: re-enrol (the freed slot is reused), remove.
    let probe = uniform_template(&mut rng, &p);
    let (enc, _) = encrypt_probe(&key, &probe);
    let prepared = PreparedProbe::new(&enc, &p).unwrap();
    let mut worst = 0i64;
    for cycle in 0..1000u64 {
        let id = TemplateId(10_000 + cycle);
        let t = if cycle % 2 == 0 {
            extremes(&p)[(cycle as usize / 2) % 4].clone()
        } else {
            uniform_template(&mut rng, &p)
        };
        gallery.insert(id, &encrypt_template(&key, &t)).unwrap();
        assert_eq!(
            gallery.location(id).unwrap().slot,
            7,
            "the freed slot is reused"
        );
        plain.insert(id, t);
        if cycle % 100 == 99 {
            let result = gallery.identify(&prepared).unwrap();
            for block in readouts(&key, &result).unwrap() {
                worst = worst.max(block.iter().map(|r| r.noise.abs()).max().unwrap());
            }
            assert_exact(&key, &probe, &plain, &result, plain.len());
        }
        remove(&mut gallery, &key, id).unwrap();
        plain.remove(&id);
    }
    let (_, block) = gallery.block_of(TemplateId(1)).unwrap();
    let values = decrypt_gallery_block(&key, &block).unwrap();
    assert!(values[7 * w..8 * w].iter().all(|&v| v == 0));
    eprintln!(
        "after 1,000 cycles: worst readout noise 2^{:.2}, integrity bound 2^{:.0}",
        (worst as f64).log2(),
        (noise_bound(&p) as f64).log2()
    );
    assert!(worst < noise_bound(&p) / 2, "2^1 of headroom left");
    // The stored form (seeds, then a dense mask once they outgrow it) rebuilds the very
    // same ciphertexts.
    let records: Vec<_> = (0..gallery.block_count())
        .map(|b| (b, gallery.record(b).unwrap()))
        .collect();
    assert!(records[0].1.base_mask.is_some(), "2,000 seeds went dense");
    let mut builder = GalleryBuilder::new(&p);
    builder.add(records).unwrap();
    let slots: Vec<_> = gallery
        .ids()
        .map(|id| (id, gallery.location(id).unwrap()))
        .collect();
    let rebuilt = builder.finish(slots).unwrap();
    for id in gallery.ids() {
        assert_eq!(rebuilt.block_of(id).unwrap(), gallery.block_of(id).unwrap());
    }
    assert_exact(
        &key,
        &probe,
        &plain,
        &rebuilt.identify(&prepared).unwrap(),
        plain.len(),
    );
}

#[test]
fn a_removal_by_someone_without_the_key_cannot_cancel_the_slot() {
    let (p, key, mut gallery, probe, ctx, _) = small_setup();
    // A token holder without the key can only send a ciphertext of its own making: the
    // slot is then not zero, and every later identify rejects that block.
    let stranger = SecretKey::generate(&p);
    let (loc, block) = gallery.block_of(TemplateId(3)).unwrap();
    assert!(
        erasure(&stranger, &block, loc.slot).is_err(),
        "cannot read the slot"
    );
    let guess = encrypt_template(&stranger, &Template::new(vec![5; p.dim], &p).unwrap());
    gallery.erase(TemplateId(3), &guess).unwrap();
    let result = gallery
        .identify(&PreparedProbe::new(&probe, &p).unwrap())
        .unwrap();
    assert!(matches!(
        decrypt(&key, &ctx, &result),
        Err(HeError::WrongKeyOrCorrupt { block: 0, .. })
    ));
}

#[test]
fn results_stream_block_by_block_and_a_cut_stream_is_an_error() {
    use blindface::he::ResultReader;
    let (p, key, gallery, probe, ctx, _) = small_setup();
    let result = gallery
        .identify(&PreparedProbe::new(&probe, &p).unwrap())
        .unwrap();
    let bytes = result.to_bytes();
    assert_eq!(bytes.len(), result.wire_len());
    // A reader that hands out 7 bytes at a time, like a slow socket.
    struct Trickle<'a>(&'a [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(7).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut reader = ResultReader::new(Trickle(&bytes), &p, 10).unwrap();
    assert_eq!(reader.block_count(), 2);
    let mut streamed = Vec::new();
    while let Some(b) = reader.next_block().unwrap() {
        streamed.extend(blindface::he::decrypt_block(&key, &ctx, &b, 0).unwrap());
    }
    assert_eq!(streamed, decrypt(&key, &ctx, &result).unwrap());
    // Cut anywhere: an error by the end, never a silent short result.
    for cut in (0..bytes.len()).step_by(997).chain([bytes.len() - 1]) {
        let outcome = ResultReader::new(&bytes[..cut], &p, 10).and_then(|mut r| {
            while r.next_block()?.is_some() {}
            Ok(())
        });
        assert!(outcome.is_err(), "cut at {cut}");
    }
    // More blocks than the reader accepts: refused from the header.
    assert!(matches!(
        ResultReader::new(&bytes[..], &p, 1),
        Err(HeError::TooLarge { .. })
    ));
    // Compact: at most 560 bytes per template for full blocks.
    let m = p.slots_per_block();
    assert!(blindface::he::BlockResult::encoded_len(&p, m) <= 560 * m);
}
