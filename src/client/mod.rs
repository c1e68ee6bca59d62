//! The app-side client: everything the key holder does, in one place, for both the CLI and
//! the desktop app. It owns the secret key, the label key derived from it, the matcher
//! connection and the name table (template id -> decrypted name), and offers `enrol`,
//! `verify`, `identify`, `remove` and `refresh` with typed results: ranked people with
//! decrypted distances, timings, and the bytes the matcher implementation itself counted.
//!
//! Invariants held here:
//! - A gallery belongs to one key: the built-in matcher keeps one tenant per key
//!   fingerprint, remote tokens are stored per (URL, key fingerprint) ([`connect()`]).
//! - Template ids are chosen here at random and every label is sealed to its id, so a label
//!   moved to another template does not open ([`crate::labels`]).
//! - Results are checked against what was asked: a verify must answer for exactly the
//!   requested templates, an identify only for templates in the name table.
//! - Results are checked against where the listing put each template: every readout of a
//!   listed template must come from its listed slot, one result block from one listed
//!   block, each listed block at most once ([`ClientError::ForgedResult`]). Templates
//!   enrolled since the last listing are checked at the next one. An identify must
//!   answer for every listed template ([`ClientError::IncompleteResult`]: a cluster node
//!   that missed its share never leaves a silently partial gallery).
//! - A template whose label does not open is shown as [`UNREADABLE_NAME`], never answers
//!   (identify skips it, verify refuses it), and can be removed like any other.
//! - The name table changes only on enrol, remove and refresh; matching never re-lists.
//!
//! No UI, camera or network code of its own (the remote matcher does the HTTP).

mod connect;
pub mod face;
pub mod keys;

pub use connect::{connect, endpoint, remember_pin, Access, Locations};

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use thiserror::Error;

use crate::he::{
    decrypt_block, encrypt_probe, encrypt_template, erasure, relocation, BlockResult,
    EncryptedProbe, HeError, Location, Params, SecretKey, SlotReadout, Template, TemplateId,
};
use crate::labels::{LabelError, LabelKey};
use crate::matcher::tls::Fingerprint;
use crate::matcher::{Enrolled, Matcher, MatcherError, RemovalBlock, Traffic};
use crate::ranking::{best_per_person, rank, PersonDistance};
use crate::vision::VisionError;

/// What the name table shows for a template whose label does not open.
pub const UNREADABLE_NAME: &str = "(label does not open)";

