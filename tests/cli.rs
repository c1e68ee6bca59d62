//! The `blindface` binary end to end on the fixture photos: detect, compare (float and
//! encrypted), keygen, eval, and clear one-line errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn faces() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faces")
}

fn run(args: &[&str], key_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blindface"))
        .args(args)
        .arg("--key")
        .arg(key_dir.join("secret.key"))
        .output()
        .expect("binary runs")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn face(name: &str) -> String {
    faces().join(name).display().to_string()
}

/// `blindface eval` on the fixture pairs with `extra` arguments.
fn eval_fixture_pairs(extra: &[&str], key_dir: &Path) -> Output {
    let pairs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pairs.csv");
    let mut args = vec![
        "eval".to_string(),
        "--pairs".into(),
        pairs.display().to_string(),
        "--images".into(),
        faces().display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args, key_dir)
}

#[test]
fn compare_gives_float_and_exact_encrypted_distances() {
    let tmp = tempfile::tempdir().unwrap();
    let same = json(&run(
        &["compare", &face("obama.jpg"), &face("obama2.jpg"), "--json"],
        tmp.path(),
    ));
    assert_eq!(same["same_person"], true);
    let l2 = same["l2"].as_f64().unwrap();
    assert!((0.5..0.9).contains(&l2), "Obama pair L2 {l2}");
    let cos = same["cosine"].as_f64().unwrap();
    assert!(
        (1.0 - l2 * l2 / 2.0 - cos).abs() < 1e-3,
        "cosine and L2 of unit vectors agree"
    );
    assert_eq!(same["encrypted_equals_quantised"], true);
    assert_eq!(same["distance_sq_encrypted"], same["distance_sq_quantised"]);
    let l2e = same["l2_encrypted"].as_f64().unwrap();
    assert!(
        (l2e - l2).abs() < 0.03,
        "quantisation moves L2 by {}",
        (l2e - l2).abs()
    );

    let diff = json(&run(
        &["compare", &face("obama.jpg"), &face("biden.jpg"), "--json"],
        tmp.path(),
    ));
    assert_eq!(diff["same_person"], false);
    assert!(diff["l2_encrypted"].as_f64().unwrap() > 1.128);
    assert_eq!(diff["encrypted_equals_quantised"], true);

    // The readable form says the verdict.
    let out = run(
        &["compare", &face("obama.jpg"), &face("obama2.jpg")],
        tmp.path(),
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("same person"));

    // A threshold below the genuine distance flips the verdict.
    let strict = json(&run(
        &[
            "compare",
            &face("obama.jpg"),
            &face("obama2.jpg"),
            "--json",
            "--threshold",
            "0.3",
        ],
        tmp.path(),
    ));
    assert_eq!(strict["same_person"], false);
}

#[test]
fn detect_reports_faces_and_bad_input_gets_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    // Biden, Obama and a partly shadowed child (OpenCV's YuNet finds the same three).
    let three = json(&run(
        &["detect", &face("obama_and_biden.jpg"), "--json"],
        tmp.path(),
    ));
    assert_eq!(three["faces"].as_array().unwrap().len(), 3);
    assert_eq!(three["retry"], false, "all three reach the score threshold");
    for f in three["faces"].as_array().unwrap() {
        assert_eq!(f["landmarks"].as_array().unwrap().len(), 5);
        assert_eq!(f["box"].as_array().unwrap().len(), 4);
        assert!(f["score"].as_f64().unwrap() >= 0.9);
    }

    let blank = tmp.path().join("blank.png");
    image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]))
        .save(&blank)
        .unwrap();
    let out = run(&["detect", blank.to_str().unwrap()], tmp.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no face"), "{}", stderr(&out));
    assert!(stderr(&out).contains("blank.png"));
    let out = run(
        &["compare", blank.to_str().unwrap(), &face("obama.jpg")],
        tmp.path(),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no face found in") && stderr(&out).contains("blank.png"));

    let bytes = std::fs::read(faces().join("obama.jpg")).unwrap();
    let truncated = tmp.path().join("truncated.jpg");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let text = tmp.path().join("notes.jpg");
    std::fs::write(&text, "this is not an image").unwrap();
    let missing = tmp.path().join("missing.jpg");
    for bad in [&truncated, &text, &missing] {
        let out = run(
            &["compare", bad.to_str().unwrap(), &face("obama.jpg")],
            tmp.path(),
        );
        assert!(!out.status.success(), "{}", bad.display());
        let err = stderr(&out);
        assert!(err.starts_with("error: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.contains(bad.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
    }
}

#[test]
fn keygen_creates_a_key_and_refuses_to_overwrite_it() {
    let tmp = tempfile::tempdir().unwrap();
    let first = json(&run(&["keygen", "--json"], tmp.path()));
    let fp = first["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(fp.len(), 19);
    let again = run(&["keygen"], tmp.path());
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    // compare now uses this key.
    let c = json(&run(
        &["compare", &face("obama.jpg"), &face("obama3.jpg"), "--json"],
        tmp.path(),
    ));
    assert!(c["key"].as_str().unwrap().ends_with("secret.key"));
    let replaced = json(&run(&["keygen", "--force", "--json"], tmp.path()));
    assert_ne!(replaced["fingerprint"].as_str().unwrap(), fp);
    // A corrupt key file is a clear error, not a panic.
    std::fs::write(tmp.path().join("secret.key"), b"garbage").unwrap();
    let out = run(
        &["compare", &face("obama.jpg"), &face("obama3.jpg")],
        tmp.path(),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("secret key"), "{}", stderr(&out));
}

#[test]
fn eval_on_the_fixtures_is_exact_and_every_decision_is_right() {
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report");
    let out = eval_fixture_pairs(
        &["--report", report.to_str().unwrap(), "--json"],
        tmp.path(),
    );
    let v = json(&out);
    assert_eq!(v["pairs"], 21);
    assert_eq!(v["genuine"], 11);
    assert_eq!(v["impostor"], 10);
    assert_eq!(v["no_face"], 0);
    assert_eq!(v["accuracy_float"], 1.0);
    assert_eq!(v["accuracy_quantised"], 1.0);
    assert_eq!(v["accuracy_encrypted"], 1.0);
    assert_eq!(v["decisions_differ_float_vs_encrypted"], 0);
    assert_eq!(v["decisions_differ_quantised_vs_encrypted"], 0);
    assert_eq!(v["encrypted_equals_quantised"], true);
    assert_eq!(v["best_accuracy"], 1.0);
    assert_eq!(v["eer"], 0.0);
    assert!(
        v["tar_at_far_1e2"].is_null(),
        "10 impostors are too few to say"
    );
    assert_eq!(v["pairs_no_face"], 0);
    for key in ["float", "quantised", "encrypted"] {
        for part in ["all_pairs", "scored"] {
            assert_eq!(v[key][part]["accuracy"], 1.0);
            assert_eq!(v[key][part]["tar"], 1.0);
            assert_eq!(v[key][part]["far"], 0.0);
        }
    }
    let csv = std::fs::read_to_string(report.join("pairs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 22, "header + 21 pairs");
    for png in ["roc.png", "histogram.png"] {
        let img = image::open(report.join(png)).unwrap().to_rgb8();
        let first = *img.get_pixel(0, 0);
        assert!(img.pixels().any(|p| *p != first), "{png} has content");
    }
}

#[test]
fn eval_errors_name_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "file_x,file_y,Decision\nobama.jpg,obama2.jpg,Yes\nobama.jpg,nobody.jpg,No\n",
            "line 3",
            "nobody.jpg",
        ),
        (
            "file_x,file_y,Decision\nobama.jpg,obama2.jpg,Yes\nobama.jpg\n",
            "line 3",
            "3 fields",
        ),
        (
            "file_x,file_y,Decision\nobama.jpg,obama2.jpg,Perhaps\n",
            "line 2",
            "Perhaps",
        ),
        (
            "a,b,c\nobama.jpg,obama2.jpg,Yes\n",
            "header",
            "file_x,file_y,Decision",
        ),
    ];
    for (text, line, detail) in cases {
        let pairs = tmp.path().join("pairs.csv");
        std::fs::write(&pairs, text).unwrap();
        let out = run(
            &[
                "eval",
                "--pairs",
                pairs.to_str().unwrap(),
                "--images",
                faces().to_str().unwrap(),
            ],
            tmp.path(),
        );
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(line) && err.contains(detail), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn eval_calibration_counts_every_pair_and_json_output_stays_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let calibration = tmp.path().join("cal/calibration.json");
    let out = eval_fixture_pairs(
        &[
            "--calibrate",
            calibration.to_str().unwrap(),
            "--face",
            "central",
            "--json",
        ],
        tmp.path(),
    );
    let v = json(&out);
    // Not a terminal: no progress bar, nothing on stderr.
    assert_eq!(stderr(&out), "");
    assert_eq!(v["settings"]["face"], "central");
    assert_eq!(v["pairs_no_face"], 0);
    assert_eq!(
        v["accuracy_encrypted"],
        v["encrypted"]["all_pairs"]["accuracy"]
    );
    let text = std::fs::read_to_string(&calibration).unwrap();
    let c = blindface::calibration::Calibration::from_json(&text).expect("valid calibration");
    assert_eq!(
        (c.pairs, c.genuine, c.impostor, c.no_face_pairs),
        (21, 11, 10, 0)
    );
    assert!(c.command.contains("--calibrate"), "{}", c.command);
    assert!(c
        .points
        .windows(2)
        .all(|w| w[0].threshold < w[1].threshold && w[0].far <= w[1].far && w[0].tar <= w[1].tar));
    // At the run's threshold the calibration says what eval's encrypted decisions were.
    let at = c.at_threshold(v["threshold"].as_f64().unwrap() as f32);
    assert_eq!(at.tar, v["encrypted"]["all_pairs"]["tar"].as_f64().unwrap());
    assert_eq!(at.far, v["encrypted"]["all_pairs"]["far"].as_f64().unwrap());
    let last = c.points.last().unwrap();
    assert_eq!((last.genuine_accepted, last.impostor_accepted), (11, 10));
}

/// Identification on the fixture photos: Obama (6 photos, flat `Name_NNNN.jpg` names),
/// Biden (2 photos, in a subfolder) and a stranger (the child cropped from
/// obama_and_biden.jpg, one photo). Worked by hand: Obama is enrolled with
/// Barack_Obama_0001 (obama.jpg) and Biden with biden/a.jpg (biden.jpg); the 5 other
/// Obama photos and biden2.jpg are mated searches, all nearer their own template (L2 at
/// most 0.95) than the other man's (at least 1.15, tests/vision.rs), so rank-1 is 6 of 6
/// and every mate is within 1.128; the child matches neither, so no stranger is accepted;
/// one stranger is too few for FNIR at FPIR 1%.
#[test]
fn eval_identify_on_the_fixture_photos() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("people");
    std::fs::create_dir_all(dir.join("biden")).unwrap();
    std::fs::create_dir_all(dir.join("stranger")).unwrap();
    let obama = [
        "obama.jpg",
        "obama2.jpg",
        "obama3.jpg",
        "obama4.jpg",
        "obama-240p.jpg",
        "obama_partial_face.jpg",
    ];
    for (i, f) in obama.iter().enumerate() {
        std::fs::copy(
            faces().join(f),
            dir.join(format!("Barack_Obama_{:04}.jpg", i + 1)),
        )
        .unwrap();
    }
    std::fs::copy(faces().join("biden.jpg"), dir.join("biden/a.jpg")).unwrap();
    std::fs::copy(faces().join("biden2.jpg"), dir.join("biden/b.jpg")).unwrap();
    // The child: the smallest face of the group photo, with a margin of half its size.
    let group = json(&run(
        &["detect", &face("obama_and_biden.jpg"), "--json"],
        tmp.path(),
    ));
    let child = group["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            f["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect::<Vec<_>>()
        })
        .min_by(|a, b| (a[2] * a[3]).total_cmp(&(b[2] * b[3])))
        .unwrap();
    let img = image::open(faces().join("obama_and_biden.jpg"))
        .unwrap()
        .to_rgb8();
    let (x0, y0) = (
        (child[0] - child[2] / 2.0).max(0.0),
        (child[1] - child[3] / 2.0).max(0.0),
    );
    let x1 = (child[0] + child[2] * 1.5).min(img.width() as f64);
    let y1 = (child[1] + child[3] * 1.5).min(img.height() as f64);
    image::imageops::crop_imm(
        &img,
        x0 as u32,
        y0 as u32,
        (x1 - x0) as u32,
        (y1 - y0) as u32,
    )
    .to_image()
    .save(dir.join("stranger/child.jpg"))
    .unwrap();

    let out = run(
        &["eval", "--identify", dir.to_str().unwrap(), "--json"],
        tmp.path(),
    );
    let v = json(&out);
    assert_eq!(stderr(&out), "");
    assert_eq!(v["images"], 9);
    assert_eq!(v["identities"], 3);
    assert_eq!(v["enrolled"], 2);
    assert_eq!(v["strangers"], 1);
    assert_eq!(v["no_face"], 0);
    assert_eq!(v["mated_searches"], 6);
    assert_eq!(v["stranger_searches"], 1);
    assert_eq!(v["rank1_hits"], 6);
    assert_eq!(v["rank1_accuracy"], 1.0);
    assert_eq!(v["fnir_at_threshold"], 0.0);
    assert_eq!(v["misidentified_at_threshold"], 0);
    assert_eq!(v["strangers_accepted"], 0);
    assert_eq!(v["stranger_false_accept_rate"], 0.0);
    assert!(v["fnir_at_fpir_1e2"].is_null());
    assert_eq!(v["encrypted_equals_quantised"], true);
    assert_eq!(
        v["distances_checked"],
        7 * 2,
        "7 searches against 2 templates"
    );

    // A threshold below every mate's distance: rank-1 is unchanged, nobody is identified.
    let strict = json(&run(
        &[
            "eval",
            "--identify",
            dir.to_str().unwrap(),
            "--json",
            "--threshold",
            "0.2",
        ],
        tmp.path(),
    ));
    assert_eq!(strict["rank1_hits"], 6);
    assert_eq!(strict["fnir_at_threshold"], 1.0);

    // A folder whose flat file names carry no identity is a clear error.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(faces().join("obama.jpg"), bad.join("obama.jpg")).unwrap();
    let out = run(&["eval", "--identify", bad.to_str().unwrap()], tmp.path());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("obama.jpg") && stderr(&out).contains("Name_0001.jpg"),
        "{}",
        stderr(&out)
    );
}
