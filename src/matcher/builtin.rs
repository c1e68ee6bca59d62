//! The built-in matcher: the encrypted core in this process, over the same durable store
//! the server uses, persisted under a data directory. Each key owns its own gallery (one
//! tenant per key fingerprint), so enrolling with a second key never corrupts the first
//! key's gallery.

use std::path::Path;

use super::{
    BlockSink, Enrolled, Galleries, Matcher, MatcherError, Relocated, RemovalBlock, Reply,
    Streamed, Traffic, DEFAULT_MAX_TEMPLATES, IDENTIFY_CHUNK,
};
use crate::he::{BlockResult, EncryptedProbe, EncryptedTemplate, MatchResult, Params, TemplateId};

/// The tenant every key shared before galleries were bound to keys.
const LEGACY_TENANT: &str = "local";

/// In-process matcher for one owner; `Send + Sync`, synchronous.
pub struct BuiltinMatcher {
    galleries: Galleries,
    tenant: String,
}

/// The tenant of the gallery owned by the key with this fingerprint.
pub fn tenant_for(fingerprint: &str) -> String {
    format!("key-{fingerprint}")
}

impl BuiltinMatcher {
    /// Opens (or creates) the store in `dir` and the gallery of the key with
    /// `owner_fingerprint`.
    pub fn open(
        dir: &Path,
        params: &Params,
        owner_fingerprint: &str,
    ) -> Result<Self, MatcherError> {
        Self::open_with_limit(dir, params, owner_fingerprint, DEFAULT_MAX_TEMPLATES)
    }

    pub fn open_with_limit(
        dir: &Path,
        params: &Params,
        owner_fingerprint: &str,
        max_templates: usize,
    ) -> Result<Self, MatcherError> {
        let galleries = Galleries::open(dir, params, max_templates)?;
        let tenant = tenant_for(owner_fingerprint);
        galleries.ensure_tenant(&tenant)?;
        Ok(BuiltinMatcher { galleries, tenant })
    }

    /// Number of enrolled templates.
    pub fn len(&self) -> usize {
        self.galleries.len(&self.tenant).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The templates of a gallery enrolled before galleries were bound to keys (empty if
    /// there is none). The key holder decides whether it is theirs.
    pub fn legacy_gallery(&self) -> Result<Vec<Enrolled>, MatcherError> {
        if !self.galleries.has_templates(LEGACY_TENANT)? {
            return Ok(Vec::new());
        }
        self.galleries.list(LEGACY_TENANT)
    }

    /// Makes the legacy gallery this owner's (one durable transaction). Only call it after
    /// checking that this key reads every legacy label.
    pub fn adopt_legacy_gallery(&self) -> Result<(), MatcherError> {
        self.galleries.rename_tenant(LEGACY_TENANT, &self.tenant)
    }
}

impl Matcher for BuiltinMatcher {
    fn enrol(
        &self,
        id: TemplateId,
        template: &EncryptedTemplate,
        label: &[u8],
    ) -> Result<Traffic, MatcherError> {
        self.galleries
            .enrol(&self.tenant, id, template.clone(), label)?;
        Ok(Traffic {
            sent: template.wire_len() + label.len(),
            received: 0,
        })
    }

    fn removal_block(&self, id: TemplateId) -> Result<RemovalBlock, MatcherError> {
        let (location, block) = self.galleries.block_of(&self.tenant, id)?;
        let traffic = Traffic {
            sent: 0,
            received: block.wire_len(),
        };
        Ok(RemovalBlock {
            location,
            block,
            traffic,
        })
    }

    fn erase(&self, id: TemplateId, negation: &EncryptedTemplate) -> Result<Traffic, MatcherError> {
        self.galleries.erase(&self.tenant, id, negation)?;
        Ok(Traffic {
            sent: negation.wire_len(),
            received: 0,
        })
    }

    fn relocate(
        &self,
        id: TemplateId,
        negation: &EncryptedTemplate,
        fresh: &EncryptedTemplate,
    ) -> Result<Relocated, MatcherError> {
        let to = self.galleries.relocate(&self.tenant, id, negation, fresh)?;
        Ok(Relocated {
            to,
            traffic: Traffic {
                sent: negation.wire_len() + fresh.wire_len(),
                received: 0,
            },
        })
    }

    fn list(&self) -> Result<Vec<Enrolled>, MatcherError> {
        self.galleries.list(&self.tenant)
    }

    fn verify(&self, probe: &EncryptedProbe, id: TemplateId) -> Result<Reply, MatcherError> {
        let result = self.galleries.verify(&self.tenant, probe, id)?;
        Ok(reply(probe, result))
    }

    fn identify_stream(
        &self,
        probe: &EncryptedProbe,
        sink: &mut BlockSink<'_>,
    ) -> Result<Streamed, MatcherError> {
        let params = *probe.params();
        let mut streamed = Streamed {
            blocks: 0,
            traffic: Traffic {
                sent: probe.wire_len(),
                received: MatchResult::max_wire_len(&params, 0),
            },
        };
        self.galleries.identify_chunks(
            &self.tenant,
            probe,
            IDENTIFY_CHUNK,
            |_| Ok(()),
            |_, part| {
                for b in part {
                    streamed.blocks += 1;
                    streamed.traffic.received += BlockResult::encoded_len(&params, b.entries.len());
                    sink(b)?;
                }
                Ok(())
            },
        )?;
        Ok(streamed)
    }

    fn describe(&self) -> String {
        format!(
            "built-in matcher (store {})",
            self.galleries.store().path().display()
        )
    }
}

/// What the exchange would weigh over a wire.
fn reply(probe: &EncryptedProbe, result: crate::he::MatchResult) -> Reply {
    Reply {
        traffic: Traffic {
            sent: probe.wire_len(),
            received: result.wire_len(),
        },
        result,
    }
}