/// Client errors: what happened and what to do, until the edge turns them into text.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error(transparent)]
    Matcher(#[from] MatcherError),
    #[error(transparent)]
    Crypto(#[from] HeError),
    #[error(transparent)]
    Label(#[from] LabelError),
    #[error(transparent)]
    Vision(#[from] VisionError),
    #[error("the compact templates' projection: {0}")]
    Projection(#[from] crate::vision::projection::ProjectionError),
    #[error("no face found")]
    NoFace,
    #[error("{} faces found; say which one to use", boxes.len())]
    SeveralFaces { boxes: Vec<[f32; 4]> },
    #[error("there is no face number {number}: {found} face(s) were found")]
    NoSuchFace { number: usize, found: usize },
    #[error("nobody called {0:?} is enrolled")]
    NoSuchPerson(String),
    #[error(
        "the matcher answered for other templates than were asked ({0}); its answer was discarded"
    )]
    UnexpectedIds(String),
    #[error("the matcher answered for templates that are not in this gallery (ids {}); its answer was discarded", ids_text(.0))]
    UnknownIds(Vec<TemplateId>),
    #[error("the matcher's answer does not match where it listed the gallery's templates ({0}): it was forged or relabelled, by the matcher or by someone answering in its place, and was refused (if another client re-packed this gallery since it was listed, reconnect and try again)")]
    ForgedResult(String),
    #[error("the matcher's answer leaves out {} listed template(s) (ids {}): part of the gallery was not matched (a matcher node missed its share, or the matcher dropped them); the answer was refused", .0.len(), ids_text(.0))]
    IncompleteResult(Vec<TemplateId>),
    #[error("{} label(s) in this gallery do not open with this key (template ids {}): the store was edited or damaged, or an enrolment was replayed under another id; they are listed as \"(label does not open)\", never matched, and can be removed", .0.len(), ids_text(.0))]
    UnreadableLabels(Vec<TemplateId>),
}

fn ids_text(ids: &[TemplateId]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Milliseconds of the client's own steps in one request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTimes {
    pub encrypt_ms: f64,
    pub match_ms: f64,
    pub decrypt_ms: f64,
}

/// What left the app and what came back for one request: enough to show an audience what
/// the matcher sees.
#[derive(Debug, Clone)]
pub struct WireView {
    /// Size of the probe or template ciphertext sent.
    pub sent_bytes: usize,
    /// Bytes from the middle of what was sent (a ciphertext: random-looking, no key inside).
    pub sent_preview: Vec<u8>,
    /// Result blocks received (0 for an enrolment).
    pub result_blocks: usize,
    pub received_bytes: usize,
}

/// What [`Client::repack`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repacked {
    pub templates: usize,
    pub moved: usize,
    /// Blocks spanned (highest occupied block + 1) before and after.
    pub blocks_before: usize,
    pub blocks_after: usize,
    pub traffic: Traffic,
}

/// The outcome of a verify or identify.
#[derive(Debug, Clone)]
pub struct MatchReport {
    /// Every decrypted distance with its name, best first.
    pub rows: Vec<PersonDistance>,
    /// Matcher calls this took (a verify calls once per template of the person).
    pub calls: u64,
    pub traffic: Traffic,
    pub times: StepTimes,
    pub wire: WireView,
}

impl MatchReport {
    /// Each person's best row, best first (a person's verdict uses their best template).
    pub fn best_per_person(&self) -> Vec<PersonDistance> {
        best_per_person(&self.rows)
    }

    /// Templates compared.
    pub fn compared(&self) -> usize {
        self.rows.len()
    }
}

/// The outcome of an enrolment.
#[derive(Debug, Clone)]
pub struct Enrolment {
    pub id: TemplateId,
    pub name: String,
    pub traffic: Traffic,
    pub times: StepTimes,
    pub wire: WireView,
}

/// The key holder's side of one gallery.
pub struct Client {
    key: SecretKey,
    labels: LabelKey,
    matcher: Box<dyn Matcher>,
    names: BTreeMap<TemplateId, String>,
    unreadable: Vec<TemplateId>,
    /// Where the last listing put each template (templates enrolled since are absent).
    listed: Listing,
    new_pin: Option<Fingerprint>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("key", &self.key)
            .field("matcher", &self.matcher.describe())
            .field("templates", &self.names.len())
            .finish()
    }
}

/// Milliseconds since `since`: how [`StepTimes`] and the app's timings count.
pub fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

const PREVIEW_BYTES: usize = 48;

/// A failed [`connect()`] or [`Client::new`]: the error, and the key back (nothing else
/// holds it).
pub struct ConnectError {
    pub error: ClientError,
    pub key: SecretKey,
}

impl std::fmt::Debug for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for ConnectError {}

impl Client {
    /// A client over an open matcher; lists the gallery once to fill the name table.
    pub fn new(key: SecretKey, matcher: Box<dyn Matcher>) -> Result<Client, Box<ConnectError>> {
        let labels = LabelKey::from_secret(&key);
        let mut c = Client {
            key,
            labels,
            matcher,
            names: BTreeMap::new(),
            unreadable: Vec::new(),
            listed: Listing::default(),
            new_pin: None,
        };
        match c.refresh() {
            Ok(()) => Ok(c),
            Err(error) => Err(Box::new(ConnectError {
                error,
                key: c.into_key(),
            })),
        }
    }

    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    /// Gives the key back (to switch matchers with the same key).
    pub fn into_key(self) -> SecretKey {
        self.key
    }

    pub fn params(&self) -> &Params {
        self.key.params()
    }

    pub fn fingerprint(&self) -> String {
        self.key.fingerprint()
    }

