//! Tenants' encrypted galleries in memory (the core `Gallery`: packed blocks only, rebuilt
//! from the stored blocks at open), kept in step with the durable [`Store`]: every change
//! is planned against the gallery, committed to the store (block record and slot row, one
//! transaction), and only then applied in memory, before the caller hears back.
//!
//! Shared by the built-in matcher (one tenant per key) and the server (one per bearer
//! token).
//!
//! Locking, per tenant: `writer` serialises enrol/remove (and is the only lock held while
//! the store fsyncs); `gallery` is read-locked by matching and write-locked only for the
//! in-memory insert or subtraction; `labels` is separate, so listing never waits for a
//! long identify or an fsync. A poisoned lock is [`MatcherError::Poisoned`] (the server's
//! 500), never a client error.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use super::store::{SlotChange, StoreChange};
use super::{Enrolled, MatcherError, Store};
use crate::he::{
    BlockCiphertext, BlockRecord, BlockResult, EncryptedProbe, EncryptedTemplate, Gallery,
    GalleryBuilder, Location, MatchResult, Params, PreparedProbe, TemplateId,
};
use crate::labels::MAX_SEALED_LEN;

/// Default bound on the number of templates per tenant.
pub const DEFAULT_MAX_TEMPLATES: usize = 10_000;

struct Tenant {
    writer: Mutex<()>,
    gallery: RwLock<Gallery>,
    labels: RwLock<BTreeMap<TemplateId, Vec<u8>>>,
}

impl Tenant {
    fn new(gallery: Gallery, labels: BTreeMap<TemplateId, Vec<u8>>) -> Self {
        Tenant {
            writer: Mutex::new(()),
            gallery: RwLock::new(gallery),
            labels: RwLock::new(labels),
        }
    }
}

/// All tenants' galleries plus the store they come from.
pub struct Galleries {
    params: Params,
    store: Store,
    max_templates: usize,
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
}

fn poisoned<T>(_: T) -> MatcherError {
    MatcherError::Poisoned
}

impl Galleries {
    /// Opens the store in `dir` (migrating an older schema) and rebuilds every tenant's
    /// packed gallery from its stored blocks.
    pub fn open(dir: &Path, params: &Params, max_templates: usize) -> Result<Self, MatcherError> {
        let params = *params;
        let store = Store::open_with(dir, &params)?;
        let mut names: Vec<String> = store.tenants()?.into_iter().map(|(t, _)| t).collect();
        names.extend(store.gallery_tenants()?);
        names.sort();
        names.dedup();
        let mut tenants = HashMap::new();
        for name in names {
            let tenant = Self::load_tenant(&store, &params, &name)?;
            tenants.insert(name, Arc::new(tenant));
        }
        Ok(Galleries {
            params,
            store,
            max_templates,
            tenants: RwLock::new(tenants),
        })
    }

