//! `blindface enrol | verify | identify | list | remove`: thin adapters from
//! arguments to the app-side [`Client`] (which embeds nothing: faces are found and embedded
//! here through `client::face`) and from its typed results to a table or JSON.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use blindface::client::face::{choose_face, template_of, FaceSelection};
use blindface::client::keys::{open_key, KeyPolicy};
use blindface::client::{connect, Client, ClientError, Locations, MatchReport, UNREADABLE_NAME};
use blindface::he::{Template, TemplateId};
use blindface::matcher::TokenStore;
use blindface::ranking::PersonDistance;
use blindface::vision::{load_image, FacePipeline};

use super::output::{emit, pad, Globals, Outcome};

/// Width of the name column of `list`, `verify` and `identify`, in terminal columns.
const NAME_COLUMN: usize = 24;

/// Where the built-in store and the remote tokens live.
pub fn locations(globals: &Globals) -> Locations {
    Locations {
        data_dir: globals
            .data
            .clone()
            .unwrap_or_else(blindface::paths::data_dir),
        tokens: TokenStore::beside_key(&globals.key),
    }
}

/// The client of the gallery the key owns, on the chosen matcher.
pub fn client(globals: &Globals) -> Result<Client> {
    let key = open_key(&globals.key, KeyPolicy::MustExist)?.key;
    let client = connect(key, &globals.matcher, &locations(globals), &globals.access)
        .map_err(|e| e.error)?;
    if let blindface::matcher::MatcherSpec::Remote { url } = &globals.matcher {
        tell_new_pin(client.new_pin(), url);
    }
    if !client.unreadable().is_empty() {
        eprintln!(
            "warning: {} entr(ies) of this gallery have a label that does not open with this key \
             (ids {}): listed as {UNREADABLE_NAME:?}, never matched; remove them with \
             `blindface remove --id ID`",
            client.unreadable().len(),
            client
                .unreadable()
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(client)
}

/// Shows a certificate pinned on first use (on stderr), for the user to compare.
pub fn tell_new_pin(pin: Option<blindface::matcher::tls::Fingerprint>, url: &str) {
    if let Some(f) = pin {
        eprintln!(
            "pinned the TLS certificate of {url} on first use: SHA-256 {f}\n  \
             compare it with the fingerprint `blindface serve` printed; a different \
             certificate will be refused from now on"
        );
    }
}

/// The face of `image` the user asked for, as a template, with its 1-based number and box.
fn face_template(
    image: &Path,
    choice: FaceSelection,
    client: &Client,
) -> Result<(Template, usize, [f32; 4], usize)> {
    let pipeline = FacePipeline::load_default()?;
    let img = load_image(image)?;
    let faces = pipeline.detect(&img)?;
    let (number, face) = choose_face(&faces, choice).map_err(|e| match e {
        ClientError::NoFace => anyhow::anyhow!("no face found in {}", image.display()),
        ClientError::SeveralFaces { boxes } => anyhow::anyhow!(
            "{} faces found in {} ({}); say which one to enrol with --face N (`blindface detect` numbers them)",
            boxes.len(),
            image.display(),
            boxes
                .iter()
                .enumerate()
                .map(|(i, b)| format!("#{} box {}", i + 1, box_text(b)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        e => anyhow::Error::from(e),
    })?;
    let template = template_of(&pipeline, &img, &face, client.params())
        .with_context(|| format!("embedding {}", image.display()))?;
    Ok((template, number, face.bbox, faces.len()))
}

fn box_text(b: &[f32; 4]) -> String {
    format!("{:.0},{:.0} {:.0}x{:.0}", b[0], b[1], b[2], b[3])
}

fn choice(face: Option<usize>, default: FaceSelection) -> FaceSelection {
    face.map(FaceSelection::Number).unwrap_or(default)
}

#[derive(Serialize)]
struct EnrolOutput {
    id: TemplateId,
    name: String,
    image: String,
    face: usize,
    #[serde(rename = "box")]
    bbox: [f32; 4],
    faces_found: usize,
    matcher: String,
}

pub fn enrol(globals: &Globals, name: &str, image: &Path, face: Option<usize>) -> Result<()> {
    blindface::labels::check_name(name)?;
    let mut client = client(globals)?;
    let (template, number, bbox, found) =
        face_template(image, choice(face, FaceSelection::OnlyOne), &client)?;
    let e = client.enrol(&template, name)?;
    let out = EnrolOutput {
        id: e.id,
        name: e.name,
        image: image.display().to_string(),
        face: number,
        bbox,
        faces_found: found,
        matcher: client.describe(),
    };
    emit(globals, &out, || {
        let which = if out.faces_found > 1 {
            format!(
                " (face #{} of {}, box {})",
                out.face,
                out.faces_found,
                box_text(&out.bbox)
            )
        } else {
            String::new()
        };
        format!(
            "enrolled {} from {}{which} (id {}) in the {}\n",
            out.name, out.image, out.id, out.matcher
        )
    });
    Ok(())
}

#[derive(Serialize)]
struct MatchOut {
    name: String,
    l2: f32,
    same_person: bool,
    id: TemplateId,
    distance_sq: i64,
}

#[derive(Serialize)]
struct MatchesOutput {
    image: String,
    /// What the threshold means, when it came from --far.
    #[serde(skip_serializing_if = "Option::is_none")]
    operating_point: Option<String>,
    face: usize,
    faces_found: usize,
    threshold: f32,
    matcher: String,
    compared: usize,
    /// Best match's name when it is the same person.
    identified: Option<String>,
    matches: Vec<MatchOut>,
}

fn matches_output(
    globals: &Globals,
    image: &Path,
    client: &Client,
    report: &MatchReport,
    rows: Vec<PersonDistance>,
    (face, faces_found): (usize, usize),
) -> anyhow::Result<MatchesOutput> {
    let (threshold, operating_point) = globals.threshold.resolve(client.params())?;
    let matches: Vec<MatchOut> = rows
        .into_iter()
        .map(|r| MatchOut {
            same_person: threshold.accepts(r.distance_sq),
            name: r.name,
            l2: r.l2,
            id: r.id,
            distance_sq: r.distance_sq,
        })
        .collect();
    Ok(MatchesOutput {
        image: image.display().to_string(),
        operating_point,
        face,
        faces_found,
        threshold: threshold.l2(),
        matcher: client.describe(),
        compared: report.compared(),
        identified: matches
            .first()
            .filter(|m| m.same_person)
            .map(|m| m.name.clone()),
        matches,
    })
}

fn print_matches(globals: &Globals, out: &MatchesOutput, what: &str) {
    emit(globals, out, || {
        let mut s = format!(
            "{} against {} template(s) in the {} (threshold {:.3})\n",
            out.image, out.compared, out.matcher, out.threshold
        );
        if let Some(p) = &out.operating_point {
            s += &format!("  {p}\n");
        }
        if out.faces_found > 1 {
            s += &format!(
                "  ({} faces found; matched #{}: choose another with --face N)\n",
                out.faces_found, out.face
            );
        }
        match (&out.identified, out.matches.first()) {
            (Some(n), _) => s += &format!("{what}: {n}\n"),
            (None, Some(best)) => {
                s += &format!(
                    "{what}: nobody within the threshold (closest {} at L2 {:.4})\n",
                    best.name, best.l2
                )
            }
            (None, None) => s += &format!("{what}: no match (the gallery is empty)\n"),
        }
        for m in &out.matches {
            s += &format!(
                "  {} L2 {:.4}  {}\n",
                pad(&m.name, NAME_COLUMN),
                m.l2,
                if m.same_person {
                    "same person"
                } else {
                    "different"
                }
            );
        }
        s
    });
}

/// Verified or not (the exit status says it too); an error when nothing was decided.
pub fn verify(globals: &Globals, name: &str, image: &Path, face: Option<usize>) -> Result<Outcome> {
    let client = client(globals)?;
    if client.ids_of(name).is_empty() {
        bail!("nobody called {name:?} is enrolled; `blindface list` shows who is");
    }
    let (template, number, _, found) =
        face_template(image, choice(face, FaceSelection::Largest), &client)?;
    let report = client.verify(&template, name)?;
    let rows = report.rows.clone();
    let out = matches_output(globals, image, &client, &report, rows, (number, found))?;
    print_matches(globals, &out, "verified as");
    Ok(if out.identified.is_some() {
        Outcome::Done
    } else {
        Outcome::NotVerified
    })
}

pub fn identify(globals: &Globals, image: &Path, face: Option<usize>) -> Result<()> {
    let mut client = client(globals)?;
    let (template, number, _, found) =
        face_template(image, choice(face, FaceSelection::Largest), &client)?;
    let report = client.identify(&template)?;
    let rows = report.best_per_person();
    let out = matches_output(globals, image, &client, &report, rows, (number, found))?;
    print_matches(globals, &out, "identified as");
    Ok(())
}

#[derive(Serialize)]
struct ListEntry {
    id: TemplateId,
    name: String,
    /// False: the label does not open with this key (`name` is a placeholder); the entry
    /// never matches and can be removed by id.
    label_opens: bool,
}

#[derive(Serialize)]
struct ListOutput {
    matcher: String,
    count: usize,
    templates: Vec<ListEntry>,
}

pub fn list(globals: &Globals) -> Result<()> {
    let client = client(globals)?;
    let mut templates: Vec<ListEntry> = client
        .names()
        .iter()
        .map(|(&id, name)| ListEntry {
            id,
            name: name.clone(),
            label_opens: !client.unreadable().contains(&id),
        })
        .collect();
    templates.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let out = ListOutput {
        matcher: client.describe(),
        count: templates.len(),
        templates,
    };
    emit(globals, &out, || {
        let mut s = format!("{} template(s) in the {}\n", out.count, out.matcher);
        for t in &out.templates {
            s += &format!("  {} id {}\n", pad(&t.name, NAME_COLUMN), t.id);
        }
        s
    });
    Ok(())
}

#[derive(Serialize)]
struct RemoveOutput {
    name: String,
    removed: Vec<TemplateId>,
}

pub fn remove(globals: &Globals, name: Option<&str>, id: Option<TemplateId>) -> Result<()> {
    let mut client = client(globals)?;
    let (name, removed) = match (name, id) {
        (_, Some(id)) => {
            let Some(name) = client.names().get(&id).cloned() else {
                bail!("there is no template with id {id}; `blindface list` shows the ids")
            };
            client.remove_ids(&[id])?;
            (name, vec![id])
        }
        (Some(name), None) => match client.remove_person(name) {
            Err(ClientError::NoSuchPerson(_)) => {
                bail!("nobody called {name:?} is enrolled; `blindface list` shows who is")
            }
            r => (name.to_string(), r?),
        },
        (None, None) => bail!("say which: --name NAME or --id ID"),
    };
    let out = RemoveOutput { name, removed };
    emit(globals, &out, || {
        format!(
            "removed {} template(s) of {}\n",
            out.removed.len(),
            out.name
        )
    });
    Ok(())
}

#[derive(Serialize)]
struct RepackOutput {
    templates: usize,
    moved: usize,
    blocks_before: usize,
    blocks_after: usize,
    bytes_sent: usize,
}

pub fn repack(globals: &Globals) -> Result<()> {
    let mut client = client(globals)?;
    let r = client.repack()?;
    let out = RepackOutput {
        templates: r.templates,
        moved: r.moved,
        blocks_before: r.blocks_before,
        blocks_after: r.blocks_after,
        bytes_sent: r.traffic.sent,
    };
    emit(globals, &out, || {
        if out.moved == 0 {
            format!(
                "nothing to move: {} template(s) already fill the fewest blocks ({})\n",
                out.templates, out.blocks_after
            )
        } else {
            format!(
                "moved {} of {} template(s): {} block(s) -> {} (each re-encrypted with your key; {:.1} KiB sent)\n",
                out.moved,
                out.templates,
                out.blocks_before,
                out.blocks_after,
                out.bytes_sent as f64 / 1024.0
            )
        }
    });
    Ok(())
}

#[derive(Serialize)]
struct FolderEnrolOutput {
    folder: String,
    matcher: String,
    enrolled: usize,
    people: usize,
    /// Images not enrolled, with why (no face, several faces, unreadable).
    skipped: Vec<Skipped>,
}

#[derive(Serialize)]
struct Skipped {
    image: String,
    reason: String,
}

/// `enrol --folder DIR`: everyone of a labelled folder, with a progress bar on a terminal.
/// An image is enrolled only when it holds exactly one face (never guess who).
pub fn enrol_folder(globals: &Globals, dir: &Path) -> Result<()> {
    let images = blindface::eval::scan_labelled_folder(dir)?;
    if images.is_empty() {
        bail!("no labelled images in {}", dir.display());
    }
    let mut client = client(globals)?;
    let pipeline = FacePipeline::load_default()?;
    let bar = super::eval::embed::progress(images.len(), "enrolled");
    let mut skipped = Vec::new();
    let mut people = std::collections::BTreeSet::new();
    let mut enrolled = 0;
    for img in &images {
        let outcome = load_image(&img.path)
            .map_err(anyhow::Error::from)
            .and_then(|picture| {
                let faces = pipeline.detect(&picture)?;
                let (_, face) = choose_face(&faces, FaceSelection::OnlyOne)?;
                Ok(template_of(&pipeline, &picture, &face, client.params())?)
            });
        match outcome {
            Ok(t) => {
                // `Barack_Obama_0001.jpg` is enrolled as "Barack Obama".
                let name = img.identity.replace('_', " ");
                client.enrol(&t, &name)?;
                people.insert(name);
                enrolled += 1;
            }
            Err(e) => skipped.push(Skipped {
                image: img.path.display().to_string(),
                reason: format!("{e:#}"),
            }),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let out = FolderEnrolOutput {
        folder: dir.display().to_string(),
        matcher: client.describe(),
        enrolled,
        people: people.len(),
        skipped,
    };
    emit(globals, &out, || {
        let mut s = format!(
            "enrolled {} image(s) of {} people from {} in the {}\n",
            out.enrolled, out.people, out.folder, out.matcher
        );
        if !out.skipped.is_empty() {
            s += &format!("skipped {}:\n", out.skipped.len());
            for k in &out.skipped {
                s += &format!("  {}: {}\n", k.image, k.reason);
            }
        }
        s
    });
    Ok(())
}
