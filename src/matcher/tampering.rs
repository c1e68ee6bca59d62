//! `Tampering`: a `Matcher` that passes every call to a built-in matcher and lets a test
//! rewrite the answers on their way back, as a lying matcher (or someone answering in its
//! place) could. The tests of what the client detects (forged, relabelled, shifted
//! results) use it; it exists only in the library's own tests and with the `test-hooks`
//! feature, never in the product.

use super::{
    BlockSink, BuiltinMatcher, Enrolled, Matcher, MatcherError, Relocated, RemovalBlock, Reply,
    Streamed, Traffic,
};
use crate::he::{BlockResult, EncryptedProbe, EncryptedTemplate, TemplateId};

/// Rewrites a verify reply, given the id it was asked for.
type VerifyHook = Box<dyn Fn(TemplateId, &mut Reply) + Send + Sync>;

/// A built-in matcher whose verify replies, identify blocks and listings pass through
/// hooks (each a no-op until set).
pub struct Tampering {
    inner: BuiltinMatcher,
    verify: VerifyHook,
    block: Box<dyn Fn(&mut BlockResult) + Send + Sync>,
    keep: Box<dyn Fn(usize) -> bool + Send + Sync>,
    listed: Box<dyn Fn() + Send + Sync>,
}

impl Tampering {
    pub fn new(inner: BuiltinMatcher) -> Self {
        Tampering {
            inner,
            verify: Box::new(|_, _| {}),
            block: Box::new(|_| {}),
            keep: Box::new(|_| true),
            listed: Box::new(|| {}),
        }
    }

    /// Rewrites each verify reply (with the id it was asked for).
    pub fn on_verify(mut self, f: impl Fn(TemplateId, &mut Reply) + Send + Sync + 'static) -> Self {
        self.verify = Box::new(f);
        self
    }

    /// Rewrites each identify block as it streams.
    pub fn on_block(mut self, f: impl Fn(&mut BlockResult) + Send + Sync + 'static) -> Self {
        self.block = Box::new(f);
        self
    }

    /// Keeps only the identify blocks (by their place in the stream) `f` says to keep:
    /// a matcher that leaves part of the gallery out.
    pub fn keep_blocks(mut self, f: impl Fn(usize) -> bool + Send + Sync + 'static) -> Self {
        self.keep = Box::new(f);
        self
    }

    /// Hears each listing.
    pub fn on_list(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.listed = Box::new(f);
        self
    }
}

impl Matcher for Tampering {
    fn enrol(
        &self,
        id: TemplateId,
        template: &EncryptedTemplate,
        label: &[u8],
    ) -> Result<Traffic, MatcherError> {
        self.inner.enrol(id, template, label)
    }

    fn removal_block(&self, id: TemplateId) -> Result<RemovalBlock, MatcherError> {
        self.inner.removal_block(id)
    }

    fn erase(&self, id: TemplateId, negation: &EncryptedTemplate) -> Result<Traffic, MatcherError> {
        self.inner.erase(id, negation)
    }

    fn relocate(
        &self,
        id: TemplateId,
        negation: &EncryptedTemplate,
        fresh: &EncryptedTemplate,
    ) -> Result<Relocated, MatcherError> {
        self.inner.relocate(id, negation, fresh)
    }

    fn list(&self) -> Result<Vec<Enrolled>, MatcherError> {
        (self.listed)();
        self.inner.list()
    }

    fn verify(&self, probe: &EncryptedProbe, id: TemplateId) -> Result<Reply, MatcherError> {
        let mut r = self.inner.verify(probe, id)?;
        (self.verify)(id, &mut r);
        Ok(r)
    }

    fn identify_stream(
        &self,
        probe: &EncryptedProbe,
        sink: &mut BlockSink<'_>,
    ) -> Result<Streamed, MatcherError> {
        let mut index = 0;
        let streamed = self.inner.identify_stream(probe, &mut |mut b| {
            index += 1;
            if !(self.keep)(index - 1) {
                return Ok(());
            }
            (self.block)(&mut b);
            sink(b)
        })?;
        Ok(streamed)
    }

    fn describe(&self) -> String {
        format!("{} (tampering)", self.inner.describe())
    }
}
