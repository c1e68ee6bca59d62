//! Command line: argument parsing (clap; the client options are not `serve`'s) into
//! `Globals` and one `Command`, dispatch, and the exit status (one-line errors with exit
//! status 2 and the command or flag that deals with them (`hints`); `verify` exits 1 when
//! the face is not the person's). The output conventions the commands share are in
//! `output`.

mod app;
mod bench;
mod doctor;
mod eval;
mod faces;
mod gallery;
mod hints;
mod keys;
mod live;
mod output;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, Parser, Subcommand};

use blindface::client::Access;
use blindface::matcher::tls::Fingerprint;
use blindface::matcher::MatcherSpec;

use output::{Globals, Outcome, ThresholdChoice};

#[derive(Parser)]
#[command(
    name = "blindface",
    version,
    about = "Face verification and identification where the matcher is blind.",
    long_about = "Face verification and identification where the matcher is blind: faces are \
                  embedded locally, encrypted with TFHE, and matched without the matcher ever \
                  seeing a face, an embedding or a distance.",
    after_help = "Exit status: 0 success; 1 `verify` ran and the face is not the person's; \
                  2 an error (a one-line message on stderr)."
)]
pub struct Cli {
    #[command(flatten)]
    client: ClientArgs,
    /// Allow plain HTTP beyond loopback (client) or serving it (`serve --plain-http`):
    /// tokens and ciphertexts then travel unprotected and anyone on the path can answer
    /// for the matcher, forcing any verdict.
    #[arg(long, global = true)]
    insecure_http: bool,
    /// Data directory of the matcher's store (default: the platform data directory;
    /// `serve` uses its `server` subdirectory).
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// `--params VERSION`: the template parameter set a command makes and matches templates
/// with (`bench`, `eval`).
#[derive(Args, Clone, Copy)]
struct TemplateParams {
    /// Template parameters: 1 (128-D, 15 templates a block) or 2 (projected to 80-D, 25
    /// a block).
    #[arg(long = "params", value_name = "VERSION",
          default_value_t = blindface::he::PARAMS_VERSION, value_parser = known_params_version)]
    version: u16,
}

impl TemplateParams {
    fn get(self) -> blindface::he::Params {
        blindface::he::Params::of_version(self.version).expect("checked by the parser")
    }
}

/// A parameter version this build knows.
fn known_params_version(s: &str) -> Result<u16, String> {
    let known: Vec<String> = blindface::he::Params::known()
        .iter()
        .map(|p| p.version.to_string())
        .collect();
    s.parse::<u16>()
        .ok()
        .filter(|&v| blindface::he::Params::of_version(v).is_some())
        .ok_or_else(|| format!("expected one of {}", known.join(", ")))
}

/// The options of the app and every client command, not of `serve`: taken before the
/// subcommand (here, where they are not global) or after it (`command` adds them, global,
/// to every subcommand but `serve`).
#[derive(Args)]
struct ClientArgs {
    /// Secret key file (default: the platform data directory).
    #[arg(long, value_name = "PATH")]
    key: Option<PathBuf>,
    /// Same-person threshold on the L2 distance of normalised embeddings (default: the
    /// default of the key's templates, 1.128 for v1 and 1.158 for v2).
    #[arg(long, value_name = "L2")]
    threshold: Option<f32>,
    /// Instead of --threshold: the false accept rate to operate at (e.g. 0.001), resolved
    /// through the shipped LFW View 1 DevTrain calibration of the key's templates.
    #[arg(long, value_name = "RATE", conflicts_with = "threshold")]
    far: Option<f64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Matcher: `builtin` (in-process, store under --data), `https://HOST:PORT` (a
    /// `blindface serve`), or `http://127.0.0.1:PORT` (loopback).
    #[arg(
        long,
        value_name = "builtin|URL",
        value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<MatcherSpec>())
    )]
    matcher: Option<MatcherSpec>,
    /// The SHA-256 fingerprint the server's certificate must have (as `blindface serve`
    /// prints it); replaces the one pinned on first use.
    #[arg(
        long,
        value_name = "SHA256",
        value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<Fingerprint>())
    )]
    fingerprint: Option<Fingerprint>,
    /// A one-time invitation code (from `blindface admin invite`) to register this key's
    /// gallery on an invite-only server.
    #[arg(long, value_name = "CODE")]
    invite: Option<String>,
    /// The app's source: an image or a folder of images (shown in turn) instead of the camera.
    #[arg(long, value_name = "PATH")]
    source: Option<PathBuf>,
}

