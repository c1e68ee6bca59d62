//! `blindface enrol | verify | identify | list | remove | serve`: the gallery commands over
//! the chosen matcher (built-in store or `http://HOST:PORT`). Faces are embedded and
//! encrypted here; names are sealed and opened here; verdicts are decided here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use blindface::he::{
    decrypt, encrypt_probe, encrypt_template, quantise, threshold_sq, Distance, Params, SecretKey,
    Template, TemplateId,
};
use blindface::labels::{check_name, LabelKey};
use blindface::matcher::{BuiltinMatcher, Matcher, RemoteMatcher};
use blindface::ranking::rank;
use blindface::server::{self, ServerConfig};
use blindface::vision::{load_image, FacePipeline, VisionError};

use super::{emit, Globals};

/// The built-in matcher's data directory.
fn data_dir(globals: &Globals) -> PathBuf {
    globals
        .data
        .clone()
        .unwrap_or_else(blindface::paths::data_dir)
}

/// Opens the matcher `--matcher` names.
pub fn open_matcher(globals: &Globals) -> Result<Box<dyn Matcher>> {
    let m = globals.matcher.trim();
    if m == "builtin" {
        return Ok(Box::new(BuiltinMatcher::open(&data_dir(globals))?));
    }
    if m.starts_with("http://") {
        return Ok(Box::new(RemoteMatcher::for_key_file(m, &globals.key)?));
    }
    if m.starts_with("https://") {
        bail!("this build speaks plain HTTP only; reach a remote matcher through an SSH tunnel or a local TLS proxy and use --matcher http://127.0.0.1:PORT");
    }
    bail!("--matcher must be `builtin` or `http://HOST:PORT`, not `{m}`")
}

fn require_key(globals: &Globals) -> Result<SecretKey> {
    if !globals.key.exists() {
        bail!(
            "no secret key at {}; run `blindface keygen` first (or pass --key PATH)",
            globals.key.display()
        );
    }
    Ok(SecretKey::load(&globals.key, &Params::v1())?)
}

fn template_of(image: &Path, params: &Params) -> Result<Template> {
    let pipeline = FacePipeline::load_default()?;
    let img = load_image(image)?;
    let embedding = match pipeline.embed_largest(&img) {
        Ok((_, e)) => e,
        Err(VisionError::NoFace) => bail!("no face found in {}", image.display()),
        Err(e) => return Err(e).with_context(|| format!("embedding {}", image.display())),
    };
    Ok(quantise(embedding.as_slice(), params)?.template)
}

/// Every enrolled id with its name (opened with this key).
fn names(matcher: &dyn Matcher, labels: &LabelKey) -> Result<BTreeMap<TemplateId, String>> {
    Ok(matcher
        .list()?
        .into_iter()
        .map(|e| {
            let name = labels
                .open(&e.label)
                .unwrap_or_else(|_| "(unreadable: enrolled with another key)".into());
            (e.id, name)
        })
        .collect())
}

fn ids_named(names: &BTreeMap<TemplateId, String>, name: &str) -> Vec<TemplateId> {
    names
        .iter()
        .filter(|(_, n)| n.as_str() == name)
        .map(|(&id, _)| id)
        .collect()
}

#[derive(Serialize)]
struct EnrolOutput {
    id: TemplateId,
    name: String,
    image: String,
    matcher: String,
}

