//! Command line: argument parsing (clap), dispatch, and the shared output conventions
//! (a readable table by default, one JSON object with `--json`, one-line errors with a
//! non-zero exit).

mod app;
mod bench;
mod doctor;
mod eval;
mod faces;
mod gallery;
mod keys;
mod live;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Serialize;

use blindface::client::Access;
use blindface::matcher::tls::Fingerprint;
use blindface::matcher::MatcherSpec;
use blindface::vision::SFACE_L2_THRESHOLD;

#[derive(Parser)]
#[command(
    name = "blindface",
    version,
    about = "Face verification and identification where the matcher is blind.",
    long_about = "Face verification and identification where the matcher is blind: faces are \
                  embedded locally, encrypted with TFHE, and matched without the matcher ever \
                  seeing a face, an embedding or a distance."
)]
pub struct Cli {
    /// Secret key file (default: the platform data directory).
    #[arg(long, global = true, value_name = "PATH")]
    key: Option<PathBuf>,
    /// Same-person threshold on the L2 distance of normalised embeddings.
    #[arg(long, global = true, default_value_t = SFACE_L2_THRESHOLD, value_name = "L2")]
    threshold: f32,
    /// Instead of --threshold: the false accept rate to operate at (e.g. 0.001), resolved
    /// through the shipped LFW View 1 DevTrain calibration.
    #[arg(long, global = true, value_name = "RATE", conflicts_with = "threshold")]
    far: Option<f64>,
    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Matcher: `builtin` (in-process, store under --data), `https://HOST:PORT` (a
    /// `blindface serve`), or `http://127.0.0.1:PORT` (loopback).
    #[arg(
        long,
        global = true,
        value_name = "builtin|URL",
        value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<MatcherSpec>())
    )]
    matcher: Option<MatcherSpec>,
    /// The SHA-256 fingerprint the server's certificate must have (as `blindface serve`
    /// prints it); replaces the one pinned on first use.
    #[arg(
        long,
        global = true,
        value_name = "SHA256",
        value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<Fingerprint>())
    )]
    fingerprint: Option<Fingerprint>,
    /// A one-time invitation code (from `blindface admin invite`) to register this key's
    /// gallery on an invite-only server.
    #[arg(long, global = true, value_name = "CODE")]
    invite: Option<String>,
    /// Allow plain HTTP beyond loopback (client) or serving it (`serve --plain-http`):
    /// tokens and ciphertexts then travel unprotected and anyone on the path can answer
    /// for the matcher, forcing any verdict.
    #[arg(long, global = true)]
    insecure_http: bool,
    /// Data directory of the matcher's store (default: the platform data directory;
    /// `serve` uses its `server` subdirectory).
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The app's source: an image or a folder of images (shown in turn) instead of the camera.
    #[arg(long, global = true, value_name = "PATH")]
    source: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Open the desktop app (also what `blindface` without a subcommand does).
    App {
        /// Start identifying the selected face of every new frame (continuous identify).
        #[arg(long, conflicts_with = "live")]
        identify: bool,
        /// Start in live mode: every face in view tracked and identified.
        #[arg(long)]
        live: bool,
    },
    /// Find faces in an image: box, score and 5 landmarks.
    Detect { image: PathBuf },
    /// Compare the largest face of two images: float cosine and L2, and the distance
    /// computed through encryption and decryption.
    Compare { image_a: PathBuf, image_b: PathBuf },
    /// Create the secret key (refuses to overwrite an existing one without --force).
    Keygen {
        #[arg(long)]
        force: bool,
    },
    /// Time and size the encrypted path on a synthetic gallery.
    Bench {
        /// Gallery size for the 1:N measurement.
        #[arg(long, default_value_t = 1000)]
        gallery: usize,
    },
    /// Enrol the face of IMAGE under NAME (the name is encrypted before it leaves). A photo
    /// with several faces needs --face N (the numbers `blindface detect` prints).
    Enrol {
        #[arg(long, required_unless_present = "folder")]
        name: Option<String>,
        #[arg(required_unless_present = "folder")]
        image: Option<PathBuf>,
        /// Which face (1 = largest), as `blindface detect` numbers them.
        #[arg(long, value_name = "N")]
        face: Option<usize>,
        /// Enrol everyone at once from a labelled folder (`Name_0001.jpg` files, like LFW,
        /// or `Name/` subfolders): each image with one face; the others are listed.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["name", "image", "face"])]
        folder: Option<PathBuf>,
    },
    /// Verify the largest face of IMAGE (or --face N) against the person enrolled as NAME
    /// (1:1).
    Verify {
        #[arg(long)]
        name: String,
        image: PathBuf,
        /// Which face (1 = largest), as `blindface detect` numbers them.
        #[arg(long, value_name = "N")]
        face: Option<usize>,
    },
    /// Identify the largest face of IMAGE (or --face N) against everyone enrolled (1:N).
    /// With --all-faces: every face of SOURCE (an image, a folder, or an MJPEG stream URL
    /// with --frames N), through the app's live path (tracking, scheduled matching).
    Identify {
        #[arg(value_name = "IMAGE|SOURCE")]
        image: PathBuf,
        /// Which face (1 = largest), as `blindface detect` numbers them.
        #[arg(long, value_name = "N", conflicts_with = "all_faces")]
        face: Option<usize>,
        /// Every face in view, per frame.
        #[arg(long)]
        all_faces: bool,
        /// Frames to read from a stream URL (with --all-faces).
        #[arg(long, value_name = "N", default_value_t = 10, requires = "all_faces")]
        frames: usize,
    },
    /// List enrolled people (names decrypted with your key).
    List,
    /// Remove every template enrolled as NAME.
    Remove {
        #[arg(long)]
        name: String,
    },
    /// Re-pack a gallery that removals left sparse: move templates out of the highest
    /// blocks into free slots of lower ones (your key re-encrypts them; the matcher still
    /// holds none), so matching and storage cost only the blocks needed.
    Repack,
    /// Run the remote matcher (HTTPS with a self-signed certificate, loopback by default;
    /// invite-only registration).
    Serve(server::ServeArgs),
    /// Operate a running server (--matcher URL): invitation codes, metrics.
    Admin {
        #[command(subcommand)]
        command: server::AdminCommand,
    },
    /// Where ONNX Runtime, the models, the key and the data directory were found, and what
    /// is missing.
    Doctor,
    /// Accuracy on labelled pairs (float, quantised and encrypted decisions side by side),
    /// or identification (1:N) on a labelled folder with --identify.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["pairs", "identify"])))]
    Eval {
        /// CSV with the header `file_x,file_y,Decision` (Yes/No, true/false, 1/0).
        #[arg(long, requires = "images")]
        pairs: Option<PathBuf>,
        /// Folder the file names in PAIRS are relative to.
        #[arg(long, requires = "pairs")]
        images: Option<PathBuf>,
        /// Identification instead: a folder of `Name_0001.jpg` files or `Name/` subfolders.
        /// Identities with 2+ images are enrolled with their first image (name order) and
        /// searched with the others; identities with one image are strangers.
        #[arg(long, value_name = "DIR", conflicts_with = "pairs")]
        identify: Option<PathBuf>,
        /// Also write pairs.csv, roc.png and histogram.png into this folder.
        #[arg(long, value_name = "DIR", requires = "pairs")]
        report: Option<PathBuf>,
        /// Also write FAR and TAR with counts over a fine threshold grid to this JSON file.
        #[arg(long, value_name = "FILE.json", requires = "pairs")]
        calibrate: Option<PathBuf>,
        /// Which face stands for an image: `largest` (the product's rule) or `central`
        /// (datasets cropped around the labelled face, like LFW).
        #[arg(long, default_value_t = blindface::vision::FaceChoice::Largest)]
        face: blindface::vision::FaceChoice,
        /// Embedding: `flip-average` (crop and mirror, the default) or `single`.
        #[arg(long, default_value_t = blindface::vision::EmbeddingMode::default())]
        embedding: blindface::vision::EmbeddingMode,
        /// Detection score threshold.
        #[arg(long, default_value_t = blindface::vision::DetectorConfig::default().score_threshold)]
        score_threshold: f32,
        /// Turn off the no-face retry (lower-score detection when nothing is found).
        #[arg(long)]
        no_retry: bool,
    },
}

