//! The built-in matcher: the encrypted core in this process, over the same durable store
//! the server uses (one tenant, `local`), persisted under a data directory.

use std::path::Path;

use super::{Enrolled, Galleries, Matcher, MatcherError, DEFAULT_MAX_TEMPLATES};
use crate::he::{EncryptedProbe, EncryptedTemplate, MatchResult, TemplateId};

const TENANT: &str = "local";

/// In-process matcher; `Send + Sync`, synchronous.
pub struct BuiltinMatcher {
    galleries: Galleries,
}

impl BuiltinMatcher {
    /// Opens (or creates) the store in `dir` and rebuilds the gallery from it.
    pub fn open(dir: &Path) -> Result<Self, MatcherError> {
        Self::open_with_limit(dir, DEFAULT_MAX_TEMPLATES)
    }

    pub fn open_with_limit(dir: &Path, max_templates: usize) -> Result<Self, MatcherError> {
        let galleries = Galleries::open(dir, max_templates)?;
        galleries.ensure_tenant(TENANT)?;
        Ok(BuiltinMatcher { galleries })
    }

    /// Number of enrolled templates.
    pub fn len(&self) -> usize {
        self.galleries.len(TENANT).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Matcher for BuiltinMatcher {
    fn enrol(
        &self,
        template: &EncryptedTemplate,
        label: &[u8],
    ) -> Result<TemplateId, MatcherError> {
        self.galleries.enrol(TENANT, template.clone(), label)
    }

    fn remove(&self, id: TemplateId) -> Result<(), MatcherError> {
        self.galleries.remove(TENANT, id)
    }

    fn list(&self) -> Result<Vec<Enrolled>, MatcherError> {
        self.galleries.list(TENANT)
    }

    fn verify(&self, probe: &EncryptedProbe, id: TemplateId) -> Result<MatchResult, MatcherError> {
        self.galleries.verify(TENANT, probe, id)
    }

    fn identify(&self, probe: &EncryptedProbe) -> Result<MatchResult, MatcherError> {
        self.galleries.identify(TENANT, probe)
    }

    fn describe(&self) -> String {
        format!(
            "built-in matcher (store {})",
            self.galleries.store().path().display()
        )
    }
}
