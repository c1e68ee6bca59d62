//! Face pipeline tests with the real models and real photos (tests/fixtures/faces/).
//!
//! Needs ONNX Runtime 1.31 (provisioned by build.rs, or ORT_DYLIB_PATH).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use blindface::vision::{
    load_image, load_image_from_bytes, DetectorConfig, Embedding, EmbeddingMode, Face, FaceChoice,
    FacePipeline, PipelineOptions, VisionError, SFACE_L2_THRESHOLD,
};
use image::{Rgb, RgbImage};
use rand::{RngCore, SeedableRng};

const OBAMA: &[&str] = &[
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "obama4.jpg",
    "obama-240p.jpg",
    "obama_partial_face.jpg",
];
const BIDEN: &[&str] = &["biden.jpg", "biden2.jpg"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/faces")
        .join(name)
}

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn pipeline() -> &'static FacePipeline {
    static PIPELINE: OnceLock<FacePipeline> = OnceLock::new();
    PIPELINE.get_or_init(|| match FacePipeline::load_default() {
        Ok(p) => p,
        Err(e) => panic!("cannot load the face pipeline: {e}"),
    })
}

/// The pipeline with one SFace run per face (no flip averaging), as OpenCV computes it.
fn single_pipeline() -> &'static FacePipeline {
    static PIPELINE: OnceLock<FacePipeline> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        let options = PipelineOptions {
            embedding: EmbeddingMode::Single,
            ..PipelineOptions::default()
        };
        FacePipeline::load_with(&models_dir(), options).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn load(name: &str) -> RgbImage {
    load_image(fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn embed(name: &str) -> (Face, Embedding) {
    pipeline()
        .embed_largest(&load(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn pipeline_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<FacePipeline>();
}

#[test]
fn obama_pairs_match_and_obama_biden_pairs_do_not() {
    let obama: Vec<(&str, Embedding)> = OBAMA.iter().map(|n| (*n, embed(n).1)).collect();
    let biden: Vec<(&str, Embedding)> = BIDEN.iter().map(|n| (*n, embed(n).1)).collect();

    let mut genuine = Vec::new();
    for (i, (na, a)) in obama.iter().enumerate() {
        for (nb, b) in &obama[i + 1..] {
            let l2 = a.l2(b);
            println!("same  {na:>24} {nb:>24} l2 {l2:.4} cos {:.4}", a.cosine(b));
            assert!(
                l2 <= SFACE_L2_THRESHOLD,
                "{na} vs {nb}: L2 {l2} above the threshold"
            );
            // Unit vectors: L2^2 = 2 - 2 cos.
            assert!((l2 * l2 - (2.0 - 2.0 * a.cosine(b))).abs() < 1e-4);
            genuine.push(l2);
        }
    }
    let mut impostor = Vec::new();
    for (na, a) in &obama {
        for (nb, b) in &biden {
            let l2 = a.l2(b);
            println!("diff  {na:>24} {nb:>24} l2 {l2:.4} cos {:.4}", a.cosine(b));
            assert!(
                l2 > SFACE_L2_THRESHOLD,
                "{na} vs {nb}: L2 {l2} at or below the threshold"
            );
            impostor.push(l2);
        }
    }
    let (b0, b1) = (&biden[0].1, &biden[1].1);
    println!("same  biden.jpg biden2.jpg l2 {:.4}", b0.l2(b1));
    assert!(b0.l2(b1) <= SFACE_L2_THRESHOLD);

    // Measured on these photos: genuine 0.34 (obama.jpg vs its 240p version) to 0.82,
    // impostor 1.21 to 1.35. The bounds leave some margin yet catch a pipeline that drifts
    // (e.g. a broken alignment pushes genuine pairs up).
    for l2 in &genuine {
        assert!(
            (0.25..=0.95).contains(l2),
            "genuine L2 {l2} outside 0.25..0.95"
        );
    }
    for l2 in &impostor {
        assert!(
            (1.15..=1.45).contains(l2),
            "impostor L2 {l2} outside 1.15..1.45"
        );
    }
}

/// obama_and_biden.jpg shows Biden, Obama and, at the bottom right, a child whose face
/// (about 160 px, partly shadowed) YuNet also finds, as OpenCV's own YuNet does at the same
/// scale (scripts/opencv_reference.py reports 3 faces).
#[test]
fn obama_and_biden_photo_gives_both_men_plus_the_child() {
    let img = load("obama_and_biden.jpg");
    let faces = pipeline().detect(&img).expect("detect");
    assert_eq!(faces.len(), 3, "{faces:?}");
    assert!(
        faces.windows(2).all(|w| w[0].area() >= w[1].area()),
        "largest first"
    );
    let obama = embed("obama.jpg").1;
    let biden = embed("biden.jpg").1;
    let mut who = Vec::new();
    for face in &faces {
        let e = pipeline().embed(&img, face).expect("embed");
        let (to_obama, to_biden) = (e.l2(&obama), e.l2(&biden));
        println!(
            "face at x={:.0} w={:.0}: to obama {to_obama:.3}, to biden {to_biden:.3}",
            face.bbox[0], face.bbox[2]
        );
        who.push(if to_obama <= SFACE_L2_THRESHOLD && to_obama < to_biden {
            "obama"
        } else if to_biden <= SFACE_L2_THRESHOLD {
            "biden"
        } else {
            "neither"
        });
    }
    // The two men are the two largest faces; the child matches neither.
    let mut men = who[..2].to_vec();
    men.sort_unstable();
    assert_eq!(men, ["biden", "obama"]);
    assert_eq!(who[2], "neither");
    assert!(
        faces[2].bbox[0] > 1500.0 && faces[2].bbox[1] > 900.0,
        "{:?}",
        faces[2]
    );
}

#[test]
fn one_face_in_each_single_person_photo() {
    for name in OBAMA.iter().chain(BIDEN) {
        let faces = pipeline().detect(&load(name)).expect("detect");
        println!(
            "{name}: {} face(s), scores {:?}",
            faces.len(),
            faces.iter().map(|f| f.score).collect::<Vec<_>>()
        );
        assert_eq!(faces.len(), 1, "{name}: {faces:?}");
    }
}

#[test]
fn blank_and_noise_images_have_no_face() {
    let p = pipeline();
    for value in [0u8, 128, 255] {
        let img = RgbImage::from_pixel(640, 480, Rgb([value; 3]));
        assert_eq!(p.detect(&img).expect("detect").len(), 0, "uniform {value}");
        assert!(matches!(p.embed_largest(&img), Err(VisionError::NoFace)));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for (w, h) in [(640, 480), (1280, 720), (97, 311)] {
        let mut buf = vec![0u8; w * h * 3];
        rng.fill_bytes(&mut buf);
        let img = RgbImage::from_raw(w as u32, h as u32, buf).expect("buffer size");
        assert_eq!(p.detect(&img).expect("detect").len(), 0, "noise {w}x{h}");
    }
    // Degenerate sizes do not panic.
    assert!(p.detect(&RgbImage::new(1, 1)).expect("1x1").is_empty());
    assert!(p
        .detect(&RgbImage::new(5000, 2))
        .expect("5000x2")
        .is_empty());
}

/// The no-face retry on blank and noise images at retry thresholds down to 0.3: still
/// nothing, and a retry that finds nothing is not reported as one.
#[test]
fn no_face_retry_never_invents_a_face_on_blank_or_noise_images() {
    let defaults = DetectorConfig::default();
    assert!(
        defaults
            .retry_score_threshold
            .is_some_and(|r| r < defaults.score_threshold),
        "the retry is on by default"
    );
    let mut images: Vec<(String, RgbImage)> = [0u8, 128, 255]
        .iter()
        .map(|&v| {
            (
                format!("uniform {v}"),
                RgbImage::from_pixel(250, 250, Rgb([v; 3])),
            )
        })
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    for (w, h) in [(250, 250), (640, 480), (1280, 720), (97, 311)] {
        let mut buf = vec![0u8; w * h * 3];
        rng.fill_bytes(&mut buf);
        images.push((
            format!("noise {w}x{h}"),
            RgbImage::from_raw(w as u32, h as u32, buf).expect("buffer size"),
        ));
    }
    // Smooth noise (blocky, blurred) looks more like shapes than pixel noise does.
    let mut small = vec![0u8; 25 * 25 * 3];
    rng.fill_bytes(&mut small);
    let small = RgbImage::from_raw(25, 25, small).expect("buffer size");
    images.push((
        "smooth noise".into(),
        image::imageops::resize(&small, 250, 250, image::imageops::FilterType::Triangle),
    ));
    for retry in [defaults.retry_score_threshold.unwrap(), 0.3] {
        let p = FacePipeline::load_with(
            &models_dir(),
            PipelineOptions {
                detector: DetectorConfig {
                    retry_score_threshold: Some(retry),
                    ..defaults
                },
                ..PipelineOptions::default()
            },
        )
        .expect("load");
        for (what, img) in &images {
            let d = p.detection(img).expect("detect");
            assert!(d.faces.is_empty(), "retry {retry}, {what}: {:?}", d.faces);
            assert!(!d.retry, "{what}");
            assert!(matches!(p.embed_largest(img), Err(VisionError::NoFace)));
        }
    }
}

/// A face below the score threshold is found by the retry, and reported as such; without
/// the retry it is not found; a face above the threshold never goes through the retry.
#[test]
fn no_face_retry_finds_a_face_below_the_threshold_and_says_so() {
    let img = load("obama2.jpg");
    let normal = pipeline().detection(&img).expect("detect");
    assert_eq!(normal.faces.len(), 1);
    assert!(!normal.retry);
    let score = normal.faces[0].score;
    // A threshold just above this face's score: only the retry can find it.
    let strict = |retry: Option<f32>| {
        FacePipeline::load_with(
            &models_dir(),
            PipelineOptions {
                detector: DetectorConfig {
                    score_threshold: (score + 1.0) / 2.0,
                    retry_score_threshold: retry,
                    ..DetectorConfig::default()
                },
                ..PipelineOptions::default()
            },
        )
        .expect("load")
    };
    let retried = strict(DetectorConfig::default().retry_score_threshold)
        .detection(&img)
        .expect("detect");
    assert!(retried.retry);
    assert_eq!(retried.faces, normal.faces, "same face, same landmarks");
    assert!(strict(None).detect(&img).expect("detect").is_empty());
}

/// Flip averaging is the normalised mean of SFace on the aligned crop and on its mirror;
/// a mirrored photo still gives the same person.
#[test]
fn flip_average_is_the_mean_of_the_crop_and_its_mirror() {
    for name in ["obama.jpg", "biden.jpg"] {
        let img = load(name);
        let face = pipeline().detect(&img).expect("detect")[0];
        let aligned = blindface::vision::align_face(&img, &face.landmarks).expect("align");
        let direct = pipeline().embed_aligned(&aligned).expect("embed");
        let mirror = pipeline()
            .embed_aligned(&image::imageops::flip_horizontal(&aligned))
            .expect("embed");
        let flip = pipeline().embed(&img, &face).expect("embed");
        assert_eq!(flip, direct.averaged_with(&mirror), "{name}");
        assert_eq!(single_pipeline().embed(&img, &face).expect("embed"), direct);
        println!(
            "{name}: crop vs mirror cosine {:.4}; flip-average vs single {:.4}",
            direct.cosine(&mirror),
            flip.cosine(&direct)
        );
        assert!(flip.cosine(&direct) > direct.cosine(&mirror));

        let mirrored = image::imageops::flip_horizontal(&img);
        let (_, m) = pipeline().embed_largest(&mirrored).expect("embed");
        println!("{name}: mirrored photo cosine {:.4}", flip.cosine(&m));
        assert!(flip.l2(&m) < 0.5, "{name}: {}", flip.l2(&m));
    }
}

/// In the two-men photo the largest face and the one nearest the centre are both men;
/// the child at the bottom right is picked by neither rule.
#[test]
fn face_choice_rules_on_the_group_photo() {
    let img = load("obama_and_biden.jpg");
    let faces = pipeline().detect(&img).expect("detect");
    let (w, h) = img.dimensions();
    let largest = FaceChoice::Largest.pick(&faces, w, h).expect("faces");
    assert_eq!(largest, 0, "detect sorts largest first");
    let central = FaceChoice::Central.pick(&faces, w, h).expect("faces");
    assert_ne!(central, 2, "not the child (the smallest face)");
    let (face, _) = pipeline()
        .embed_chosen(&img, FaceChoice::Central)
        .expect("embed");
    assert_eq!(face, faces[central]);
    assert!(matches!(
        pipeline().embed_chosen(&RgbImage::new(64, 64), FaceChoice::Central),
        Err(VisionError::NoFace)
    ));
}

#[test]
fn landmarks_lie_in_their_boxes_with_the_right_eye_on_the_image_left() {
    let names = OBAMA
        .iter()
        .chain(BIDEN)
        .chain(["obama_and_biden.jpg"].iter());
    for name in names {
        let img = load(name);
        for face in pipeline().detect(&img).expect("detect") {
            let [x, y, w, h] = face.bbox;
            assert!(w > 10.0 && h > 10.0, "{name}: tiny box {:?}", face.bbox);
            assert!(
                (0.9..=1.0).contains(&face.score),
                "{name}: score {}",
                face.score
            );
            for (i, [lx, ly]) in face.landmarks.iter().enumerate() {
                assert!(
                    (x..=x + w).contains(lx) && (y..=y + h).contains(ly),
                    "{name}: landmark {i} ({lx}, {ly}) outside {:?}",
                    face.bbox
                );
            }
            let [re, le, nose, rm, lm] = face.landmarks;
            assert!(re[0] < le[0], "{name}: right eye not left of left eye");
            assert!(
                rm[0] < lm[0],
                "{name}: right mouth corner not left of left one"
            );
            assert!(
                re[1] < nose[1] && le[1] < nose[1],
                "{name}: eyes below the nose"
            );
            assert!(
                nose[1] < rm[1] && nose[1] < lm[1],
                "{name}: nose below the mouth"
            );
        }
    }
}

#[test]
fn same_image_same_embedding_and_scale_invariance() {
    let img = load("obama.jpg");
    let (f1, e1) = pipeline().embed_largest(&img).expect("embed");
    let (f2, e2) = pipeline().embed_largest(&img).expect("embed");
    assert_eq!(f1, f2);
    assert_eq!(e1, e2);
    let norm: f32 = e1.as_slice().iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);

    // The letterbox puts every image at YuNet's 640 scale: doubling the resolution
    // barely moves the embedding.
    let big = image::imageops::resize(
        &img,
        img.width() * 2,
        img.height() * 2,
        image::imageops::FilterType::Triangle,
    );
    let (fb, eb) = pipeline().embed_largest(&big).expect("embed");
    let cos = e1.cosine(&eb);
    println!(
        "2x upscaled: cosine {cos:.4}, box {:?} vs {:?}",
        fb.bbox, f1.bbox
    );
    assert!(cos > 0.97, "cosine {cos}");
    assert!((fb.bbox[0] / 2.0 - f1.bbox[0]).abs() < 4.0);
}

/// A close-up: the face fills most of the frame (over 300 px at YuNet's scale).
#[test]
fn close_up_found_by_the_second_pass() {
    let img = load("obama.jpg");
    let face = pipeline().detect(&img).expect("detect")[0];
    let [x, y, w, h] = face.bbox;
    let (cx, cy, side) = (x + w / 2.0, y + h / 2.0, w.max(h) * 0.95);
    let crop = image::imageops::crop_imm(
        &img,
        (cx - side / 2.0).max(0.0) as u32,
        (cy - side / 2.0).max(0.0) as u32,
        side as u32,
        side as u32,
    )
    .to_image();
    let crop = image::imageops::resize(&crop, 640, 640, image::imageops::FilterType::Triangle);

    let faces = pipeline().detect(&crop).expect("detect");
    assert_eq!(faces.len(), 1, "{faces:?}");
    assert!(faces[0].bbox[2] > 400.0, "box {:?}", faces[0].bbox);
    let e = pipeline().embed(&crop, &faces[0]).expect("embed");
    let reference = embed("obama.jpg").1;
    println!(
        "close-up box {:?}, cosine to obama.jpg {:.4}",
        faces[0].bbox,
        e.cosine(&reference)
    );
    assert!(e.l2(&reference) < 0.5);

    let single = FacePipeline::load_with(
        &models_dir(),
        PipelineOptions {
            intra_threads: 0,
            detector: DetectorConfig {
                close_up_pass: false,
                retry_score_threshold: None,
                ..DetectorConfig::default()
            },
            ..PipelineOptions::default()
        },
    )
    .expect("load");
    // Measured: the normal-scale pass alone misses this face at score 0.9 (it does find it
    // once the face is below ~400 px)...
    let first_pass_only = single.detect(&crop).expect("detect");
    assert!(first_pass_only.is_empty(), "{first_pass_only:?}");
    // ... and finds it at 0.84 with the no-face retry, which says so.
    let mut with_retry = single;
    with_retry.set_detector_config(DetectorConfig {
        close_up_pass: false,
        ..DetectorConfig::default()
    });
    let d = with_retry.detection(&crop).expect("detect");
    assert_eq!(d.faces.len(), 1, "{:?}", d.faces);
    assert!(d.retry && d.faces[0].score < 0.9);
}

// ---- EXIF orientation ----

/// A JPEG's bytes with an APP1 Exif segment holding only the orientation tag, right after SOI.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "not a JPEG");
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0"); // little-endian TIFF
    tiff.extend_from_slice(&8u32.to_le_bytes()); // IFD0 at offset 8
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // count
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn encode_jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
        .encode_image(img)
        .expect("encode");
    out
}

#[test]
fn exif_orientation_is_applied() {
    let upright = load("obama.jpg");
    let reference = pipeline().detect(&upright).expect("detect")[0];
    let dir = tempfile::tempdir().expect("tempdir");
    // (EXIF value, how the stored pixels relate to the upright picture)
    type Store = fn(&RgbImage) -> RgbImage;
    let cases: [(u16, Store); 3] = [
        (6, image::imageops::rotate270), // stored turned left; viewer turns right
        (8, image::imageops::rotate90),
        (3, image::imageops::rotate180),
    ];
    for (tag, store) in cases {
        let stored = store(&upright);
        let bytes = with_exif_orientation(&encode_jpeg(&stored), tag);
        let path = dir.path().join(format!("rotated-{tag}.jpg"));
        std::fs::write(&path, &bytes).expect("write");

        for loaded in [
            load_image(&path).expect("load"),
            load_image_from_bytes(&bytes).expect("load"),
        ] {
            assert_eq!(
                loaded.dimensions(),
                upright.dimensions(),
                "orientation {tag}"
            );
            let faces = pipeline().detect(&loaded).expect("detect");
            assert_eq!(faces.len(), 1, "orientation {tag}: {faces:?}");
            for (a, b) in faces[0].landmarks.iter().zip(&reference.landmarks) {
                let d = ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt();
                assert!(d < 4.0, "orientation {tag}: landmark moved {d} px");
            }
        }
    }
    // Without the tag the same stored pixels are sideways: YuNet sees no upright face
    // where the upright photo's face was.
    let sideways =
        load_image_from_bytes(&encode_jpeg(&image::imageops::rotate270(&upright))).expect("load");
    assert_eq!(sideways.width(), upright.height());
}

// ---- errors ----

#[test]
fn unreadable_and_corrupt_images_give_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = std::fs::read(fixture("obama.jpg")).expect("read");

    let missing = dir.path().join("nope.jpg");
    let err = load_image(&missing).expect_err("missing file");
    assert!(
        matches!(err, VisionError::ImageUnreadable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("nope.jpg"), "{err}");

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("corrupt.jpg", {
            let mut b = good[..20].to_vec();
            b.extend(std::iter::repeat_n(0x5Au8, 4000));
            b
        }),
        ("truncated.jpg", good[..600].to_vec()),
        ("cut-in-scan.jpg", good[..good.len() / 2].to_vec()),
        ("cut-before-eoi.jpg", good[..good.len() - 2].to_vec()),
        (
            "notes.txt",
            b"this is not an image, just some text\n".to_vec(),
        ),
        ("empty.png", Vec::new()),
        (
            "header-only.png",
            b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec(),
        ),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).expect("write");
        let err = load_image(&path).expect_err(name);
        println!("{name}: {err}");
        assert!(
            matches!(err, VisionError::ImageDecode { .. }),
            "{name}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(name) && msg.starts_with("corrupt or unsupported image"),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "one line: {msg}");
        assert!(load_image_from_bytes(&bytes).is_err(), "{name} from bytes");
    }
}

#[test]
fn missing_or_altered_models_give_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Only the detector: the recogniser is missing.
    std::fs::copy(
        models_dir().join("face_detection_yunet_2023mar.onnx"),
        dir.path().join("face_detection_yunet_2023mar.onnx"),
    )
    .expect("copy");
    let err = FacePipeline::load(dir.path()).expect_err("missing model");
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, VisionError::ModelMissing { .. }), "{err:?}");
    assert!(msg.contains("face_recognition_sface_2021dec.onnx"), "{msg}");
    assert!(msg.contains("git checkout models/"), "{msg}");

    // A recogniser with one byte changed: checksum mismatch.
    let mut bytes =
        std::fs::read(models_dir().join("face_recognition_sface_2021dec.onnx")).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(
        dir.path().join("face_recognition_sface_2021dec.onnx"),
        &bytes,
    )
    .expect("write");
    let err = FacePipeline::load(dir.path()).expect_err("corrupt model");
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, VisionError::ModelCorrupt { .. }), "{err:?}");
    assert!(
        msg.contains("face_recognition_sface_2021dec.onnx") && msg.contains("SHA-256"),
        "{msg}"
    );
    assert!(msg.contains("git checkout models/"), "{msg}");

    // A truncated detector.
    std::fs::write(
        dir.path().join("face_detection_yunet_2023mar.onnx"),
        b"onnx?",
    )
    .expect("write");
    let err = FacePipeline::load(dir.path()).expect_err("truncated model");
    assert!(matches!(err, VisionError::ModelCorrupt { .. }), "{err:?}");
    assert!(err
        .to_string()
        .contains("face_detection_yunet_2023mar.onnx"));
}

