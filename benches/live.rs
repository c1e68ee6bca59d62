//! The live path at 640x480 with three faces in view: frames through detection, tracking
//! and scheduled matching (each face identified when it appears and then every 0.5 s, on
//! a virtual 25 fps clock), against an encrypted built-in gallery. Also detection alone
//! (the vision thread's work per frame), with the close-up pass run every time (before
//! issue 21) and run only when it can find more (the default), on the three-face frame and
//! on a frame with one face close to the camera; and the preview's own work per camera
//! frame: a 640x480 MJPEG frame decoded to RGB and mirrored.

use std::path::Path;
use std::time::{Duration, Instant};

use blindface::app::protocol::SourceId;
use blindface::app::worker::{CloseUpSchedule, CLOSE_UP_CHECK_EVERY};
use blindface::client::face::{embed_face, template_of};
use blindface::client::{connect, Locations};
use blindface::frames::{FrameCounter, PixelFormat, RawFrame};
use blindface::he::{Params, SecretKey};
use blindface::live::{Tracker, TrackerConfig};
use blindface::matcher::{MatcherSpec, TokenStore};
use blindface::vision::{load_image, CloseUpPass, DetectorConfig, FacePipeline, PipelineOptions};
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
    // The same pipeline with the close-up pass run on every frame (the detector before
    // issue 21); same faces, checked below.
    let always = FacePipeline::load_with(
        &root.join("models"),
        PipelineOptions {
            detector: DetectorConfig::default().with_close_up(CloseUpPass::Always),
            ..PipelineOptions::default()
        },
    )
    .expect("pipeline");
    // And with the first pass only (misses close-ups): what detection costs at the least.
    let one_pass = FacePipeline::load_with(
        &root.join("models"),
        PipelineOptions {
            detector: DetectorConfig::default().with_close_up(CloseUpPass::Never),
            ..PipelineOptions::default()
        },
    )
    .expect("pipeline");
    // One face close to the camera: obama.jpg's face 300 px wide in the middle of a 640x480
    // frame (no room left for a close-up, so the default skips the second pass).
    let portrait = load_image(faces.join("obama.jpg")).expect("fixture");
    let [x, y, w, h] = pipeline.detect(&portrait).expect("detect")[0].bbox;
    let k = w / 300.0;
    let (cx, cy) = (x + w / 2.0, y + h / 2.0);
    let near = image::imageops::crop_imm(
        &portrait,
        (cx - 320.0 * k).max(0.0) as u32,
        (cy - 240.0 * k).max(0.0) as u32,
        (640.0 * k) as u32,
        (480.0 * k) as u32,
    )
    .to_image();
    let near = image::imageops::resize(&near, 640, 480, image::imageops::FilterType::Triangle);
    for (what, f, skipped) in [
        ("three faces", &frame, false),
        ("one near face", &near, true),
    ] {
        let d = pipeline.detection(f).expect("detect");
        let a = always.detection(f).expect("detect");
        assert_eq!(d.faces, a.faces, "{what}: same faces either way");
        assert_eq!(d.close_up_ran, !skipped, "{what}");
    }
    // The preview's input: the three-face frame as a camera's MJPEG frame.
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&frame)
        .expect("encode");
    let mjpeg = RawFrame::new(PixelFormat::Mjpeg, 640, 480, jpeg);
    let counter = FrameCounter::new();
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate(&Params::v1());
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
        "preview: decode a 640x480 MJPEG camera frame + mirror (per frame)",
        |b| {
            b.iter(|| {
                let mut img = counter.decode(&mjpeg).expect("decode");
                image::imageops::flip_horizontal_in_place(&mut img);
                img
            })
        },
    );
    group.bench_function(
        "detect 640x480, 3 faces, close-up pass always (before)",
        |b| b.iter(|| always.detect(&frame).expect("detect")),
    );
    group.bench_function(
        "detect 640x480, 3 faces, close-up pass when it can find more (default)",
        |b| b.iter(|| pipeline.detect(&frame).expect("detect")),
    );
    group.bench_function(
        "detect 640x480, 3 faces, close-up pass never (reference: misses close-ups)",
        |b| b.iter(|| one_pass.detect(&frame).expect("detect")),
    );
    group.bench_function(
        "detect 640x480, 1 near face, close-up pass always (before)",
        |b| b.iter(|| always.detect(&near).expect("detect")),
    );
    group.bench_function(
        "detect 640x480, 1 near face, close-up pass when it can find more (default)",
        |b| b.iter(|| pipeline.detect(&near).expect("detect")),
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
                    let e = embed_face(&pipeline, &frame, &face, client.params()).unwrap();
                    let r = client.identify(&e.template).unwrap();
                    tracker.matched(id, r.best_per_person(), e.embedding);
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

    // Before and after side by side: on this shared 2-core machine another process can
    // halve the speed for seconds at a time, so criterion's one-benchmark-after-another
    // medians can differ by 2x for the same work. Here every round times each step once,
    // in turn, so all steps see the same load; medians per step. One ONNX Runtime session
    // does all the detection (its settings changed between steps): sessions taking turns
    // would slow each other down (a session's threads keep spinning a while after a run).
    if wants("interleaved") {
        drop((pipeline, always, one_pass));
        let mut solo = FacePipeline::load_default().expect("pipeline");
        let steps = [
            ("preview: MJPEG 640x480 decode + mirror", None, &frame),
            (
                "detect, 3 faces, close-up pass always (before)",
                Some(CloseUpPass::Always),
                &frame,
            ),
            (
                "detect, 3 faces, default: when it can find more (after)",
                Some(CloseUpPass::WhenItCanFindMore),
                &frame,
            ),
            (
                "detect, 3 faces, close-up pass never (reference)",
                Some(CloseUpPass::Never),
                &frame,
            ),
            // The app's live video: the full rule on one frame in CLOSE_UP_CHECK_EVERY,
            // close-ups only when nothing is found on the others (per frame, averaged).
            (
                "detect, 3 faces, live video as the app schedules it",
                Some(CloseUpPass::WhenNothingFound),
                &frame,
            ),
            (
                "detect, 1 near face, close-up pass always (before)",
                Some(CloseUpPass::Always),
                &near,
            ),
            (
                "detect, 1 near face, default: when it can find more (after)",
                Some(CloseUpPass::WhenItCanFindMore),
                &near,
            ),
        ];
        let rounds = 200;
        let mut times = vec![Vec::with_capacity(rounds); steps.len()];
        for round in 0..rounds + 5 {
            for i in 0..steps.len() {
                // The order rotates each round; 5 warm-up rounds are not counted.
                let i = (i + round) % steps.len();
                let (_, mode, img) = steps[i];
                if let Some(mode) = mode {
                    solo.set_detector_config(DetectorConfig::default().with_close_up(mode));
                }
                let t = Instant::now();
                let mut frames = 1;
                match mode {
                    None => {
                        let mut img = counter.decode(&mjpeg).expect("decode");
                        image::imageops::flip_horizontal_in_place(&mut img);
                        std::hint::black_box(img);
                    }
                    Some(CloseUpPass::WhenNothingFound) => {
                        let mut schedule = CloseUpSchedule::default();
                        frames = CLOSE_UP_CHECK_EVERY;
                        for _ in 0..frames {
                            let m = schedule.next(SourceId(1), true);
                            let d = solo.detection_with_close_up(img, m).expect("detect");
                            std::hint::black_box(d);
                        }
                    }
                    Some(_) => {
                        std::hint::black_box(solo.detect(img).expect("detect"));
                    }
                }
                if round >= 5 {
                    times[i].push(t.elapsed().as_secs_f64() * 1e3 / frames as f64);
                }
            }
        }
        eprintln!(
            "interleaved, {rounds} rounds: median (p10 to p90) per frame, frames/s at the median"
        );
        for ((name, _, _), t) in steps.iter().zip(&mut times) {
            t.sort_by(f64::total_cmp);
            let at = |q: f64| t[((t.len() - 1) as f64 * q).round() as usize];
            eprintln!(
                "  {name:<62} {:>7.2} ms ({:.2} to {:.2})  {:>6.1} fps",
                at(0.5),
                at(0.1),
                at(0.9),
                1e3 / at(0.5)
            );
        }
    }
}

/// Whether the command line's filter (the first argument not starting with `-`, if any)
/// selects `name`.
fn wants(name: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .is_none_or(|filter| name.contains(&filter))
}

criterion_group!(benches, bench);
criterion_main!(benches);
