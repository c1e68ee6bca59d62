//! `blindface eval --identify DIR`: identification (1:N) through the real encrypted
//! gallery.
//!
//! The folder's images carry their identity (`Name_0001.jpg`, or `Name/*.jpg`). The split
//! is deterministic (`blindface::eval::split_roles`): an identity with two or more images
//! is enrolled with its first image (path order) that has a face, its other images are
//! mated searches; an identity with a single image is a stranger, searched for but never
//! enrolled. Enrolment goes through the built-in matcher in a temporary data directory,
//! under a fresh key, with names sealed as the gallery commands seal them; each search
//! encrypts a probe, asks the matcher for every encrypted distance, decrypts them, opens
//! the names and ranks them (`blindface::ranking`). Every decrypted distance is checked
//! against the plaintext distance of the quantised templates.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::Serialize;

use blindface::client::face::quantised;
use blindface::client::Client;
use blindface::eval::{
    identification_rates, scan_labelled_folder, split_roles, IdentificationRates, Role, Search,
};
use blindface::he::{SecretKey, Template, TemplateId};
use blindface::matcher::BuiltinMatcher;

use super::embed::{self, Settings};
use crate::cli::output::{emit, pct, Globals};

#[derive(Serialize)]
struct IdentifyOutput {
    folder: String,
    images: usize,
    identities: usize,
    enrolled: usize,
    strangers: usize,
    no_face: usize,
    no_face_images: Vec<String>,
    retry_images: usize,
    settings: Settings,
    threshold: f32,
    #[serde(flatten)]
    rates: IdentificationRates,
    /// Every decrypted distance equals the plaintext distance of the quantised templates.
    encrypted_equals_quantised: bool,
    distances_checked: usize,
    embed_seconds: f64,
    enrol_seconds: f64,
    search_seconds: f64,
    search_ms_mean: f64,
    seconds: f64,
}

/// A probe's place in the run: its image index and whether its identity is enrolled.
struct Probe {
    image: usize,
    mated: bool,
}

