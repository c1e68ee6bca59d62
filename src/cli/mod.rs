//! Command line: argument parsing (clap), dispatch, and the shared output conventions
//! (a readable table by default, one JSON object with `--json`, one-line errors with a
//! non-zero exit).

mod bench;
mod faces;
mod keys;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Serialize;

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
    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
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
}

/// Global options the subcommands read.
pub struct Globals {
    pub key: PathBuf,
    pub threshold: f32,
    pub json: bool,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let globals = Globals {
        key: cli.key.unwrap_or_else(blindface::paths::default_key_path),
        threshold: cli.threshold,
        json: cli.json,
    };
    let result = match cli.command {
        None => {
            eprintln!(
                "blindface: the desktop app is not part of this build yet; use a subcommand \
                 (blindface --help lists them)."
            );
            return ExitCode::from(2);
        }
        Some(Command::Detect { image }) => faces::detect(&globals, &image),
        Some(Command::Compare { image_a, image_b }) => faces::compare(&globals, &image_a, &image_b),
        Some(Command::Keygen { force }) => keys::keygen(&globals, force),
        Some(Command::Bench { gallery }) => bench::bench(&globals, gallery),
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