/// The name of the one subcommand that takes no client option.
const SERVE: &str = "serve";

/// The command line: `Cli`'s, with the client options also after every subcommand but
/// `serve` (global there, so `admin invite --matcher URL` works too). Values given after
/// the subcommand reach `Cli` as clap hands global values up.
fn command() -> clap::Command {
    let client: Vec<clap::Arg> = client_args().into_iter().map(|a| a.global(true)).collect();
    <Cli as CommandFactory>::command().mut_subcommands(|sc| {
        if sc.get_name() == SERVE {
            sc
        } else {
            sc.args(client.iter().cloned())
        }
    })
}

/// `ClientArgs` as clap arguments.
fn client_args() -> Vec<clap::Arg> {
    ClientArgs::augment_args(clap::Command::new("client"))
        .get_arguments()
        .cloned()
        .collect()
}

/// Refuses a client option given before `serve` (after it, clap refuses it already).
fn refuse_client_options_for_serve(cmd: &mut clap::Command, matches: &clap::ArgMatches) {
    if matches.subcommand_name() != Some(SERVE) {
        return;
    }
    for arg in client_args() {
        if matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            let long = arg.get_long().unwrap_or_default();
            cmd.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("--{long} is a client option; `blindface serve` does not take it"),
            )
            .exit();
        }
    }
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
        #[command(flatten)]
        params: TemplateParams,
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
    ///
    /// Exit status: 0 verified, 1 not verified (the face is not NAME's at the threshold),
    /// 2 an error (nothing was decided).
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
    /// Remove every template enrolled as NAME, or the one template ID (`blindface list`
    /// shows ids; an entry whose label does not open can only be removed by its id, or all
    /// of them with --name "(label does not open)").
    Remove {
        #[arg(long, required_unless_present = "id", conflicts_with = "id")]
        name: Option<String>,
        #[arg(long, value_name = "ID")]
        id: Option<blindface::he::TemplateId>,
    },
    /// Re-pack a gallery that removals left sparse: move templates out of the highest
    /// blocks into free slots of lower ones (your key re-encrypts them; the matcher still
    /// holds none), so matching and storage cost only the blocks needed.
    Repack,
    /// Run the remote matcher (HTTPS with a self-signed certificate, loopback by default;
    /// invite-only registration).
    Serve(Box<server::ServeArgs>),
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
        /// Instead of evaluating: choose the dimension of the compact templates' projection
        /// by 10-fold cross-validation on PAIRS and fit it on PAIRS' images (centred PCA),
        /// writing it to this file. Only ever on LFW View 1 DevTrain.
        #[arg(long, value_name = "FILE.json", requires = "pairs")]
        fit_projection: Option<PathBuf>,
        /// With --fit-projection: this many dimensions instead of the smallest that passes
        /// the accuracy gates.
        #[arg(long, value_name = "D", requires = "fit_projection")]
        dims: Option<usize>,
        #[command(flatten)]
        params: TemplateParams,
        /// Also write pairs.csv, roc.png and histogram.png into this folder.
        #[arg(long, value_name = "DIR", requires = "pairs")]
        report: Option<PathBuf>,
        /// Also write FAR and TAR with counts over a fine threshold grid to this JSON file.
        #[arg(long, value_name = "FILE.json", requires = "pairs")]
        calibrate: Option<PathBuf>,
        /// Calibrate on every impostor pair among the file's images (every two images of
        /// different identities, identity from `Name_0001.jpg` file names; millions of
        /// pairs, in plaintext) instead of the listed ones; genuine pairs stay the listed
        /// ones. Its grid is finer (0.001).
        #[arg(long, requires = "calibrate")]
        all_impostors: bool,
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

/// Exit status of `verify` when the face is not the person's.
const EXIT_NOT_VERIFIED: u8 = 1;
/// Exit status of an error (clap's usage errors use 2 too).
const EXIT_ERROR: u8 = 2;

