//! The matcher: one interface ([`Matcher`]: enrol, remove, list, verify 1:1, identify 1:N)
//! over encrypted templates and probes, with two implementations: [`BuiltinMatcher`]
//! (in-process, local store) and [`RemoteMatcher`] (HTTP client of `blindface serve`).
//!
//! A matcher never holds key material: it stores seeded template ciphertexts and
//! app-encrypted labels (see `crate::labels`), and answers probes with encrypted results
//! that only the key holder can decrypt. Template ids are chosen by the app (so it can bind
//! each label to its template); a matcher only checks they are in range and unique.
//!
//! [`MatcherSpec`] is the one parsed form of "which matcher" (`--matcher`, the app's
//! settings); [`api`] is the remote protocol's bodies and paths, which `blindface serve`
//! and [`RemoteMatcher`] share.

pub mod api;
mod builtin;
mod error;
mod galleries;
mod remote;
pub mod spec;
mod store;
#[cfg(any(test, feature = "test-hooks"))]
pub mod tampering;
pub mod tls;

pub use api::Credentials;
pub use builtin::BuiltinMatcher;
pub use error::{codes, MatcherError, StoredRecord};
pub use galleries::{
    return_free_heap, Galleries, Quotas, ResidencyChange, DEFAULT_MAX_TEMPLATES, IDENTIFY_CHUNK,
};
pub use remote::{Endpoint, RemoteMatcher, TokenStore, CLIENT_MAX_TEMPLATES};
pub use spec::{default_remote_url, MatcherSpec, SpecError};
pub use store::{SlotChange, Store, StoreChange, StoreUsage, StoredSlot, TableUsage, STORE_FILE};

use crate::he::{
    BlockCiphertext, BlockResult, EncryptedProbe, EncryptedTemplate, Location, MatchResult,
    TemplateId,
};

/// Bytes that crossed (or, for the built-in matcher, would cross) the boundary to the
/// matcher in one call, as the matcher implementation itself counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub sent: usize,
    pub received: usize,
}

impl std::ops::AddAssign for Traffic {
    fn add_assign(&mut self, o: Traffic) {
        self.sent += o.sent;
        self.received += o.received;
    }
}

/// A verify or identify answer with the bytes it took.
#[derive(Debug, Clone)]
pub struct Reply {
    pub result: MatchResult,
    pub traffic: Traffic,
}

/// Receives an identify's result blocks, in order, as they arrive; an error stops the
/// stream (the matcher returns it).
pub type BlockSink<'a> = dyn FnMut(BlockResult) -> Result<(), MatcherError> + 'a;

/// What a streamed identify took: the blocks handed to the sink and the bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streamed {
    pub blocks: usize,
    pub traffic: Traffic,
}

/// The block holding a template, in full, for its owner's removal step.
#[derive(Debug, Clone)]
pub struct RemovalBlock {
    pub location: Location,
    pub block: BlockCiphertext,
    pub traffic: Traffic,
}

/// One enrolled template as the matcher lists it: its id and its encrypted label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub id: TemplateId,
    /// The app-encrypted name (opaque to the matcher).
    pub label: Vec<u8>,
    /// The block and slot it sits in (what re-packing plans from).
    pub location: Location,
}

/// What a re-packing move did: the slot the template now sits in (`None`: no block
/// below its own had room, nothing changed) and the bytes it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relocated {
    pub to: Option<Location>,
    pub traffic: Traffic,
}

/// What every matcher offers. Implementations are `Send + Sync` and synchronous; call them
/// off any UI thread.
pub trait Matcher: Send + Sync {
    /// Adds a template under the app-chosen `id` with its encrypted label; returns once it
    /// is durable. An id already in use gives [`MatcherError::DuplicateId`].
    fn enrol(
        &self,
        id: TemplateId,
        template: &EncryptedTemplate,
        label: &[u8],
    ) -> Result<Traffic, MatcherError>;
    /// Removal, step 1: the full block holding `id` and its slot, for the key holder to
    /// compute the erasure (`he::erasure`).
    fn removal_block(&self, id: TemplateId) -> Result<RemovalBlock, MatcherError>;
    /// Removal, step 2: adds the owner's `negation` into the slot of `id` (durably), which
    /// then decrypts to zero and is reused; drops the label.
    fn erase(&self, id: TemplateId, negation: &EncryptedTemplate) -> Result<Traffic, MatcherError>;
    /// Re-packing: moves `id` into the first free slot of a lower-numbered block, in one
    /// durable step, with its owner's `negation` (cancelling the old slot) and `fresh`
    /// encryption of the same template (`he::relocation`); trailing blocks left empty are
    /// dropped. The label stays.
    fn relocate(
        &self,
        id: TemplateId,
        negation: &EncryptedTemplate,
        fresh: &EncryptedTemplate,
    ) -> Result<Relocated, MatcherError>;
    /// Every enrolled template id with its encrypted label and slot, in id order.
    fn list(&self) -> Result<Vec<Enrolled>, MatcherError>;
    /// 1:1: the encrypted distance between the probe and one template.
    fn verify(&self, probe: &EncryptedProbe, id: TemplateId) -> Result<Reply, MatcherError>;
    /// 1:N, streamed: the encrypted distances between the probe and every template, block
    /// by block into `sink`, never the whole result in one buffer.
    fn identify_stream(
        &self,
        probe: &EncryptedProbe,
        sink: &mut BlockSink<'_>,
    ) -> Result<Streamed, MatcherError>;
    /// 1:N into one in-memory result (small galleries, tests).
    fn identify(&self, probe: &EncryptedProbe) -> Result<Reply, MatcherError> {
        let mut blocks = Vec::new();
        let streamed = self.identify_stream(probe, &mut |b| {
            blocks.push(b);
            Ok(())
        })?;
        Ok(Reply {
            result: MatchResult::new(probe.params(), blocks),
            traffic: streamed.traffic,
        })
    }
    /// Where this matcher lives, for messages ("built-in store at DIR", "http://...").
    fn describe(&self) -> String;
    /// Whether the matcher answers now (a cheap request; the built-in one always does).
    fn health(&self) -> Result<(), MatcherError> {
        Ok(())
    }
}
