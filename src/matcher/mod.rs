//! The matcher: one interface ([`Matcher`]: enrol, remove, list, verify 1:1, identify 1:N)
//! over encrypted templates and probes, with two implementations: [`BuiltinMatcher`]
//! (in-process, local store) and [`RemoteMatcher`] (HTTP client of `blindface serve`).
//!
//! A matcher never holds key material: it stores seeded template ciphertexts and
//! app-encrypted labels (see `crate::labels`), and answers probes with encrypted results
//! that only the key holder can decrypt.

mod builtin;
mod galleries;
mod remote;
mod store;

pub use builtin::BuiltinMatcher;
pub use galleries::{Galleries, DEFAULT_MAX_TEMPLATES};
pub use remote::{Credentials, RemoteMatcher, CLIENT_MAX_TEMPLATES};
pub use store::{Store, StoredTemplate, STORE_FILE};

use thiserror::Error;

use crate::he::{EncryptedProbe, EncryptedTemplate, HeError, MatchResult, TemplateId};

/// One enrolled template as the matcher lists it: its id and its encrypted label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub id: TemplateId,
    /// The app-encrypted name (opaque to the matcher).
    pub label: Vec<u8>,
}

/// What every matcher offers. Implementations are `Send + Sync` and synchronous; call them
/// off any UI thread.
pub trait Matcher: Send + Sync {
    /// Adds a template with its encrypted label; returns the new id once it is durable.
    fn enrol(&self, template: &EncryptedTemplate, label: &[u8])
        -> Result<TemplateId, MatcherError>;
    /// Removes a template (durably) and its label.
    fn remove(&self, id: TemplateId) -> Result<(), MatcherError>;
    /// Every enrolled template id with its encrypted label, in id order.
    fn list(&self) -> Result<Vec<Enrolled>, MatcherError>;
    /// 1:1: the encrypted distance between the probe and one template.
    fn verify(&self, probe: &EncryptedProbe, id: TemplateId) -> Result<MatchResult, MatcherError>;
    /// 1:N: the encrypted distances between the probe and every template.
    fn identify(&self, probe: &EncryptedProbe) -> Result<MatchResult, MatcherError>;
    /// Where this matcher lives, for messages ("built-in store at DIR", "http://...").
    fn describe(&self) -> String;
}

/// Matcher errors; each message says what happened and what to do.
#[derive(Debug, Error)]
pub enum MatcherError {
    #[error("no template with id {0} in this gallery; `blindface list` shows what is enrolled")]
    UnknownId(TemplateId),
    #[error("the gallery is full ({max} templates); remove some with `blindface remove` or raise the matcher's --max-templates")]
    GalleryFull { max: usize },
    #[error("the label is {got} bytes, more than the {max} allowed; use a shorter name")]
    LabelTooLarge { got: usize, max: usize },
    #[error("invalid {what}: {detail}")]
    BadInput { what: &'static str, detail: String },
    #[error(transparent)]
    Crypto(#[from] HeError),
    #[error("the store {path} is in use by another blindface process (a running `blindface serve` or app?); stop it or use another --data directory")]
    StoreLocked { path: String },
    #[error("store {path}: {detail}; check the disk and the directory's permissions")]
    Store { path: String, detail: String },
    #[error("cannot reach the matcher at {url}: {detail}; is `blindface serve` running there?")]
    Unreachable { url: String, detail: String },
    #[error("the matcher at {url} rejected our access token ({message}); delete {token_file} to register again")]
    Unauthorized {
        url: String,
        token_file: String,
        message: String,
    },
    #[error("the matcher at {url} answered {status}: {message}")]
    Remote {
        url: String,
        status: u16,
        message: String,
    },
    #[error("token file {path}: {detail}")]
    TokenFile { path: String, detail: String },
}