/// Global options the subcommands read, parsed once.
pub struct Globals {
    pub key: PathBuf,
    pub threshold: f32,
    /// Whether --threshold was given (the app keeps its saved threshold otherwise).
    pub threshold_given: bool,
    pub json: bool,
    pub matcher: MatcherSpec,
    /// Whether --matcher was given (the app keeps its saved choice otherwise).
    pub matcher_given: bool,
    pub data: Option<PathBuf>,
    /// Pin, invitation code and plain-HTTP consent for a remote matcher.
    pub access: Access,
    /// What the threshold means (calibrated FAR and TAR), when it came from --far.
    pub operating_point: Option<String>,
}

/// The threshold for a false accept rate, and what it means, from the shipped calibration.
fn resolve_far(far: f64) -> anyhow::Result<(f32, String)> {
    let cal = blindface::calibration::Calibration::lfw_devtrain()?;
    let p = cal.threshold_for_far(far)?;
    Ok((
        p.threshold,
        format!(
            "--far {far}: threshold {:.3}, {} (LFW View 1 DevTrain)",
            p.threshold,
            p.describe()
        ),
    ))
}

pub fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let threshold_given =
        matches.value_source("threshold") == Some(clap::parser::ValueSource::CommandLine);
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let (threshold, operating_point) = match cli.far.map(resolve_far) {
        None => (cli.threshold, None),
        Some(Ok((t, p))) => (t, Some(p)),
        Some(Err(e)) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let globals = Globals {
        key: cli.key.unwrap_or_else(blindface::paths::default_key_path),
        threshold,
        threshold_given: threshold_given || operating_point.is_some(),
        operating_point,
        json: cli.json,
        matcher_given: cli.matcher.is_some(),
        matcher: cli.matcher.unwrap_or(MatcherSpec::Builtin),
        data: cli.data,
        access: Access {
            token: None,
            invite: cli.invite,
            fingerprint: cli.fingerprint,
            insecure_http: cli.insecure_http,
        },
    };
    let result = match cli.command {
        None => app::open(&globals, cli.source, app::Start::Idle),
        Some(Command::App { identify, live }) => app::open(
            &globals,
            cli.source,
            match (identify, live) {
                (_, true) => app::Start::Live,
                (true, _) => app::Start::Identify,
                _ => app::Start::Idle,
            },
        ),
        Some(Command::Detect { image }) => faces::detect(&globals, &image),
        Some(Command::Compare { image_a, image_b }) => faces::compare(&globals, &image_a, &image_b),
        Some(Command::Keygen { force }) => keys::keygen(&globals, force),
        Some(Command::Bench { gallery }) => bench::bench(&globals, gallery),
        Some(Command::Enrol {
            folder: Some(dir), ..
        }) => gallery::enrol_folder(&globals, &dir),
        Some(Command::Enrol {
            name: Some(name),
            image: Some(image),
            face,
            ..
        }) => gallery::enrol(&globals, &name, &image, face),
        Some(Command::Enrol { .. }) => {
            unreachable!("clap requires a name and an image, or --folder")
        }
        Some(Command::Verify { name, image, face }) => {
            gallery::verify(&globals, &name, &image, face)
        }
        Some(Command::Identify {
            image,
            all_faces: true,
            frames,
            ..
        }) => live::identify_all(&globals, &image.to_string_lossy(), frames),
        Some(Command::Identify { image, face, .. }) => gallery::identify(&globals, &image, face),
        Some(Command::List) => gallery::list(&globals),
        Some(Command::Remove { name }) => gallery::remove(&globals, &name),
        Some(Command::Repack) => gallery::repack(&globals),
        Some(Command::Serve(args)) => server::serve(&globals, args),
        Some(Command::Admin { command }) => server::admin(&globals, command),
        Some(Command::Doctor) => doctor::doctor(&globals),
        Some(Command::Eval {
            pairs,
            images,
            identify,
            report,
            calibrate,
            face,
            embedding,
            score_threshold,
            no_retry,
        }) => {
            let defaults = blindface::vision::DetectorConfig::default();
            let settings = eval::Settings {
                face,
                embedding,
                score_threshold,
                retry_score_threshold: if no_retry {
                    None
                } else {
                    defaults.retry_score_threshold
                },
                close_up_pass: defaults.close_up_pass,
            };
            match (pairs, images, identify) {
                (Some(pairs), Some(images), None) => eval::eval(
                    &globals,
                    &pairs,
                    &images,
                    &settings,
                    report.as_deref(),
                    calibrate.as_deref(),
                ),
                (None, None, Some(dir)) => eval::identify(&globals, &dir, &settings),
                _ => Err(anyhow::anyhow!(
                    "eval needs either --pairs FILE --images DIR, or --identify DIR"
                )),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints `value` as JSON, or `table` otherwise.
pub fn emit<T: Serialize>(globals: &Globals, value: &T, table: impl FnOnce() -> String) {
    if globals.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("output serializes")
        );
    } else {
        print!("{}", table());
    }
}