pub fn main() -> ExitCode {
    let mut cmd = command();
    let matches = cmd.get_matches_mut();
    refuse_client_options_for_serve(&mut cmd, &matches);
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::NotVerified) => ExitCode::from(EXIT_NOT_VERIFIED),
        Err(e) => {
            eprintln!("error: {e:#}{}", hints::hint(&e).unwrap_or_default());
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Builds the `Globals` once and runs the command.
fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let client = cli.client;
    let threshold = match (client.threshold, client.far) {
        (Some(t), _) => ThresholdChoice::Given(t),
        (None, Some(far)) => ThresholdChoice::Far(far),
        (None, None) => ThresholdChoice::Default,
    };
    // A rate no calibration resolves is refused before anything runs.
    for p in blindface::he::Params::known() {
        threshold.resolve(&p)?;
    }
    let globals = Globals {
        key: client
            .key
            .unwrap_or_else(blindface::paths::default_key_path),
        threshold,
        json: client.json,
        matcher_given: client.matcher.is_some(),
        matcher: client.matcher.unwrap_or(MatcherSpec::Builtin),
        data: cli.data,
        access: Access {
            token: None,
            invite: client.invite,
            fingerprint: client.fingerprint,
            insecure_http: cli.insecure_http,
        },
    };
    let source = client.source;
    match cli.command {
        None => app::open(&globals, source, app::Start::Idle)?,
        Some(Command::App { identify, live }) => app::open(
            &globals,
            source,
            match (identify, live) {
                (_, true) => app::Start::Live,
                (true, _) => app::Start::Identify,
                _ => app::Start::Idle,
            },
        )?,
        Some(Command::Detect { image }) => faces::detect(&globals, &image)?,
        Some(Command::Compare { image_a, image_b }) => {
            faces::compare(&globals, &image_a, &image_b)?
        }
        Some(Command::Keygen { force }) => keys::keygen(&globals, force)?,
        Some(Command::Bench { gallery, params }) => bench::bench(&globals, gallery, params.get())?,
        Some(Command::Enrol {
            folder: Some(dir), ..
        }) => gallery::enrol_folder(&globals, &dir)?,
        Some(Command::Enrol {
            name: Some(name),
            image: Some(image),
            face,
            ..
        }) => gallery::enrol(&globals, &name, &image, face)?,
        Some(Command::Enrol { .. }) => {
            unreachable!("clap requires a name and an image, or --folder")
        }
        Some(Command::Verify { name, image, face }) => {
            return gallery::verify(&globals, &name, &image, face)
        }
        Some(Command::Identify {
            image,
            all_faces: true,
            frames,
            ..
        }) => live::identify_all(&globals, &image.to_string_lossy(), frames)?,
        Some(Command::Identify { image, face, .. }) => gallery::identify(&globals, &image, face)?,
        Some(Command::List) => gallery::list(&globals)?,
        Some(Command::Remove { name, id }) => gallery::remove(&globals, name.as_deref(), id)?,
        Some(Command::Repack) => gallery::repack(&globals)?,
        Some(Command::Serve(args)) => server::serve(&globals, *args)?,
        Some(Command::Admin { command }) => server::admin(&globals, command)?,
        Some(Command::Doctor) => doctor::doctor(&globals)?,
        Some(Command::Eval {
            pairs,
            images,
            identify,
            report,
            calibrate,
            all_impostors,
            fit_projection,
            dims,
            params,
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
                params: params.get(),
            };
            match (pairs, images, identify) {
                (Some(pairs), Some(images), None) if fit_projection.is_some() => {
                    let out = fit_projection.expect("checked");
                    eval::fit_projection(&globals, &pairs, &images, &settings, &out, dims)?
                }
                (Some(pairs), Some(images), None) => eval::eval(
                    &globals,
                    &pairs,
                    &images,
                    &settings,
                    report.as_deref(),
                    calibrate.as_deref(),
                    all_impostors,
                )?,
                (None, None, Some(dir)) => eval::identify(&globals, &dir, &settings)?,
                _ => {
                    anyhow::bail!("eval needs either --pairs FILE --images DIR, or --identify DIR")
                }
            }
        }
    }
    Ok(Outcome::Done)
}