pub fn enrol(globals: &Globals, name: &str, image: &Path) -> Result<()> {
    check_name(name)?;
    let key = require_key(globals)?;
    let params = Params::v1();
    let template = template_of(image, &params)?;
    let labels = LabelKey::from_secret(&key);
    let matcher = open_matcher(globals)?;
    let id = matcher.enrol(&encrypt_template(&key, &template), &labels.seal(name)?)?;
    let out = EnrolOutput {
        id,
        name: name.to_string(),
        image: image.display().to_string(),
        matcher: matcher.describe(),
    };
    emit(globals, &out, || {
        format!(
            "enrolled {} from {} (id {}) in the {}\n",
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
    matcher: &dyn Matcher,
    distances: &[Distance],
    names: &BTreeMap<TemplateId, String>,
    best_per_name: bool,
) -> MatchesOutput {
    let params = Params::v1();
    let limit = threshold_sq(globals.threshold, &params);
    let matches: Vec<MatchOut> = rank(distances, names, best_per_name, &params)
        .into_iter()
        .map(|r| MatchOut {
            same_person: r.distance_sq <= limit,
            name: r.name,
            l2: r.l2,
            id: r.id,
            distance_sq: r.distance_sq,
        })
        .collect();
    MatchesOutput {
        image: image.display().to_string(),
        threshold: globals.threshold,
        matcher: matcher.describe(),
        compared: distances.len(),
        identified: matches
            .first()
            .filter(|m| m.same_person)
            .map(|m| m.name.clone()),
        matches,
    }
}

fn print_matches(globals: &Globals, out: &MatchesOutput, what: &str) {
    emit(globals, out, || {
        let mut s = format!(
            "{} against {} template(s) in the {} (threshold {:.3})\n",
            out.image, out.compared, out.matcher, out.threshold
        );
        match &out.identified {
            Some(n) => s += &format!("{what}: {n}\n"),
            None => s += &format!("{what}: no match\n"),
        }
        for m in &out.matches {
            s += &format!(
                "  {:<24} L2 {:.4}  {}\n",
                m.name,
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

pub fn verify(globals: &Globals, name: &str, image: &Path) -> Result<()> {
    let key = require_key(globals)?;
    let params = Params::v1();
    let labels = LabelKey::from_secret(&key);
    let matcher = open_matcher(globals)?;
    let names = names(matcher.as_ref(), &labels)?;
    let ids = ids_named(&names, name);
    if ids.is_empty() {
        bail!("nobody called {name:?} is enrolled; `blindface list` shows who is");
    }
    let template = template_of(image, &params)?;
    let (probe, ctx) = encrypt_probe(&key, &template);
    let mut distances = Vec::new();
    for id in ids {
        let result = matcher.verify(&probe, id)?;
        distances.extend(decrypt(&key, &ctx, &result)?);
    }
    let out = matches_output(globals, image, matcher.as_ref(), &distances, &names, false);
    print_matches(globals, &out, "verified as");
    Ok(())
}

pub fn identify(globals: &Globals, image: &Path) -> Result<()> {
    let key = require_key(globals)?;
    let params = Params::v1();
    let labels = LabelKey::from_secret(&key);
    let matcher = open_matcher(globals)?;
    let template = template_of(image, &params)?;
    let (probe, ctx) = encrypt_probe(&key, &template);
    let result = matcher.identify(&probe)?;
    let distances = decrypt(&key, &ctx, &result)?;
    let names = names(matcher.as_ref(), &labels)?;
    let out = matches_output(globals, image, matcher.as_ref(), &distances, &names, true);
    print_matches(globals, &out, "identified as");
    Ok(())
}

#[derive(Serialize)]
struct ListEntry {
    id: TemplateId,
    name: String,
}

#[derive(Serialize)]
struct ListOutput {
    matcher: String,
    count: usize,
    templates: Vec<ListEntry>,
}

pub fn list(globals: &Globals) -> Result<()> {
    let key = require_key(globals)?;
    let labels = LabelKey::from_secret(&key);
    let matcher = open_matcher(globals)?;
    let mut templates: Vec<ListEntry> = names(matcher.as_ref(), &labels)?
        .into_iter()
        .map(|(id, name)| ListEntry { id, name })
        .collect();
    templates.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let out = ListOutput {
        matcher: matcher.describe(),
        count: templates.len(),
        templates,
    };
    emit(globals, &out, || {
        let mut s = format!("{} template(s) in the {}\n", out.count, out.matcher);
        for t in &out.templates {
            s += &format!("  {:<24} id {}\n", t.name, t.id);
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

pub fn remove(globals: &Globals, name: &str) -> Result<()> {
    let key = require_key(globals)?;
    let labels = LabelKey::from_secret(&key);
    let matcher = open_matcher(globals)?;
    let ids = ids_named(&names(matcher.as_ref(), &labels)?, name);
    if ids.is_empty() {
        bail!("nobody called {name:?} is enrolled; `blindface list` shows who is");
    }
    for &id in &ids {
        matcher.remove(id)?;
    }
    let out = RemoveOutput {
        name: name.to_string(),
        removed: ids,
    };
    emit(globals, &out, || {
        format!(
            "removed {} template(s) of {}\n",
            out.removed.len(),
            out.name
        )
    });
    Ok(())
}

pub fn serve(
    globals: &Globals,
    addr: SocketAddr,
    max_templates: usize,
    max_tenants: usize,
) -> Result<()> {
    let data = globals
        .data
        .clone()
        .unwrap_or_else(|| blindface::paths::data_dir().join("server"));
    server::run(ServerConfig {
        addr,
        data,
        max_templates,
        max_tenants,
    })
}