pub fn identify(globals: &Globals, dir: &Path, settings: &Settings) -> Result<()> {
    let started = Instant::now();
    // A fresh key for this run; everything is quantised and decided on its parameters.
    let key = SecretKey::generate(&settings.params);
    let params = *key.params();
    let (threshold, _) = globals.threshold.resolve(&params)?;
    let images = scan_labelled_folder(dir)?;
    let files: Vec<_> = images
        .iter()
        .map(|i| (i.path.clone(), format!("image {}", i.path.display())))
        .collect();
    let run = embed::embed_images(&files, settings)?;
    let has_face: Vec<bool> = run.embedded.iter().map(Option::is_some).collect();
    let roles = split_roles(&images, &has_face);
    let templates: Vec<Option<Template>> = run
        .embedded
        .iter()
        .map(|e| {
            e.map(|e| quantised(&e.embedding, &params).map(|q| q.template))
                .transpose()
        })
        .collect::<Result<_, _>>()?;

    // Enrol through the real matcher, in a data directory that lives for this run only.
    let enrol_started = Instant::now();
    let data = tempfile::tempdir().context("creating a temporary matcher data directory")?;
    let matcher = BuiltinMatcher::open_with_limit(
        data.path(),
        &params,
        &key.fingerprint(),
        images.len().max(1),
    )?;
    let mut client = Client::new(key, Box::new(matcher)).map_err(|e| e.error)?;
    let enrolling: Vec<usize> = (0..images.len())
        .filter(|&i| roles[i] == Role::Enrolled)
        .collect();
    let bar = embed::progress(enrolling.len(), "enrolled");
    let mut enrolled_templates: HashMap<TemplateId, &Template> = HashMap::new();
    for &i in &enrolling {
        let t = templates[i].as_ref().expect("enrolled images have a face");
        let id = client.enrol(t, &images[i].identity)?.id;
        enrolled_templates.insert(id, t);
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Names as the app sees them: listed by the matcher, opened with the key.
    client.refresh()?;
    client.check_labels()?;
    let client = &client;
    let enrol_seconds = enrol_started.elapsed().as_secs_f64();

    // Search with every other image.
    let search_started = Instant::now();
    let probes: Vec<Probe> = roles
        .iter()
        .enumerate()
        .filter(|(_, r)| **r != Role::Enrolled)
        .map(|(image, r)| Probe {
            image,
            mated: *r == Role::Mated,
        })
        .collect();
    let bar = embed::progress(probes.len(), "probes matched");
    let outcomes: Vec<(Search, bool, usize)> = probes
        .par_iter()
        .map(|p| -> Result<(Search, bool, usize)> {
            let Some(t) = &templates[p.image] else {
                bar.inc(1);
                return Ok((
                    Search {
                        mated: p.mated,
                        top: None,
                    },
                    true,
                    0,
                ));
            };
            let report = client.identify_known(t)?;
            let exact = report.rows.iter().all(|d| {
                enrolled_templates.get(&d.id).map(|e| t.distance_sq(e)) == Some(d.distance_sq)
            });
            let ranked = report.best_per_person();
            let top = ranked
                .first()
                .map(|r| (r.distance_sq, r.name == images[p.image].identity));
            bar.inc(1);
            Ok((
                Search {
                    mated: p.mated,
                    top,
                },
                exact,
                report.rows.len(),
            ))
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let search_seconds = search_started.elapsed().as_secs_f64();
    let searched = outcomes.iter().filter(|o| o.0.top.is_some()).count();

    let searches: Vec<Search> = outcomes.iter().map(|o| o.0).collect();
    let mut no_face_images: Vec<String> = (0..images.len())
        .filter(|&i| !has_face[i])
        .map(|i| images[i].path.display().to_string())
        .collect();
    no_face_images.sort();
    let out = IdentifyOutput {
        folder: dir.display().to_string(),
        images: images.len(),
        identities: {
            let mut ids: Vec<&str> = images.iter().map(|i| i.identity.as_str()).collect();
            ids.dedup();
            ids.len()
        },
        enrolled: enrolling.len(),
        strangers: roles.iter().filter(|r| **r == Role::Stranger).count(),
        no_face: no_face_images.len(),
        no_face_images,
        retry_images: run.embedded.iter().flatten().filter(|e| e.retry).count(),
        settings: *settings,
        threshold: threshold.l2(),
        rates: identification_rates(&searches, &threshold),
        encrypted_equals_quantised: outcomes.iter().all(|o| o.1),
        distances_checked: outcomes.iter().map(|o| o.2).sum(),
        embed_seconds: run.seconds,
        enrol_seconds,
        search_seconds,
        search_ms_mean: 1e3 * search_seconds / searched.max(1) as f64,
        seconds: started.elapsed().as_secs_f64(),
    };
    emit(globals, &out, || table(&out));
    Ok(())
}

fn table(o: &IdentifyOutput) -> String {
    let r = &o.rates;
    let at = |x: &Option<blindface::eval::FnirAtFpir>, need: &str| match x {
        Some(a) => format!("{} (FPIR {})", pct(a.fnir), pct(a.fpir)),
        None => format!("not enough strangers to say (needs {need})"),
    };
    let mut s = format!(
        "{}: {} images of {} identities; {} enrolled (one image each), {} strangers (identities with one image, never enrolled); {} image(s) with no face, {} found by the retry\n",
        o.folder, o.images, o.identities, o.enrolled, o.strangers, o.no_face, o.retry_images
    );
    s += &format!(
        "face: {}, embedding: {}; threshold L2 {:.3}\n",
        o.settings.face, o.settings.embedding, o.threshold
    );
    s += &format!(
        "mated searches {} ({} without a face), stranger searches {} ({} without a face)\n",
        r.mated_searches, r.mated_no_face, r.stranger_searches, r.stranger_no_face
    );
    s += &format!(
        "  rank-1 accuracy              {} ({} of {})\n",
        pct(r.rank1_accuracy),
        r.rank1_hits,
        r.mated_searches
    );
    s += &format!(
        "  at the threshold: FNIR {}, wrong name shown {} time(s), strangers accepted {} of {} ({})\n",
        pct(r.fnir_at_threshold),
        r.misidentified_at_threshold,
        r.strangers_accepted,
        r.stranger_searches,
        pct(r.stranger_false_accept_rate)
    );
    s += &format!(
        "  FNIR at FPIR 1%              {}\n",
        at(&r.fnir_at_fpir_1e2, "100")
    );
    s += &format!(
        "  FNIR at FPIR 0.1%            {}\n",
        at(&r.fnir_at_fpir_1e3, "1,000")
    );
    s += &format!(
        "every decrypted distance equals the quantised one: {} ({} checked)\n",
        if o.encrypted_equals_quantised {
            "yes"
        } else {
            "NO"
        },
        o.distances_checked
    );
    s += &format!(
        "took {:.1} s (embedding {:.1} s, enrolment {:.1} s, searches {:.1} s: {:.1} ms each)\n",
        o.seconds, o.embed_seconds, o.enrol_seconds, o.search_seconds, o.search_ms_mean
    );
    s
}