    pub fn describe(&self) -> String {
        self.matcher.describe()
    }

    /// Whether the matcher answers now.
    pub fn health(&self) -> Result<(), ClientError> {
        Ok(self.matcher.health()?)
    }

    /// The certificate fingerprint this connection pinned on first use (not before): show
    /// it to the user to compare with the one `blindface serve` printed.
    pub fn new_pin(&self) -> Option<Fingerprint> {
        self.new_pin
    }

    /// Template id -> name ([`UNREADABLE_NAME`] for labels that do not open).
    pub fn names(&self) -> &BTreeMap<TemplateId, String> {
        &self.names
    }

    /// Templates whose label does not open with this key (an edited or damaged store).
    pub fn unreadable(&self) -> &[TemplateId] {
        &self.unreadable
    }

    /// Fails if any label does not open (for commands that must not show a partial
    /// gallery as if it were whole).
    pub fn check_labels(&self) -> Result<(), ClientError> {
        if self.unreadable.is_empty() {
            Ok(())
        } else {
            Err(ClientError::UnreadableLabels(self.unreadable.clone()))
        }
    }

    /// The ids enrolled as `name` (never those whose label does not open: see
    /// [`Client::unreadable`]).
    pub fn ids_of(&self, name: &str) -> Vec<TemplateId> {
        self.names
            .iter()
            .filter(|(id, n)| n.as_str() == name && !self.unreadable.contains(id))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Lists the gallery again and re-opens every label.
    pub fn refresh(&mut self) -> Result<(), ClientError> {
        let list = self.matcher.list()?;
        self.names.clear();
        self.unreadable.clear();
        self.listed = Listing::of(&list);
        for e in list {
            match self.labels.open(&e.label, e.id) {
                Ok(name) => {
                    self.names.insert(e.id, name);
                }
                Err(_) => {
                    self.unreadable.push(e.id);
                    self.names.insert(e.id, UNREADABLE_NAME.to_string());
                }
            }
        }
        Ok(())
    }

    /// Encrypts `template`, seals `name` to a fresh random id and enrols both.
    pub fn enrol(&mut self, template: &Template, name: &str) -> Result<Enrolment, ClientError> {
        let name = name.trim();
        crate::labels::check_name(name)?;
        if name == UNREADABLE_NAME {
            return Err(LabelError::BadName.into());
        }
        let t = Instant::now();
        let ct = encrypt_template(&self.key, template);
        let encrypt_ms = elapsed_ms(t);
        // Ids are 53 random bits: a clash is all but impossible, but cheap to survive.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let id = random_id()?;
            let label = self.labels.seal(name, id)?;
            let t = Instant::now();
            match self.matcher.enrol(id, &ct, &label) {
                Ok(traffic) => {
                    self.names.insert(id, name.to_string());
                    return Ok(Enrolment {
                        id,
                        name: name.to_string(),
                        traffic,
                        times: StepTimes {
                            encrypt_ms,
                            match_ms: elapsed_ms(t),
                            decrypt_ms: 0.0,
                        },
                        wire: WireView {
                            sent_bytes: ct.wire_len(),
                            sent_preview: ct.wire_sample(PREVIEW_BYTES),
                            result_blocks: 0,
                            received_bytes: traffic.received,
                        },
                    });
                }
                Err(MatcherError::DuplicateId(_)) if attempts < 4 => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// 1:1 against every template of `name`.
    pub fn verify(&self, template: &Template, name: &str) -> Result<MatchReport, ClientError> {
        if name == UNREADABLE_NAME {
            return Err(ClientError::UnreadableLabels(self.unreadable.clone()));
        }
        let ids = self.ids_of(name);
        if ids.is_empty() {
            return Err(ClientError::NoSuchPerson(name.to_string()));
        }
        self.exchange(template, Answers::Exactly(&ids), |probe, sink| {
            let mut traffic = Traffic::default();
            for &id in &ids {
                let reply = self.matcher.verify(probe, id)?;
                traffic += reply.traffic;
                for block in reply.result.blocks {
                    sink(block, Some(id))?;
                }
            }
            Ok((ids.len() as u64, traffic))
        })
    }

    /// Encrypts `template` as a probe, has `ask` feed the matcher's result blocks to the
    /// sink as they arrive, decrypts each at once (so no whole result is ever held),
    /// checks which templates they answer for, ranks every distance, and times each
    /// step: the one sequence verify and identify share.
    fn exchange(
        &self,
        template: &Template,
        answers: Answers<'_>,
        ask: impl FnOnce(&EncryptedProbe, &mut Answer<'_>) -> Result<(u64, Traffic), MatcherError>,
    ) -> Result<MatchReport, ClientError> {
        let t = Instant::now();
        let (probe, ctx) = encrypt_probe(&self.key, template);
        let encrypt_ms = elapsed_ms(t);
        let t = Instant::now();
        let mut distances = Vec::new();
        let mut seen = BTreeSet::new();
        let mut listed_blocks = BTreeSet::new();
        let mut blocks = 0usize;
        let mut decrypting = std::time::Duration::ZERO;
        let mut failure: Option<ClientError> = None;
        let unreadable: BTreeSet<TemplateId> = self.unreadable.iter().copied().collect();
        let asked = ask(&probe, &mut |block, only| {
            let d = Instant::now();
            let decrypted = decrypt_block(&self.key, &ctx, &block, blocks);
            decrypting += d.elapsed();
            blocks += 1;
            let mut fail = |e: ClientError| {
                failure = Some(e);
                Err(MatcherError::Cancelled)
            };
            let ds = match decrypted {
                Ok(ds) => ds,
                Err(e) => return fail(e.into()),
            };
            // A block answers once per request: once in an identify, once per asked
            // template in a verify (a person's templates may share a block).
            match self.listed.block_of(&block.entries) {
                Ok(Some(b)) if !listed_blocks.insert((b, only)) => {
                    return fail(ClientError::ForgedResult(format!(
                        "listed block {b} was answered twice"
                    )))
                }
                Ok(_) => {}
                Err(e) => return fail(e),
            }
            // Every readout of the block was checked; a 1:1 keeps the asked one only.
            let mut in_block = BTreeSet::new();
            if let Some(x) = ds.iter().find(|x| !in_block.insert(x.id)) {
                return fail(ClientError::UnexpectedIds(format!(
                    "template {} appears twice",
                    x.id
                )));
            }
            let kept: Vec<_> = match only {
                Some(id) if !in_block.contains(&id) => {
                    return fail(ClientError::UnexpectedIds(format!(
                        "asked for {id}, got a block without it"
                    )))
                }
                Some(id) => ds.into_iter().filter(|x| x.id == id).collect(),
                None => ds,
            };
            for x in &kept {
                if !seen.insert(x.id) {
                    return fail(ClientError::UnexpectedIds(format!(
                        "template {} appears twice",
                        x.id
                    )));
                }
            }
            // Templates whose label does not open never answer.
            distances.extend(kept.into_iter().filter(|x| !unreadable.contains(&x.id)));
            Ok(())
        });
        let (calls, traffic) = match (asked, failure) {
            (_, Some(f)) => return Err(f),
            (Err(e), None) => return Err(e.into()),
            (Ok(x), None) => x,
        };
        answers.check(&seen, &self.names)?;
        if matches!(answers, Answers::Known) {
            // An identify answers for every listed template: none may be left out.
            let missing: Vec<TemplateId> = self
                .listed
                .at
                .keys()
                .copied()
                .filter(|id| !seen.contains(id))
                .collect();
            if !missing.is_empty() {
                return Err(ClientError::IncompleteResult(missing));
            }
        }
        let decrypt_ms = decrypting.as_secs_f64() * 1e3;
        let match_ms = (elapsed_ms(t) - decrypt_ms).max(0.0);
        Ok(MatchReport {
            rows: rank(&distances, &self.names, self.params()),
            calls,
            traffic,
            times: StepTimes {
                encrypt_ms,
                match_ms,
                decrypt_ms,
            },
            wire: WireView {
                sent_bytes: probe.wire_len(),
                sent_preview: probe.wire_sample(PREVIEW_BYTES),
                result_blocks: blocks,
                received_bytes: traffic.received,
            },
        })
    }

    /// 1:N against everyone. Ids the name table does not know (enrolled elsewhere since the
    /// last refresh) trigger one refresh and one more try.
    pub fn identify(&mut self, template: &Template) -> Result<MatchReport, ClientError> {
        match self.identify_known(template) {
            // Enrolled or removed by another client since the listing: list again.
            Err(ClientError::UnknownIds(_) | ClientError::IncompleteResult(_)) => {
                self.refresh()?;
                self.identify_known(template)
            }
            r => r,
        }
    }

    /// 1:N against the templates in the name table, from a shared reference (parallel
    /// searches); an answer naming other templates is [`ClientError::UnknownIds`]. The
    /// result is streamed and decrypted block by block.
    pub fn identify_known(&self, template: &Template) -> Result<MatchReport, ClientError> {
        self.exchange(template, Answers::Known, |probe, sink| {
            let streamed = self
                .matcher
                .identify_stream(probe, &mut |b| sink(b, None))?;
            Ok((1, streamed.traffic))
        })
    }

    /// Removes the given templates, one by one, so that nothing of them is left: for each,
    /// fetches the block that holds it, decrypts its slot with the key and sends a fresh
    /// encryption of its negation, which the matcher adds (durably); the slot then
    /// decrypts to exactly zero and is reused. Forgets their names.
    pub fn remove_ids(&mut self, ids: &[TemplateId]) -> Result<(), ClientError> {
        for &id in ids {
            let removal = self.block_holding(id)?;
            let negation = erasure(&self.key, &removal.block, removal.location.slot)?;
            self.matcher.erase(id, &negation)?;
            self.names.remove(&id);
            self.unreadable.retain(|u| *u != id);
            self.listed.forget(id);
        }
        Ok(())
    }

    /// The block holding `id`, checked to say so.
    fn block_holding(&self, id: TemplateId) -> Result<RemovalBlock, ClientError> {
        let removal = self.matcher.removal_block(id)?;
        if removal.block.slots.get(removal.location.slot) != Some(&Some(id)) {
            return Err(ClientError::UnexpectedIds(format!(
                "asked for the block of template {id}, got another"
            )));
        }
        Ok(removal)
    }

    /// Re-packs a gallery that removals left sparse, with no key on the matcher: the
    /// templates in blocks beyond the fewest that can hold them all are moved, highest
    /// first, into free slots of lower blocks. For each block to empty, the block is
    /// fetched once and each of its templates decrypted; the matcher gets, per template,
    /// a fresh encryption of it and one of its negation, and applies both as one durable
    /// change (so an interruption loses nothing, and running again continues). Trailing
    /// blocks left empty are dropped, in memory and on disk.
    pub fn repack(&mut self) -> Result<Repacked, ClientError> {
        let listed = self.matcher.list()?;
        let span = |l: &[Enrolled]| l.iter().map(|e| e.location.block + 1).max().unwrap_or(0);
        let blocks_before = span(&listed);
        let needed = listed.len().div_ceil(self.key.params.slots_per_block());
        let mut movers: BTreeMap<usize, Vec<TemplateId>> = BTreeMap::new();
        for e in listed.iter().filter(|e| e.location.block >= needed) {
            movers.entry(e.location.block).or_default().push(e.id);
        }
        let mut moved = 0;
        let mut traffic = Traffic::default();
        for ids in movers.values().rev() {
            // Cancelling one slot leaves the others' plaintexts as they were: one fetch
            // serves the whole block.
            let removal = self.block_holding(ids[0])?;
            traffic += removal.traffic;
            for &id in ids {
                let Some(slot) = removal.block.slots.iter().position(|s| *s == Some(id)) else {
                    return Err(ClientError::UnexpectedIds(format!(
                        "template {id} is listed in block {} but not in it",
                        removal.location.block
                    )));
                };
                let (negation, fresh) = relocation(&self.key, &removal.block, slot)?;
                let r = self.matcher.relocate(id, &negation, &fresh)?;
                traffic += r.traffic;
                moved += usize::from(r.to.is_some());
            }
        }
        let after = self.matcher.list()?;
        self.listed = Listing::of(&after);
        Ok(Repacked {
            templates: listed.len(),
            moved,
            blocks_before,
            blocks_after: span(&after),
            traffic,
        })
    }

    /// Removes every template of `name` (every template whose label does not open, for
    /// [`UNREADABLE_NAME`]); returns their ids.
    pub fn remove_person(&mut self, name: &str) -> Result<Vec<TemplateId>, ClientError> {
        let ids = if name == UNREADABLE_NAME {
            self.unreadable.clone()
        } else {
            self.ids_of(name)
        };
        if ids.is_empty() {
            return Err(ClientError::NoSuchPerson(name.to_string()));
        }
        self.remove_ids(&ids)?;
        Ok(ids)
    }
}

/// Where the last listing put each template, both ways: what every answer is checked
/// against.
#[derive(Debug, Default)]
struct Listing {
    at: BTreeMap<TemplateId, Location>,
    holder: BTreeMap<(usize, usize), TemplateId>,
}

impl Listing {
    fn of(list: &[Enrolled]) -> Listing {
        let mut l = Listing::default();
        for e in list {
            l.at.insert(e.id, e.location);
            l.holder.insert((e.location.block, e.location.slot), e.id);
        }
        l
    }

    fn forget(&mut self, id: TemplateId) {
        if let Some(loc) = self.at.remove(&id) {
            self.holder.remove(&(loc.block, loc.slot));
        }
    }

    /// The listed block one result block answers for (`None`: it holds no listed
    /// template), checking that every listed template in it answers from its listed slot
    /// and all from one block. Templates unknown to the listing are left to the callers
    /// (enrolled since, or by another client: [`ClientError::UnknownIds`]).
    fn block_of(&self, entries: &[SlotReadout]) -> Result<Option<usize>, ClientError> {
        let mut block: Option<(usize, TemplateId)> = None;
        for e in entries {
            let Some(id) = e.id else { continue };
            let Some(loc) = self.at.get(&id) else {
                continue;
            };
            if loc.slot != e.slot as usize {
                return Err(ClientError::ForgedResult(format!(
                    "template {id} answered from slot {}, listed in block {} slot {}",
                    e.slot, loc.block, loc.slot
                )));
            }
            match block {
                Some((b, other)) if b != loc.block => {
                    return Err(ClientError::ForgedResult(format!(
                        "one result block answers for template {other} (listed in block {b}) \
                         and template {id} (listed in block {})",
                        loc.block
                    )))
                }
                _ => block = Some((loc.block, id)),
            }
        }
        Ok(block.map(|(b, _)| b))
    }
}

/// Receives each result block with the template a 1:1 asked for (`None`: an identify,
/// every template counts).
type Answer<'a> = dyn FnMut(BlockResult, Option<TemplateId>) -> Result<(), MatcherError> + 'a;

/// Which templates a result may answer for.
enum Answers<'a> {
    /// Exactly these (a verify).
    Exactly(&'a [TemplateId]),
    /// Only templates in the name table (an identify).
    Known,
}

impl Answers<'_> {
    fn check(
        &self,
        got: &BTreeSet<TemplateId>,
        names: &BTreeMap<TemplateId, String>,
    ) -> Result<(), ClientError> {
        match self {
            Answers::Exactly(asked) => {
                let want: BTreeSet<TemplateId> = asked.iter().copied().collect();
                if *got != want {
                    return Err(ClientError::UnexpectedIds(format!(
                        "asked for {}, got {}",
                        ids_text(&want.into_iter().collect::<Vec<_>>()),
                        ids_text(&got.iter().copied().collect::<Vec<_>>())
                    )));
                }
            }
            Answers::Known => {
                let unknown: Vec<TemplateId> = got
                    .iter()
                    .copied()
                    .filter(|id| !names.contains_key(id))
                    .collect();
                if !unknown.is_empty() {
                    return Err(ClientError::UnknownIds(unknown));
                }
            }
        }
        Ok(())
    }
}

fn random_id() -> Result<TemplateId, ClientError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| LabelError::Random(e.to_string()))?;
    Ok(TemplateId(
        u64::from_le_bytes(b) % (TemplateId::LIMIT - 1) + 1,
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::he::synthetic_templates;
    use crate::matcher::tampering::Tampering;
    use crate::matcher::{BuiltinMatcher, MatcherSpec, TokenStore};

    #[test]
    fn verify_rejects_answers_for_other_templates() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::generate(&Params::v1());
        let claim: Arc<Mutex<Option<TemplateId>>> = Arc::default();
        let lists: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        // A matcher that can answer a verify as if it were another template's.
        let m = Tampering::new(
            BuiltinMatcher::open(dir.path(), key.params(), &key.fingerprint()).unwrap(),
        )
        .on_verify({
            let claim = claim.clone();
            move |_, r| {
                if let Some(other) = *claim.lock().unwrap() {
                    r.result.blocks[0].entries[0].id = Some(other);
                }
            }
        })
        .on_list({
            let lists = lists.clone();
            move || {
                lists.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let mut c = Client::new(key, Box::new(m)).unwrap();
        let ts = synthetic_templates(2, 5, c.params());
        let ada = c.enrol(&ts[0], "Ada").unwrap();
        let bob = c.enrol(&ts[1], "Bob").unwrap();
        assert_eq!(c.names().len(), 2);
        // Honest: Ada's own distance, exact.
        let r = c.verify(&ts[0], "Ada").unwrap();
        assert_eq!((r.rows[0].id, r.rows[0].distance_sq), (ada.id, 0));
        assert_eq!(r.rows[0].name, "Ada");
        // Matching uses the name table: one listing (at connect) for all of the above.
        for _ in 0..5 {
            c.identify(&ts[1]).unwrap();
            c.verify(&ts[1], "Bob").unwrap();
        }
        assert_eq!(lists.load(std::sync::atomic::Ordering::Relaxed), 1);
        // The matcher labels Ada's result as Bob's: refused, never shown as Bob.
        *claim.lock().unwrap() = Some(bob.id);
        assert!(matches!(
            c.verify(&ts[0], "Ada"),
            Err(ClientError::UnexpectedIds(_))
        ));
        assert!(matches!(
            c.verify(&ts[1], "Nobody"),
            Err(ClientError::NoSuchPerson(_))
        ));
    }

    #[test]
    fn the_name_table_follows_enrol_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::generate(&Params::v1());
        let at = Locations {
            data_dir: dir.path().to_path_buf(),
            tokens: TokenStore::beside_key(&dir.path().join("k.key")),
        };
        let mut c = connect(key, &MatcherSpec::Builtin, &at, &Access::default()).unwrap();
        let ts = synthetic_templates(3, 9, c.params());
        c.enrol(&ts[0], "Ada").unwrap();
        c.enrol(&ts[1], "Ada").unwrap();
        c.enrol(&ts[2], "Bob").unwrap();
        assert_eq!(c.ids_of("Ada").len(), 2);
        // Verify asks for each of Ada's templates: both in block 0, each answered once.
        let v = c.verify(&ts[1], "Ada").unwrap();
        let mut got: Vec<i64> = v.rows.iter().map(|r| r.distance_sq).collect();
        got.sort();
        assert_eq!(got, vec![0, ts[1].distance_sq(&ts[0])]);
        assert_eq!(v.calls, 2);
        let r = c.identify(&ts[1]).unwrap();
        assert_eq!(r.compared(), 3);
        let best = r.best_per_person();
        assert_eq!(best.len(), 2);
        assert_eq!((best[0].name.as_str(), best[0].distance_sq), ("Ada", 0));
        assert_eq!(c.remove_person("Ada").unwrap().len(), 2);
        assert_eq!(c.names().len(), 1);
        assert_eq!(c.identify(&ts[2]).unwrap().compared(), 1);
    }
}