#[test]
fn invalid_face_is_an_error_not_a_panic() {
    let img = load("obama.jpg");
    let bad = Face {
        score: 1.0,
        bbox: [0.0, 0.0, 10.0, 10.0],
        landmarks: [[f32::NAN, 0.0]; 5],
    };
    assert!(matches!(
        pipeline().embed(&img, &bad),
        Err(VisionError::InvalidFace(_))
    ));
    // Landmarks far outside the image align to an all-black crop but still embed.
    let outside = Face {
        landmarks: [
            [-5000.0, -5000.0],
            [-4900.0, -5000.0],
            [-4950.0, -4950.0],
            [-4990.0, -4900.0],
            [-4910.0, -4900.0],
        ],
        ..bad
    };
    assert!(pipeline().embed(&img, &outside).is_ok());
}

/// Helper run in a child process by `missing_onnx_runtime_is_a_clear_error`.
#[test]
#[ignore = "run by missing_onnx_runtime_is_a_clear_error in a child process"]
fn child_load_without_runtime() {
    let err = FacePipeline::load_default().expect_err("ONNX Runtime should be missing");
    println!("CHILD-ERROR: {err}");
}

#[test]
fn missing_onnx_runtime_is_a_clear_error() {
    let exe = std::env::current_exe().expect("test binary");
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("libonnxruntime.so.1.31.1");
    std::fs::write(&garbage, b"not a shared library").expect("write");
    for (dylib, expect) in [
        (dir.path().join("absent.so"), "ONNX Runtime not found"),
        (garbage, "cannot load ONNX Runtime"),
    ] {
        let out = std::process::Command::new(&exe)
            .args([
                "--exact",
                "child_load_without_runtime",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ORT_DYLIB_PATH", &dylib)
            .output()
            .expect("run child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed (panic?):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("CHILD-ERROR: ").map(|(_, msg)| msg))
            .unwrap_or_else(|| panic!("no error line in:\n{stdout}"));
        println!("{line}");
        assert!(line.contains(expect), "{line}");
        assert!(
            line.contains("ORT_DYLIB_PATH") && line.contains("onnxruntime==1.31.1"),
            "{line}"
        );
    }
}

// ---- parity with OpenCV ----

#[derive(serde::Deserialize)]
struct Reference {
    images: std::collections::HashMap<String, RefImage>,
}

#[derive(serde::Deserialize)]
struct RefImage {
    #[serde(rename = "box")]
    bbox: [f32; 4],
    landmarks: [[f32; 2]; 5],
    embedding: Vec<f32>,
}

#[test]
fn embeddings_match_opencv() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/opencv_reference.json");
    let text = std::fs::read_to_string(&path).expect("reference json");
    let reference: Reference = serde_json::from_str(&text).expect("parse reference json");
    assert!(reference.images.len() >= 2);
    for (name, r) in &reference.images {
        // OpenCV embeds the crop once: compare the single-run mode.
        let (face, ours) = single_pipeline()
            .embed_largest(&load(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let theirs = Embedding::from_raw(&r.embedding).expect("128 values");
        let cos = ours.cosine(&theirs);
        let lm_err = face
            .landmarks
            .iter()
            .zip(&r.landmarks)
            .map(|(a, b)| ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt())
            .fold(0.0f32, f32::max);
        println!("{name}: cosine to OpenCV {cos:.5}, worst landmark offset {lm_err:.2} px, box {:?} vs {:?}", face.bbox, r.bbox);
        assert!(cos >= 0.995, "{name}: cosine {cos} to OpenCV's embedding");
        assert!(lm_err < 3.0, "{name}: landmarks {lm_err} px from OpenCV's");
    }
}

#[test]
fn threads_option_gives_the_same_result() {
    let one = FacePipeline::load_with(
        &models_dir(),
        PipelineOptions {
            intra_threads: 1,
            ..PipelineOptions::default()
        },
    )
    .expect("load");
    let img = load("obama2.jpg");
    let (f1, e1) = one.embed_largest(&img).expect("embed");
    let (f2, e2) = pipeline().embed_largest(&img).expect("embed");
    assert!((f1.score - f2.score).abs() < 1e-4);
    assert!(e1.cosine(&e2) > 0.9999);
}

// ---- the close-up pass, run only when it can find a face the first pass missed ----

use blindface::vision::{CloseUpPass, Detection};

fn always_pipeline() -> &'static FacePipeline {
    static PIPELINE: OnceLock<FacePipeline> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        let options = PipelineOptions {
            detector: DetectorConfig::default().with_close_up(CloseUpPass::Always),
            ..PipelineOptions::default()
        };
        FacePipeline::load_with(&models_dir(), options).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// The default detection (close-up pass when it can find more) of `img`, checked to give
/// exactly the faces (boxes, scores, landmarks) and retry flag of the close-up pass run
/// every time.
fn same_as_always(what: &str, img: &RgbImage) -> Detection {
    assert_eq!(
        pipeline().options().detector.close_up_mode(),
        CloseUpPass::WhenItCanFindMore,
        "the default"
    );
    let adaptive = pipeline().detection(img).expect("detect");
    let always = always_pipeline().detection(img).expect("detect");
    assert!(always.close_up_ran);
    assert_eq!(adaptive.faces, always.faces, "{what}");
    assert_eq!(adaptive.retry, always.retry, "{what}");
    adaptive
}

/// A 640x480 frame of `img` around `centre`, at `k` source pixels per frame pixel (black
/// where the frame reaches past the photo).
fn frame_around(img: &RgbImage, centre: (f32, f32), k: f32) -> RgbImage {
    let (x0, y0) = (centre.0 - 320.0 * k, centre.1 - 240.0 * k);
    let (ix0, iy0) = (x0.max(0.0), y0.max(0.0));
    let ix1 = (x0 + 640.0 * k).min(img.width() as f32);
    let iy1 = (y0 + 480.0 * k).min(img.height() as f32);
    let crop = image::imageops::crop_imm(
        img,
        ix0 as u32,
        iy0 as u32,
        (ix1 - ix0) as u32,
        (iy1 - iy0) as u32,
    )
    .to_image();
    let part = image::imageops::resize(
        &crop,
        (((ix1 - ix0) / k).round() as u32).clamp(1, 640),
        (((iy1 - iy0) / k).round() as u32).clamp(1, 480),
        image::imageops::FilterType::Triangle,
    );
    let mut frame = RgbImage::new(640, 480);
    image::imageops::overlay(
        &mut frame,
        &part,
        ((ix0 - x0) / k).round() as i64,
        ((iy0 - y0) / k).round() as i64,
    );
    frame
}

/// A 640x480 frame with the largest face of fixture `name` in the middle, `width` px wide.
fn face_frame(name: &str, width: f32) -> RgbImage {
    let img = load(name);
    let [x, y, w, h] = pipeline().detect(&img).expect("detect")[0].bbox;
    frame_around(&img, (x + w / 2.0, y + h / 2.0), w / width)
}

/// The frame of `benches/live.rs`: Obama, Biden and a child, faces 70 to 90 px wide.
fn three_face_frame() -> RgbImage {
    let group_photo = load("obama_and_biden.jpg");
    let crop = image::imageops::crop_imm(&group_photo, 600, 250, 1300, 975).to_image();
    image::imageops::resize(&crop, 640, 480, image::imageops::FilterType::Triangle)
}

#[test]
fn close_up_rule_gives_the_same_faces_as_always_on_every_fixture_photo() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faces");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jpg"))
        .collect();
    names.sort();
    assert!(names.len() >= 9, "{names:?}");
    let mut skipped = 0;
    for name in &names {
        let img = load(name);
        let d = same_as_always(name, &img);
        // The same photo as a 640x480 camera frame around its largest face, at three
        // distances from the camera.
        let mut frames = 0;
        if let Some(face) = d.faces.first() {
            for width in [120.0, 200.0, 300.0] {
                frames += 1;
                let [x, y, w, h] = face.bbox;
                let frame = frame_around(&img, (x + w / 2.0, y + h / 2.0), w / width);
                let f = same_as_always(&format!("{name}, face {width} px wide"), &frame);
                skipped += !f.close_up_ran as usize;
            }
        }
        println!(
            "{name}: {} face(s), close-up pass {}; {frames} camera frames",
            d.faces.len(),
            if d.close_up_ran { "ran" } else { "skipped" }
        );
        skipped += !d.close_up_ran as usize;
    }
    let d = same_as_always("three faces", &three_face_frame());
    assert_eq!(d.faces.len(), 3);
    println!("close-up pass skipped on {skipped} images");
    assert!(skipped > 0, "the rule never skipped the pass");
}

/// The same check on LFW View 1 images (one in 20), when the data set is next to the
/// project (`../shared/datasets/lfw-view1/images`, read in place); skipped otherwise.
#[test]
fn close_up_rule_gives_the_same_faces_as_always_on_lfw_images_if_present() {
    let lfw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/lfw-view1/images");
    let Ok(entries) = std::fs::read_dir(&lfw) else {
        println!("skipped: no LFW images at {}", lfw.display());
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    let (mut checked, mut skipped, mut faces) = (0, 0, 0);
    for path in paths.iter().step_by(20) {
        let Ok(img) = load_image(path) else { continue };
        let d = same_as_always(&path.display().to_string(), &img);
        checked += 1;
        skipped += !d.close_up_ran as usize;
        faces += d.faces.len();
    }
    println!("LFW: {checked} images, {faces} faces, close-up pass skipped on {skipped}");
    assert!(checked > 0 || paths.is_empty());
}

/// A close-up the first pass misses, beside a small face it finds: the free part of the
/// frame can hold a close-up, so the pass runs and finds it.
#[test]
fn a_close_up_beside_a_small_face_is_still_found() {
    // Obama's face 420 px wide, in the right part of the frame...
    let mut frame = face_frame("obama.jpg", 420.0);
    let close_up = image::imageops::crop_imm(&frame, 140, 0, 500, 480).to_image();
    frame = RgbImage::from_pixel(640, 480, Rgb([90, 90, 90]));
    image::imageops::overlay(&mut frame, &close_up, 140, 0);
    // ... and Biden's 80 px wide at the top left.
    let small = face_frame("biden.jpg", 80.0);
    let small = image::imageops::crop_imm(&small, 240, 160, 160, 160).to_image();
    image::imageops::overlay(&mut frame, &small, 0, 20);

    let first_pass_only = FacePipeline::load_with(
        &models_dir(),
        PipelineOptions {
            detector: DetectorConfig::default().with_close_up(CloseUpPass::Never),
            ..PipelineOptions::default()
        },
    )
    .expect("load")
    .detection(&frame)
    .expect("detect");
    assert_eq!(
        first_pass_only.faces.len(),
        1,
        "{:?}",
        first_pass_only.faces
    );
    assert!(
        first_pass_only.faces[0].bbox[2] < 150.0,
        "only the small face"
    );
    assert!(!first_pass_only.close_up_ran);

    let d = same_as_always("close-up beside a small face", &frame);
    assert!(d.close_up_ran);
    assert_eq!(d.faces.len(), 2, "{:?}", d.faces);
    assert!(d.faces[0].bbox[2] > 300.0, "the close-up, largest first");
    let e = pipeline().embed(&frame, &d.faces[0]).expect("embed");
    assert!(
        e.l2(&embed("obama.jpg").1) < SFACE_L2_THRESHOLD,
        "it is Obama"
    );
    println!(
        "close-up {:?}, small face {:?}",
        d.faces[0].bbox, d.faces[1].bbox
    );
}

/// A fixture face upscaled until it fills the frame: the first pass finds nothing, so the
/// close-up pass runs and finds it.
#[test]
fn a_face_filling_the_frame_is_found() {
    for name in ["obama.jpg", "biden.jpg", "obama2.jpg"] {
        let frame = face_frame(name, 560.0);
        let d = same_as_always(name, &frame);
        assert!(d.close_up_ran);
        assert_eq!(d.faces.len(), 1, "{name}: {:?}", d.faces);
        assert!(d.faces[0].bbox[2] > 400.0, "{name}: {:?}", d.faces[0].bbox);
        println!("{name}: face filling the frame, box {:?}", d.faces[0].bbox);
    }
}

/// Where the rule skips and where it does not: one face 300 px wide in the middle of a
/// 640x480 frame leaves no 192x256 gap (skipped); three small faces leave room for a
/// close-up at the right (run); a frame without a face always runs it.
#[test]
fn close_up_pass_is_skipped_only_where_no_close_up_fits() {
    let near = same_as_always("one face 300 px wide", &face_frame("obama.jpg", 300.0));
    assert_eq!(near.faces.len(), 1);
    assert!(!near.close_up_ran);
    let three = same_as_always("three faces", &three_face_frame());
    assert_eq!(three.faces.len(), 3);
    assert!(three.close_up_ran);
    let blank = same_as_always("blank", &RgbImage::from_pixel(640, 480, Rgb([128; 3])));
    assert!(blank.faces.is_empty() && blank.close_up_ran);
    let never = FacePipeline::load_with(
        &models_dir(),
        PipelineOptions {
            detector: DetectorConfig {
                close_up_pass: false,
                ..DetectorConfig::default()
            },
            ..PipelineOptions::default()
        },
    )
    .expect("load");
    assert!(
        !never
            .detection(&three_face_frame())
            .expect("detect")
            .close_up_ran
    );
}
