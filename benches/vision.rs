//! Face pipeline latency: detection of a 640x480 frame (one pass, with the close-up pass
//! every time, and with the default rule that runs it only when it can find more) and
//! embedding of one face (one SFace run, and flip-average: crop + mirror), with 1 intra-op
//! thread and ONNX Runtime's default.

use std::path::Path;
use std::time::Duration;

use blindface::vision::{
    load_image, CloseUpPass, DetectorConfig, EmbeddingMode, FacePipeline, PipelineOptions,
};
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let photo = load_image(root.join("tests/fixtures/faces/obama4.jpg")).expect("fixture");
    // A 640x480 frame, as from a webcam.
    let frame = image::imageops::resize(&photo, 640, 480, image::imageops::FilterType::Triangle);

    let mut group = c.benchmark_group("vision");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    for (label, threads) in [("1 thread", 1usize), ("default threads", 0)] {
        let mut pipeline = FacePipeline::load_with(
            &root.join("models"),
            PipelineOptions {
                intra_threads: threads,
                embedding: EmbeddingMode::Single,
                ..PipelineOptions::default()
            },
        )
        .expect("load pipeline");
        let face = pipeline.detect(&frame).expect("detect")[0];
        let ran = pipeline.detection(&frame).expect("detect").close_up_ran;

        group.bench_function(
            format!("detect 640x480, default (close-up pass ran: {ran}), {label}"),
            |b| b.iter(|| pipeline.detect(&frame).expect("detect")),
        );
        pipeline.set_detector_config(DetectorConfig::default().with_close_up(CloseUpPass::Always));
        group.bench_function(format!("detect 640x480, two passes, {label}"), |b| {
            b.iter(|| pipeline.detect(&frame).expect("detect"))
        });
        pipeline.set_detector_config(DetectorConfig::default().with_close_up(CloseUpPass::Never));
        group.bench_function(format!("detect 640x480, one pass, {label}"), |b| {
            b.iter(|| pipeline.detect(&frame).expect("detect"))
        });
        group.bench_function(format!("embed one face, {label}"), |b| {
            b.iter(|| pipeline.embed(&frame, &face).expect("embed"))
        });
        pipeline.set_embedding_mode(EmbeddingMode::FlipAverage);
        group.bench_function(format!("embed one face, flip-average, {label}"), |b| {
            b.iter(|| pipeline.embed(&frame, &face).expect("embed"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