    /// Rebuilds one tenant's gallery and labels from the store.
    fn load_tenant(store: &Store, params: &Params, tenant: &str) -> Result<Tenant, MatcherError> {
        let mut builder = GalleryBuilder::new(params);
        store.for_each_block_batch(tenant, 1024, |batch| Ok(builder.add(batch)?))?;
        let mut labels = BTreeMap::new();
        let mut slots = Vec::new();
        for s in store.slots_of(tenant)? {
            slots.push((s.id, s.location));
            labels.insert(s.id, s.label);
        }
        let gallery = builder.finish(slots).map_err(|e| MatcherError::Store {
            path: store.path().display().to_string(),
            detail: format!("tenant {tenant}: {e}"),
        })?;
        Ok(Tenant::new(gallery, labels))
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn max_templates(&self) -> usize {
        self.max_templates
    }

    /// Makes sure a tenant exists in memory (the store learns of it at its first template
    /// or through [`Store::add_tenant`]).
    pub fn ensure_tenant(&self, tenant: &str) -> Result<(), MatcherError> {
        let mut map = self.tenants.write().map_err(poisoned)?;
        map.entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Tenant::new(Gallery::new(&self.params), BTreeMap::new())));
        Ok(())
    }

    /// Number of tenants.
    pub fn tenant_count(&self) -> usize {
        self.tenants.read().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether `tenant` has any template.
    pub fn has_templates(&self, tenant: &str) -> Result<bool, MatcherError> {
        let map = self.tenants.read().map_err(poisoned)?;
        match map.get(tenant) {
            Some(t) => Ok(!t.labels.read().map_err(poisoned)?.is_empty()),
            None => Ok(false),
        }
    }

    fn tenant(&self, tenant: &str) -> Result<Arc<Tenant>, MatcherError> {
        if let Some(t) = self.tenants.read().map_err(poisoned)?.get(tenant) {
            return Ok(t.clone());
        }
        self.ensure_tenant(tenant)?;
        self.tenant(tenant)
    }

    /// Moves every template of `from` to `to` (durably, one transaction), for a gallery
    /// whose owner was recorded under an older tenant name. `to` must be empty.
    pub fn rename_tenant(&self, from: &str, to: &str) -> Result<(), MatcherError> {
        let mut map = self.tenants.write().map_err(poisoned)?;
        if map
            .get(to)
            .is_some_and(|t| t.labels.read().is_ok_and(|l| !l.is_empty()))
        {
            return Err(MatcherError::BadInput {
                what: "tenant",
                detail: format!("{to} already has templates"),
            });
        }
        self.store.rename_tenant(from, to)?;
        if let Some(t) = map.remove(from) {
            map.insert(to.to_string(), t);
        }
        Ok(())
    }

    fn check_enrolment(
        &self,
        id: TemplateId,
        template: &EncryptedTemplate,
        label: &[u8],
    ) -> Result<(), MatcherError> {
        if template.params() != &self.params {
            return Err(crate::he::HeError::WrongParams {
                what: "encrypted template",
            }
            .into());
        }
        if !id.is_valid() {
            return Err(MatcherError::BadId(id));
        }
        if label.len() > MAX_SEALED_LEN {
            return Err(MatcherError::LabelTooLarge {
                got: label.len(),
                max: MAX_SEALED_LEN,
            });
        }
        Ok(())
    }

    /// Enrols a template (parameters already checked by parsing) under the caller's id with
    /// its sealed label.
    pub fn enrol(
        &self,
        tenant: &str,
        id: TemplateId,
        template: EncryptedTemplate,
        label: &[u8],
    ) -> Result<(), MatcherError> {
        self.check_enrolment(id, &template, label)?;
        let t = self.tenant(tenant)?;
        let _writer = t.writer.lock().map_err(poisoned)?;
        let change = {
            let g = t.gallery.read().map_err(poisoned)?;
            if g.contains(id) {
                return Err(MatcherError::DuplicateId(id));
            }
            if g.len() >= self.max_templates {
                return Err(MatcherError::GalleryFull {
                    max: self.max_templates,
                });
            }
            g.plan_insert(id, &template)?
        };
        let loc = change.location();
        self.store.commit(
            tenant,
            &StoreChange {
                block: loc.block,
                record: change.record(),
                slot: SlotChange::Fill {
                    id,
                    slot: loc.slot,
                    label,
                },
            },
        )?;
        t.gallery.write().map_err(poisoned)?.apply(change);
        t.labels
            .write()
            .map_err(poisoned)?
            .insert(id, label.to_vec());
        Ok(())
    }

    /// Enrols many templates, `per_commit` to a transaction (bulk loading: benchmarks and
    /// imports). Each transaction is durable before the next starts; if one fails, the
    /// tenant is reloaded from the store, so memory never runs ahead of the disk.
    pub fn enrol_many(
        &self,
        tenant: &str,
        items: Vec<(TemplateId, EncryptedTemplate, Vec<u8>)>,
        per_commit: usize,
    ) -> Result<(), MatcherError> {
        for (id, template, label) in &items {
            self.check_enrolment(*id, template, label)?;
        }
        let t = self.tenant(tenant)?;
        let _writer = t.writer.lock().map_err(poisoned)?;
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let part: Vec<_> = items.by_ref().take(per_commit.max(1)).collect();
            let outcome = self.enrol_part(tenant, &t, &part);
            if let Err(e) = outcome {
                let fresh = Self::load_tenant(&self.store, &self.params, tenant)?;
                *t.gallery.write().map_err(poisoned)? =
                    fresh.gallery.into_inner().map_err(poisoned)?;
                *t.labels.write().map_err(poisoned)? =
                    fresh.labels.into_inner().map_err(poisoned)?;
                return Err(e);
            }
        }
        Ok(())
    }

    fn enrol_part(
        &self,
        tenant: &str,
        t: &Tenant,
        part: &[(TemplateId, EncryptedTemplate, Vec<u8>)],
    ) -> Result<(), MatcherError> {
        let mut records: BTreeMap<usize, BlockRecord> = BTreeMap::new();
        let mut placed: Vec<(TemplateId, Location, &[u8])> = Vec::new();
        {
            let mut g = t.gallery.write().map_err(poisoned)?;
            for (id, template, label) in part {
                if g.contains(*id) {
                    return Err(MatcherError::DuplicateId(*id));
                }
                if g.len() >= self.max_templates {
                    return Err(MatcherError::GalleryFull {
                        max: self.max_templates,
                    });
                }
                let change = g.plan_insert(*id, template)?;
                let loc = change.location();
                records.insert(loc.block, g.apply(change));
                placed.push((*id, loc, label));
            }
        }
        let changes: Vec<StoreChange<'_>> = placed
            .iter()
            .map(|&(id, loc, label)| StoreChange {
                block: loc.block,
                record: &records[&loc.block],
                slot: SlotChange::Fill {
                    id,
                    slot: loc.slot,
                    label,
                },
            })
            .collect();
        self.store.commit_all(tenant, &changes)?;
        let mut labels = t.labels.write().map_err(poisoned)?;
        for (id, _, label) in placed {
            labels.insert(id, label.to_vec());
        }
        Ok(())
    }

    /// The block holding `id`, in full, with the slot: the first step of removal (only the
    /// key holder can use it; see SECURITY.md).
    pub fn block_of(
        &self,
        tenant: &str,
        id: TemplateId,
    ) -> Result<(Location, BlockCiphertext), MatcherError> {
        let t = self.tenant(tenant)?;
        let g = t.gallery.read().map_err(poisoned)?;
        if !g.contains(id) {
            return Err(MatcherError::UnknownId(id));
        }
        Ok(g.block_of(id)?)
    }

    /// Removes `id` by adding its owner's `negation` into its slot (durably), frees the
    /// slot and drops the label.
    pub fn erase(
        &self,
        tenant: &str,
        id: TemplateId,
        negation: &EncryptedTemplate,
    ) -> Result<(), MatcherError> {
        let t = self.tenant(tenant)?;
        let _writer = t.writer.lock().map_err(poisoned)?;
        let change = {
            let g = t.gallery.read().map_err(poisoned)?;
            if !g.contains(id) {
                return Err(MatcherError::UnknownId(id));
            }
            g.plan_erase(id, negation)?
        };
        self.store.commit(
            tenant,
            &StoreChange {
                block: change.location().block,
                record: change.record(),
                slot: SlotChange::Free { id },
            },
        )?;
        t.gallery.write().map_err(poisoned)?.apply(change);
        t.labels.write().map_err(poisoned)?.remove(&id);
        Ok(())
    }

    pub fn list(&self, tenant: &str) -> Result<Vec<Enrolled>, MatcherError> {
        let t = self.tenant(tenant)?;
        let labels = t.labels.read().map_err(poisoned)?;
        Ok(labels
            .iter()
            .map(|(&id, label)| Enrolled {
                id,
                label: label.clone(),
            })
            .collect())
    }

    /// Runs `f` on `tenant`'s gallery, read-locked (benchmarks time the core directly).
    pub fn with_gallery<T>(
        &self,
        tenant: &str,
        f: impl FnOnce(&Gallery) -> T,
    ) -> Result<T, MatcherError> {
        let t = self.tenant(tenant)?;
        let g = t.gallery.read().map_err(poisoned)?;
        Ok(f(&g))
    }

    pub fn len(&self, tenant: &str) -> Result<usize, MatcherError> {
        let t = self.tenant(tenant)?;
        let n = t.labels.read().map_err(poisoned)?.len();
        Ok(n)
    }

    pub fn verify(
        &self,
        tenant: &str,
        probe: &EncryptedProbe,
        id: TemplateId,
    ) -> Result<MatchResult, MatcherError> {
        let prepared = PreparedProbe::new(probe, &self.params)?;
        let t = self.tenant(tenant)?;
        let g = t.gallery.read().map_err(poisoned)?;
        if !g.contains(id) {
            return Err(MatcherError::UnknownId(id));
        }
        Ok(g.verify(&prepared, id)?)
    }

    pub fn identify(
        &self,
        tenant: &str,
        probe: &EncryptedProbe,
    ) -> Result<MatchResult, MatcherError> {
        let mut blocks = Vec::new();
        self.identify_chunks(
            tenant,
            probe,
            IDENTIFY_CHUNK,
            |_| Ok(()),
            |_, mut part| {
                blocks.append(&mut part);
                Ok(())
            },
        )?;
        Ok(MatchResult::new(&self.params, blocks))
    }

    /// 1:N, streamed: `start` hears the number of blocks first and makes the sink's
    /// state, then `sink` gets the blocks `chunk` at a time, in order; the state is
    /// returned. The gallery stays read-locked throughout (enrolments wait; listing does
    /// not).
    pub fn identify_chunks<S>(
        &self,
        tenant: &str,
        probe: &EncryptedProbe,
        chunk: usize,
        start: impl FnOnce(usize) -> Result<S, MatcherError>,
        mut sink: impl FnMut(&mut S, Vec<BlockResult>) -> Result<(), MatcherError>,
    ) -> Result<S, MatcherError> {
        let prepared = PreparedProbe::new(probe, &self.params)?;
        let t = self.tenant(tenant)?;
        let g = t.gallery.read().map_err(poisoned)?;
        let mut state = start(g.occupied_blocks())?;
        g.identify_chunks(&prepared, chunk, |part| sink(&mut state, part))?;
        Ok(state)
    }
}

/// Blocks computed (in parallel) per chunk of a streamed identify: ~2 MB of results.
pub const IDENTIFY_CHUNK: usize = 256;
