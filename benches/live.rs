//! The live path at 640x480 with three faces in view: frames through detection, tracking
//! and scheduled matching (each face identified when it appears and then every 0.5 s, on
//! a virtual 25 fps clock), against an encrypted built-in gallery. Also detection alone,
//! which is what bounds the preview's frame rate in the app (matching runs on the client
//! thread, beside the vision thread).

use std::path::Path;
use std::time::{Duration, Instant};

use blindface::client::face::template_of;
use blindface::client::keys::current_params;
use blindface::client::{connect, Locations};
use blindface::he::SecretKey;
use blindface::live::{Tracker, TrackerConfig};
use blindface::matcher::{MatcherSpec, TokenStore};
use blindface::vision::{load_image, FacePipeline};
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let faces = root.join("tests/fixtures/faces");
    // Obama, Biden and a child: a 4:3 crop of the group photo around the three, as a
    // 640x480 frame (faces 75 to 90 px wide, as at a laptop camera's distance).
    let group_photo = load_image(faces.join("obama_and_biden.jpg")).expect("fixture");
    let crop = image::imageops::crop_imm(&group_photo, 600, 250, 1300, 975).to_image();
    let frame = image::imageops::resize(&crop, 640, 480, image::imageops::FilterType::Triangle);

    let pipeline = FacePipeline::load_default().expect("pipeline");
    assert_eq!(
        pipeline.detect(&frame).expect("detect").len(),
        3,
        "three faces in view"
    );
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate(&current_params());
    let at = Locations {
        data_dir: dir.path().to_path_buf(),
        tokens: TokenStore::beside_key(&dir.path().join("k.key")),
    };
    let mut client = connect(key, &MatcherSpec::Builtin, &at, &Default::default()).expect("client");
    for (name, f) in [("Obama", "obama.jpg"), ("Biden", "biden.jpg")] {
        let img = load_image(faces.join(f)).unwrap();
        let face = pipeline.detect(&img).unwrap()[0];
        let t = template_of(&pipeline, &img, &face, client.params()).unwrap();
        client.enrol(&t, name).unwrap();
    }

    let mut group = c.benchmark_group("live");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    group.bench_function(
        "detect 640x480 (vision thread, bounds the preview fps)",
        |b| b.iter(|| pipeline.detect(&frame).expect("detect")),
    );
    let mut tracker = Tracker::new(TrackerConfig::default());
    let mut now = Instant::now();
    let mut matched = 0u64;
    let mut frames = 0u64;
    group.bench_function(
        "frame: detect + track + scheduled identify, 3 faces, serial (both threads' work)",
        |b| {
            b.iter(|| {
                let found = pipeline.detect(&frame).expect("detect");
                for id in tracker.update(&found, now) {
                    let face = tracker.get(id).unwrap().face;
                    let t = template_of(&pipeline, &frame, &face, client.params()).unwrap();
                    let r = client.identify(&t).unwrap();
                    tracker.matched(id, r.best_per_person());
                    matched += 1;
                }
                frames += 1;
                now += Duration::from_millis(40);
            })
        },
    );
    group.finish();
    eprintln!(
        "live: {matched} identifies over {frames} frames ({:.3} per frame; 3 faces every 12.5 \
         frames at 25 fps is 0.24)",
        matched as f64 / frames.max(1) as f64
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
