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
//! in-memory insert or subtraction. Labels are not held in memory: listing reads them
//! from the store, so it never waits for a long identify or an fsync. A poisoned lock is
//! [`MatcherError::Poisoned`] (the server's 500), never a client error.
//!
//! Residency: a gallery may hold only some blocks' ciphertexts in memory (a cluster node
//! keeps its shards': [`Galleries::set_residency`]); every block stays in the store, and
//! one not held is loaded from it before anything reads its ciphertext (an identify over
//! it, a change into it, its owner's copy), under the tenant's `writer` so the record
//! read is the one memory's slot table describes, and dropped again once that is done:
//! memory holds the residency's blocks, and beyond them only those a request is using.
//!
//! Parameters: each tenant's gallery has its own ([`Params`], a version): those of its
//! stored blocks (every block record names them), or, while it has no block, those of the
//! first template enrolled into it (an empty gallery takes any version this build knows;
//! `new_params` until then). A template or probe of another version than a gallery's is
//! [`MatcherError::GalleryParams`]: galleries of v1 and v2 keys live side by side, and
//! each is matched with probes of its own parameters only.
//!
//! Memory: every template and registered tenant is charged what it holds in memory
//! ([`Galleries::bytes_per_template`], the one place that cost is written down, and
//! [`Galleries::bytes_per_tenant`]) against [`Quotas`]; an enrolment or registration
//! that would exceed a quota or the global budget is refused before anything changes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::store::{SlotChange, StoreChange};
use super::{Enrolled, MatcherError, Store};
use crate::he::{
    BlockCiphertext, BlockRecord, BlockResult, EncryptedProbe, EncryptedTemplate, Gallery,
    GalleryBuilder, Location, MatchResult, Params, PreparedProbe, Residency, TemplateId,
};
use crate::labels::MAX_SEALED_LEN;

/// Default bound on the number of templates per tenant.
pub const DEFAULT_MAX_TEMPLATES: usize = 10_000;

/// What each tenant, and all of them together, may hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Templates per tenant.
    pub max_templates: usize,
    /// Bytes per tenant ([`Galleries::bytes_per_template`] each).
    pub max_tenant_bytes: u64,
    /// Bytes for every tenant and template together.
    pub memory_budget: u64,
}

impl Quotas {
    /// Only the per-tenant template count is bounded (the built-in matcher).
    pub fn templates_only(max_templates: usize) -> Quotas {
        Quotas {
            max_templates,
            max_tenant_bytes: u64::MAX,
            memory_budget: u64::MAX,
        }
    }
}

struct Tenant {
    writer: Mutex<()>,
    gallery: RwLock<Gallery>,
}

impl Tenant {
    fn new(gallery: Gallery) -> Self {
        Tenant {
            writer: Mutex::new(()),
            gallery: RwLock::new(gallery),
        }
    }

    fn len(&self) -> Result<usize, MatcherError> {
        Ok(self.gallery.read().map_err(poisoned)?.len())
    }
}

/// All tenants' galleries plus the store they come from.
pub struct Galleries {
    /// The parameters of a gallery that has no block yet.
    new_params: Params,
    store: Store,
    quotas: Quotas,
    /// Bytes charged against `quotas.memory_budget` (reserved before a write).
    used: AtomicU64,
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
    /// Which blocks every tenant's gallery keeps in memory.
    residency: parking_lot::RwLock<Residency>,
}

/// What [`Galleries::set_residency`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResidencyChange {
    /// Blocks whose ciphertext was dropped from memory.
    pub released: usize,
    /// Blocks loaded from the store.
    pub loaded: usize,
}

/// Blocks loaded from the store per read transaction (and per write lock of a gallery)
/// when a node takes shards: ~4 MB of records, so matching waits briefly at most.
const LOAD_BATCH: usize = 128;

fn poisoned<T>(_: T) -> MatcherError {
    MatcherError::Poisoned
}

impl Galleries {
    /// Opens the store in `dir` (migrating an older schema) and rebuilds every tenant's
    /// packed gallery from its stored blocks, with the parameters they name; a gallery
    /// with no block starts as one of `params` (and takes the first template's).
    pub fn open(dir: &Path, params: &Params, max_templates: usize) -> Result<Self, MatcherError> {
        Self::open_with(dir, params, Quotas::templates_only(max_templates))
    }

    /// [`Galleries::open`] with byte quotas too. What the store already holds is charged
    /// in full, even beyond the budget (nothing is dropped); new writes are then refused.
    pub fn open_with(dir: &Path, params: &Params, quotas: Quotas) -> Result<Self, MatcherError> {
        Self::open_holding(dir, params, quotas, Residency::All)
    }

    /// [`Galleries::open_with`], keeping in memory only the blocks `residency` names
    /// (the others' records are read but not expanded).
    pub fn open_holding(
        dir: &Path,
        params: &Params,
        quotas: Quotas,
        residency: Residency,
    ) -> Result<Self, MatcherError> {
        let params = *params;
        let store = Store::open(dir)?;
        let registered_tenants = store.tenants()?;
        let registered = registered_tenants.len() as u64;
        let mut names: Vec<String> = registered_tenants.into_iter().map(|(t, _)| t).collect();
        names.extend(store.gallery_tenants()?);
        names.sort();
        names.dedup();
        let mut tenants = HashMap::new();
        for name in names {
            let tenant = Self::load_tenant(&store, &params, &name, &residency)?;
            tenants.insert(name, Arc::new(tenant));
        }
        let mut used = registered * bytes_per_tenant();
        for t in tenants.values() {
            let g = t.gallery.read().map_err(poisoned)?;
            used += g.len() as u64 * bytes_per_template(g.params());
        }
        Ok(Galleries {
            new_params: params,
            store,
            quotas,
            used: AtomicU64::new(used),
            tenants: RwLock::new(tenants),
            residency: parking_lot::RwLock::new(residency),
        })
    }

    /// Rebuilds one tenant's gallery from the store, with the parameters its blocks name
    /// (`new_params` if it has none); labels stay in the store: [`Galleries::list`] reads
    /// them.
    fn load_tenant(
        store: &Store,
        new_params: &Params,
        tenant: &str,
        residency: &Residency,
    ) -> Result<Tenant, MatcherError> {
        let params = store.gallery_params(tenant)?.unwrap_or(*new_params);
        let mut builder = GalleryBuilder::holding(&params, residency.clone());
        store.for_each_block_batch(tenant, &params, 1024, |batch| Ok(builder.add(batch)?))?;
        let slots = store
            .slots_of(tenant)?
            .into_iter()
            .map(|s| (s.id, s.location));
        let gallery = builder.finish(slots).map_err(|e| MatcherError::Store {
            path: store.path().display().to_string(),
            detail: format!("tenant {tenant}: {e}"),
        })?;
        Ok(Tenant::new(gallery))
    }

    /// The parameters a gallery without blocks starts with.
    pub fn new_params(&self) -> &Params {
        &self.new_params
    }

    /// The parameters of `tenant`'s gallery: those of its blocks, or `None` while it has
    /// none (it takes the first template's then).
    pub fn gallery_params(&self, tenant: &str) -> Result<Option<Params>, MatcherError> {
        let t = self.tenant(tenant)?;
        let g = t.gallery.read().map_err(poisoned)?;
        Ok(fixed_params(&g))
    }

    /// [`MatcherError::GalleryParams`] unless a ciphertext of `params` can be matched
    /// with, or added to, `tenant`'s gallery (a cluster node checks before it scatters an
    /// identify or appends a removal to the log).
    pub fn check_params(&self, tenant: &str, params: &Params) -> Result<(), MatcherError> {
        let t = self.tenant(tenant)?;
        let g = t.gallery.read().map_err(poisoned)?;
        check_params(&g, params)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn max_templates(&self) -> usize {
        self.quotas.max_templates
    }

    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// Memory one enrolled template of `params` costs the matcher, in bytes: the one
    /// formula quotas and the budget use.
    pub fn bytes_per_template(params: &Params) -> u64 {
        bytes_per_template(params)
    }

    /// Memory one registered tenant costs before its first template.
    pub fn bytes_per_tenant(&self) -> u64 {
        bytes_per_tenant()
    }

    /// Bytes charged against the memory budget.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Templates of every tenant.
    pub fn template_count(&self) -> usize {
        self.tenants
            .read()
            .map(|m| m.values().map(|t| t.len().unwrap_or(0)).sum())
            .unwrap_or(0)
    }

    /// Charges `bytes` against the budget, or refuses with nothing charged.
    fn reserve(&self, bytes: u64) -> Result<(), MatcherError> {
        let budget = self.quotas.memory_budget;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= budget)
            })
            .map(|_| ())
            .map_err(|_| MatcherError::MemoryBudget { budget })
    }

    fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Registers a tenant durably, within the memory budget, if `admit` (run in the
    /// registering transaction: [`Store::register_tenant`]) says so; `false`, with nothing
    /// changed, if it does not.
    pub fn register_tenant(
        &self,
        tenant: &str,
        token_hash: &[u8; 32],
        admit: impl FnOnce(&redb::WriteTransaction) -> Result<bool, redb::Error>,
    ) -> Result<bool, MatcherError> {
        let cost = self.bytes_per_tenant();
        self.reserve(cost)?;
        match self.store.register_tenant(tenant, token_hash, admit) {
            Ok(true) => {
                self.ensure_tenant(tenant)?;
                Ok(true)
            }
            other => {
                self.release(cost);
                other
            }
        }
    }

    /// Makes sure a tenant exists in memory (the store learns of it at its first template
    /// or through [`Store::add_tenant`]).
    pub fn ensure_tenant(&self, tenant: &str) -> Result<(), MatcherError> {
        let mut map = self.tenants.write().map_err(poisoned)?;
        map.entry(tenant.to_string()).or_insert_with(|| {
            let residency = self.residency.read().clone();
            Arc::new(Tenant::new(Gallery::holding(&self.new_params, residency)))
        });
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
            Some(t) => Ok(t.len()? > 0),
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
        if map.get(to).is_some_and(|t| t.len().is_ok_and(|n| n > 0)) {
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

    /// Whether `tenant`'s gallery would take this enrolment now: every check
    /// [`Galleries::enrol`] makes before it plans (a cluster node's check before it
    /// appends an enrolment to the log).
    pub fn check_enrolment_into(
        &self,
        tenant: &str,
        id: TemplateId,
        template: &EncryptedTemplate,
        label: &[u8],
    ) -> Result<(), MatcherError> {
        self.check_enrolment(id, template, label)?;
        let t = self.tenant(tenant)?;
        let g = t.gallery.read().map_err(poisoned)?;
        check_params(&g, template.params())?;
        self.check_room(&g, id, template.params())?;
        let budget = self.quotas.memory_budget;
        if self
            .used_bytes()
            .saturating_add(bytes_per_template(template.params()))
            > budget
        {
            return Err(MatcherError::MemoryBudget { budget });
        }
        Ok(())
    }

    /// `UnknownId` unless `tenant`'s gallery holds `id`.
    pub fn check_known(&self, tenant: &str, id: TemplateId) -> Result<(), MatcherError> {
        if self
            .tenant(tenant)?
            .gallery
            .read()
            .map_err(poisoned)?
            .contains(id)
        {
            Ok(())
        } else {
            Err(MatcherError::UnknownId(id))
        }
    }

    /// The gallery-level checks of an enrolment of a template of `params`: a new id,
    /// within the tenant's quotas.
    fn check_room(&self, g: &Gallery, id: TemplateId, params: &Params) -> Result<(), MatcherError> {
        if g.contains(id) {
            return Err(MatcherError::DuplicateId(id));
        }
        if g.len() >= self.quotas.max_templates {
            return Err(MatcherError::GalleryFull {
                max: self.quotas.max_templates,
            });
        }
        let cost = bytes_per_template(params);
        if (g.len() as u64 + 1).saturating_mul(cost) > self.quotas.max_tenant_bytes {
            return Err(MatcherError::TenantQuota {
                max_bytes: self.quotas.max_tenant_bytes,
            });
        }
        Ok(())
    }

    fn check_enrolment(
        &self,
        id: TemplateId,
        template: &EncryptedTemplate,
        label: &[u8],
    ) -> Result<(), MatcherError> {
        if Params::of_version(template.params().version) != Some(*template.params()) {
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
        let params = *template.params();
        let t = self.tenant(tenant)?;
        let _writer = t.writer.lock().map_err(poisoned)?;
        self.take_params(&t, &params)?;
        let target = t.gallery.read().map_err(poisoned)?.first_with_room();
        self.hold_locked(tenant, &t, target)?;
        let change = {
            let g = t.gallery.read().map_err(poisoned)?;
            self.check_room(&g, id, &params)?;
            g.plan_insert(id, &template)?
        };
        let loc = change.location();
        let cost = bytes_per_template(&params);
        self.reserve(cost)?;
        let committed = self.store.commit(
            tenant,
            &params,
            &StoreChange {
                block: loc.block,
                record: change.record(),
                slot: SlotChange::Fill {
                    id,
                    slot: loc.slot,
                    label,
                },
                drop_from: None,
            },
        );
        if let Err(e) = committed {
            self.release(cost);
            return Err(e);
        }
        let mut g = t.gallery.write().map_err(poisoned)?;
        g.apply(change);
        g.release_only([loc.block]);
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
        let Some(params) = items.first().map(|(_, t, _)| *t.params()) else {
            return Ok(());
        };
        let t = self.tenant(tenant)?;
        let _writer = t.writer.lock().map_err(poisoned)?;
        // The gallery's version is the first template's from here (or it refuses it).
        self.take_params(&t, &params)?;
        if let Some((_, other, _)) = items.iter().find(|(_, t, _)| t.params() != &params) {
            return Err(MatcherError::GalleryParams {
                gallery: params.version,
                given: other.params().version,
            });
        }
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let part: Vec<_> = items.by_ref().take(per_commit.max(1)).collect();
            let outcome = self.enrol_part(tenant, &t, &part);
            if let Err(e) = outcome {
                let residency = self.residency.read().clone();
                let fresh = Self::load_tenant(&self.store, &self.new_params, tenant, &residency)?;
                *t.gallery.write().map_err(poisoned)? =
                    fresh.gallery.into_inner().map_err(poisoned)?;
                return Err(e);
            }
        }
        Ok(())
    }

    /// One transaction of [`Galleries::enrol_many`], charged against the budget first.
    fn enrol_part(
        &self,
        tenant: &str,
        t: &Tenant,
        part: &[(TemplateId, EncryptedTemplate, Vec<u8>)],
    ) -> Result<(), MatcherError> {
        let cost = part
            .iter()
            .map(|(_, template, _)| bytes_per_template(template.params()))
            .sum();
        self.reserve(cost)?;
        let outcome = self.enrol_part_reserved(tenant, t, part);
        if outcome.is_err() {
            self.release(cost);
        }
        outcome
    }

    fn enrol_part_reserved(
        &self,
        tenant: &str,
        t: &Tenant,
        part: &[(TemplateId, EncryptedTemplate, Vec<u8>)],
    ) -> Result<(), MatcherError> {
        let mut records: BTreeMap<usize, BlockRecord> = BTreeMap::new();
        let mut placed: Vec<(TemplateId, Location, &[u8])> = Vec::new();
        let params = {
            let mut g = t.gallery.write().map_err(poisoned)?;
            for (id, template, label) in part {
                if g.contains(*id) {
                    return Err(MatcherError::DuplicateId(*id));
                }
                if g.len() >= self.quotas.max_templates {
                    return Err(MatcherError::GalleryFull {
                        max: self.quotas.max_templates,
                    });
                }
                // A block not held has not been changed by this part yet (a block it
                // changed was held then and still is): the store's record is current.
                let target = g.first_with_room();
                self.hold_in(tenant, &mut g, target)?;
                let change = g.plan_insert(*id, template)?;
                let loc = change.location();
                records.insert(loc.block, g.apply(change));
                placed.push((*id, loc, label));
            }
            *g.params()
        };
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
                drop_from: None,
            })
            .collect();
        self.store.commit_all(tenant, &params, &changes)?;
        t.gallery
            .write()
            .map_err(poisoned)?
            .release_only(records.keys().copied());
        Ok(())
    }

    /// The block holding `id`, in full, with the slot: the first step of removal (only the
    /// key holder can use it; see SECURITY.md).
    pub fn block_of(
        &self,
        tenant: &str,
        id: TemplateId,
    ) -> Result<(Location, BlockCiphertext), MatcherError> {
        self.with_block_of(tenant, id, |g| Ok(g.block_of(id)?))
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
        let at = t.gallery.read().map_err(poisoned)?.location(id);
        self.hold_locked(tenant, &t, at.map(|l| l.block))?;
        let (change, params) = {
            let g = t.gallery.read().map_err(poisoned)?;
            if !g.contains(id) {
                return Err(MatcherError::UnknownId(id));
            }
            check_params(&g, negation.params())?;
            (g.plan_erase(id, negation)?, *g.params())
        };
        self.store.commit(
            tenant,
            &params,
            &StoreChange {
                block: change.location().block,
                record: change.record(),
                slot: SlotChange::Free { id },
                drop_from: change.drop_from(),
            },
        )?;
        self.release(bytes_per_template(&params));
        let block = change.location().block;
        let mut g = t.gallery.write().map_err(poisoned)?;
        g.apply(change);
        g.release_only([block]);
        Ok(())
    }

    /// Moves `id` into the first free slot of a lower-numbered block (re-packing, with
    /// its owner's `negation` and `fresh` encryption from `he::relocation`): the erasure,
    /// the fill, the slot row (label kept) and any trailing blocks left empty are one
    /// durable transaction. `None` (nothing changed) when no lower block has room.
    pub fn relocate(
        &self,
        tenant: &str,
        id: TemplateId,
        negation: &EncryptedTemplate,
        fresh: &EncryptedTemplate,
    ) -> Result<Option<Location>, MatcherError> {
        let t = self.tenant(tenant)?;
        let _writer = t.writer.lock().map_err(poisoned)?;
        let touched: Vec<usize> = {
            let g = t.gallery.read().map_err(poisoned)?;
            let from = g.location(id).map(|l| l.block);
            from.into_iter().chain(g.first_with_room()).collect()
        };
        self.hold_locked(tenant, &t, touched)?;
        let (planned, params) = {
            let g = t.gallery.read().map_err(poisoned)?;
            if !g.contains(id) {
                return Err(MatcherError::UnknownId(id));
            }
            check_params(&g, negation.params())?;
            check_params(&g, fresh.params())?;
            (g.plan_move(id, negation, fresh)?, *g.params())
        };
        let Some(planned) = planned else {
            return Ok(None);
        };
        let label = self
            .store
            .slot(tenant, id)?
            .ok_or(MatcherError::UnknownId(id))?
            .label;
        let to = planned.fill.location();
        self.store.commit_all(
            tenant,
            &params,
            &[
                StoreChange {
                    block: planned.erase.location().block,
                    record: planned.erase.record(),
                    slot: SlotChange::Free { id },
                    drop_from: planned.erase.drop_from(),
                },
                StoreChange {
                    block: to.block,
                    record: planned.fill.record(),
                    slot: SlotChange::Fill {
                        id,
                        slot: to.slot,
                        label: &label,
                    },
                    drop_from: None,
                },
            ],
        )?;
        let from = planned.erase.location().block;
        let mut g = t.gallery.write().map_err(poisoned)?;
        g.apply_move(planned);
        g.release_only([from, to.block]);
        Ok(Some(to))
    }

    /// `tenant`'s templates with their encrypted labels, in id order, read from the store
    /// (labels are not kept in memory; the read sees the last committed change and waits
    /// for no lock).
    pub fn list(&self, tenant: &str) -> Result<Vec<Enrolled>, MatcherError> {
        Ok(self
            .store
            .slots_of(tenant)?
            .into_iter()
            .map(|s| Enrolled {
                id: s.id,
                label: s.label,
                location: s.location,
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
        self.tenant(tenant)?.len()
    }

    pub fn verify(
        &self,
        tenant: &str,
        probe: &EncryptedProbe,
        id: TemplateId,
    ) -> Result<MatchResult, MatcherError> {
        let prepared = PreparedProbe::new(probe, probe.params())?;
        self.with_block_of(tenant, id, |g| {
            check_params(g, probe.params())?;
            Ok(g.verify(&prepared, id)?)
        })
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
        Ok(MatchResult::new(probe.params(), blocks))
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
        let prepared = PreparedProbe::new(probe, probe.params())?;
        let t = self.tenant(tenant)?;
        self.with_held(
            tenant,
            &t,
            |g| g.occupied_block_numbers(),
            |g| {
                check_params(g, probe.params())?;
                let mut state = start(g.occupied_blocks())?;
                if g.block_count() > 0 {
                    g.identify_chunks(&prepared, chunk, |part| sink(&mut state, part))?;
                }
                Ok(state)
            },
        )
    }
}

impl Galleries {
    /// The numbers of `tenant`'s blocks that hold a template, ascending.
    pub fn occupied_blocks(&self, tenant: &str) -> Result<Vec<usize>, MatcherError> {
        let t = self.tenant(tenant)?;
        let g = t.gallery.read().map_err(poisoned)?;
        Ok(g.occupied_block_numbers())
    }

    /// An identify over the blocks `numbers` of `tenant`'s gallery only, `chunk` at a time
    /// into `sink`, in the order given (a cluster node's share of an identify).
    pub fn identify_blocks(
        &self,
        tenant: &str,
        probe: &EncryptedProbe,
        numbers: &[usize],
        chunk: usize,
        sink: impl FnMut(Vec<BlockResult>) -> Result<(), MatcherError>,
    ) -> Result<(), MatcherError> {
        let prepared = PreparedProbe::new(probe, probe.params())?;
        let t = self.tenant(tenant)?;
        self.with_held(
            tenant,
            &t,
            |_| numbers.to_vec(),
            |g| {
                check_params(g, probe.params())?;
                g.identify_blocks(&prepared, numbers, chunk, sink)
            },
        )
    }

    /// Runs `f` on `tenant`'s gallery with the block of `id` held; `UnknownId` if the
    /// gallery has no `id`.
    fn with_block_of<T>(
        &self,
        tenant: &str,
        id: TemplateId,
        f: impl FnOnce(&Gallery) -> Result<T, MatcherError>,
    ) -> Result<T, MatcherError> {
        let t = self.tenant(tenant)?;
        self.with_held(
            tenant,
            &t,
            |g| g.location(id).map(|l| l.block).into_iter().collect(),
            |g| {
                if !g.contains(id) {
                    return Err(MatcherError::UnknownId(id));
                }
                f(g)
            },
        )
    }

    /// Runs `f` on `tenant`'s gallery read-locked, with the blocks `needs` names held
    /// (loaded from the store first if they are not: under the writer, so no change
    /// comes between the record read and memory's slot table).
    fn with_held<T>(
        &self,
        tenant: &str,
        t: &Tenant,
        needs: impl Fn(&Gallery) -> Vec<usize>,
        f: impl FnOnce(&Gallery) -> Result<T, MatcherError>,
    ) -> Result<T, MatcherError> {
        {
            let g = t.gallery.read().map_err(poisoned)?;
            if g.not_held(needs(&g)).is_empty() {
                return f(&g);
            }
        }
        let writer = t.writer.lock().map_err(poisoned)?;
        let blocks = needs(&*t.gallery.read().map_err(poisoned)?);
        let loaded = self.hold_locked(tenant, t, blocks)?;
        // Read-locked before the writer goes: nothing can release them in between.
        let g = t.gallery.read().map_err(poisoned)?;
        drop(writer);
        let outcome = f(&g);
        drop(g);
        // The blocks this request loaded go again (unless the residency took them since).
        let _writer = t.writer.lock().map_err(poisoned)?;
        t.gallery.write().map_err(poisoned)?.release_only(loaded);
        outcome
    }

    /// Makes `t`'s gallery one of `params` if it has no block yet (the caller holds the
    /// tenant's writer), or refuses [`MatcherError::GalleryParams`] if it has blocks of
    /// other parameters.
    fn take_params(&self, t: &Tenant, params: &Params) -> Result<(), MatcherError> {
        let mut g = t.gallery.write().map_err(poisoned)?;
        check_params(&g, params)?;
        if g.params() != params {
            let residency = self.residency.read().clone();
            *g = Gallery::holding(params, residency);
        }
        Ok(())
    }

    /// Loads the blocks `blocks` of `tenant` that are not held, a batch per write lock
    /// (the caller holds the tenant's writer), returning those it loaded.
    fn hold_locked(
        &self,
        tenant: &str,
        t: &Tenant,
        blocks: impl IntoIterator<Item = usize>,
    ) -> Result<Vec<usize>, MatcherError> {
        let missing = t.gallery.read().map_err(poisoned)?.not_held(blocks);
        for part in missing.chunks(LOAD_BATCH) {
            self.hold_in(
                tenant,
                &mut *t.gallery.write().map_err(poisoned)?,
                part.iter().copied(),
            )?;
        }
        Ok(missing)
    }

    /// Loads into `g` (write-locked, the tenant's writer held) those of `blocks` it does
    /// not hold, from the store's records.
    fn hold_in(
        &self,
        tenant: &str,
        g: &mut Gallery,
        blocks: impl IntoIterator<Item = usize>,
    ) -> Result<(), MatcherError> {
        let missing = g.not_held(blocks);
        if !missing.is_empty() {
            let params = *g.params();
            g.hold(self.store.block_records(tenant, &params, &missing)?)?;
        }
        Ok(())
    }

    /// Keeps in memory, from now on, only the blocks `residency` names, in every
    /// tenant's gallery: drops the others' ciphertexts (also those loaded for one
    /// request) and loads those it names from the store, a batch at a time (matching
    /// goes on between batches; a request needing a block not loaded yet loads it).
    pub fn set_residency(&self, residency: Residency) -> Result<ResidencyChange, MatcherError> {
        *self.residency.write() = residency.clone();
        let tenants: Vec<(String, Arc<Tenant>)> = self
            .tenants
            .read()
            .map_err(poisoned)?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut change = ResidencyChange::default();
        for (name, t) in tenants {
            let _writer = t.writer.lock().map_err(poisoned)?;
            change.released += t
                .gallery
                .write()
                .map_err(poisoned)?
                .set_residency(residency.clone());
            let missing = t.gallery.read().map_err(poisoned)?.missing(&residency);
            change.loaded += self.hold_locked(&name, &t, missing)?.len();
        }
        if change.released > 0 {
            return_free_heap();
        }
        Ok(change)
    }

    /// Blocks held in memory, and blocks in all, over every tenant.
    pub fn held_blocks(&self) -> (usize, usize) {
        let Ok(map) = self.tenants.read() else {
            return (0, 0);
        };
        map.values()
            .filter_map(|t| t.gallery.read().ok())
            .fold((0, 0), |(held, all), g| {
                (held + g.held_blocks(), all + g.block_count())
            })
    }
}

/// Returns memory the allocator holds free to the OS (glibc keeps freed blocks of a
/// gallery's size in its arenas: a node that gave up shards would otherwise keep their
/// resident memory). Nothing elsewhere.
pub fn return_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Blocks computed (in parallel) per chunk of a streamed identify: ~2 MB of results.
pub const IDENTIFY_CHUNK: usize = 256;

/// Memory of one enrolled template: its share of a packed block ((k + 1) polynomials per
/// `slots_per_block` templates, the only ciphertext kept), its seed in the block's
/// record, the largest sealed label, and map and slot-table entries. A freed slot's
/// block stays allocated until the slot is reused; this charges templates, not blocks.
fn bytes_per_template(p: &Params) -> u64 {
    let poly = (p.polynomial_size * 8) as u64;
    let block_share = ((p.glwe_dimension as u64 + 1) * poly).div_ceil(p.slots_per_block() as u64);
    // Its seed (32 bytes in memory), its slot (16) and its slot-table entry (~48 with the
    // hash table's spare room); the label stays in the store.
    block_share + 32 + 16 + 48
}

/// Memory of one registered tenant without templates: its maps, locks and token entry.
fn bytes_per_tenant() -> u64 {
    1024
}

/// A gallery's parameters once it has a block (before, it takes any template's).
fn fixed_params(g: &Gallery) -> Option<Params> {
    (g.block_count() > 0).then_some(*g.params())
}

/// [`MatcherError::GalleryParams`] unless a ciphertext of `given` parameters can be
/// compared with (or added to) `g`: a gallery without blocks takes any.
fn check_params(g: &Gallery, given: &Params) -> Result<(), MatcherError> {
    match fixed_params(g) {
        Some(p) if &p != given => Err(MatcherError::GalleryParams {
            gallery: p.version,
            given: given.version,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Galleries of v1 and v2 templates in one store: each answers exactly, a template or
    /// probe of the other version is refused with both versions named and changes
    /// nothing, an empty gallery takes the first template's version, and all of it holds
    /// after the store is opened again (with either `new_params`).
    #[test]
    fn galleries_of_v1_and_v2_live_side_by_side_and_refuse_a_mix() {
        use crate::he::{decrypt, encrypt_probe, encrypt_template, synthetic_templates, SecretKey};

        let (v1, v2) = (Params::v1(), Params::v2());
        let (k1, k2) = (SecretKey::generate(&v1), SecretKey::generate(&v2));
        let (t1, t2) = (
            synthetic_templates(20, 1, &v1),
            synthetic_templates(30, 2, &v2),
        );
        let dir = tempfile::tempdir().unwrap();
        let enrolled = |g: &Galleries| {
            for (tenant, key, ts) in [("a", &k1, &t1), ("b", &k2, &t2)] {
                for (i, t) in ts.iter().enumerate() {
                    let id = TemplateId(i as u64 + 1);
                    g.enrol(tenant, id, encrypt_template(key, t), b"").unwrap();
                }
            }
        };
        let exact = |g: &Galleries| {
            for (tenant, key, ts) in [("a", &k1, &t1), ("b", &k2, &t2)] {
                for t in [&ts[0], &ts[ts.len() - 1]] {
                    let (probe, ctx) = encrypt_probe(key, t);
                    let r = g.identify(tenant, &probe).unwrap();
                    assert_eq!(r.params(), key.params());
                    let got = decrypt(key, &ctx, &r).unwrap();
                    assert_eq!(got.len(), ts.len());
                    for d in got {
                        assert_eq!(d.distance_sq, t.distance_sq(&ts[d.id.0 as usize - 1]));
                    }
                    let one = decrypt(key, &ctx, &g.verify(tenant, &probe, TemplateId(2)).unwrap())
                        .unwrap();
                    let two = one.iter().find(|d| d.id == TemplateId(2)).unwrap();
                    assert_eq!(two.distance_sq, t.distance_sq(&ts[1]));
                }
            }
            assert_eq!(g.gallery_params("a").unwrap(), Some(v1));
            assert_eq!(g.gallery_params("b").unwrap(), Some(v2));
            // 20 v1 templates are 2 blocks of 15; 30 v2 templates 2 blocks of 25.
            assert_eq!(g.occupied_blocks("a").unwrap(), vec![0, 1]);
            assert_eq!(g.occupied_blocks("b").unwrap(), vec![0, 1]);
        };
        let mixed_refused = |g: &Galleries| {
            let used = g.used_bytes();
            let other = encrypt_template(&k2, &t2[0]);
            let e = g
                .enrol("a", TemplateId(99), other.clone(), b"")
                .unwrap_err();
            assert!(
                matches!(
                    e,
                    MatcherError::GalleryParams {
                        gallery: 1,
                        given: 2
                    }
                ),
                "{e}"
            );
            assert!(e.to_string().contains("v1") && e.to_string().contains("v2"));
            let e = g
                .enrol_many("a", vec![(TemplateId(99), other.clone(), vec![])], 10)
                .unwrap_err();
            assert!(matches!(e, MatcherError::GalleryParams { .. }), "{e}");
            // A mixed batch into the v1 gallery: named by the gallery's version, not by
            // the batch's first template's.
            let mixed = vec![
                (TemplateId(99), other.clone(), vec![]),
                (TemplateId(98), encrypt_template(&k1, &t1[0]), vec![]),
            ];
            let e = g.enrol_many("a", mixed, 10).unwrap_err();
            assert!(
                matches!(
                    e,
                    MatcherError::GalleryParams {
                        gallery: 1,
                        given: 2
                    }
                ),
                "{e}"
            );
            let e = g
                .check_enrolment_into("a", TemplateId(99), &other, b"")
                .unwrap_err();
            assert!(matches!(e, MatcherError::GalleryParams { .. }), "{e}");
            let (probe, _) = encrypt_probe(&k1, &t1[0]);
            let e = g.identify("b", &probe).unwrap_err();
            assert!(
                matches!(
                    e,
                    MatcherError::GalleryParams {
                        gallery: 2,
                        given: 1
                    }
                ),
                "{e}"
            );
            let e = g.verify("b", &probe, TemplateId(1)).unwrap_err();
            assert!(matches!(e, MatcherError::GalleryParams { .. }), "{e}");
            let e = g
                .identify_blocks("b", &probe, &[0], 1, |_| Ok(()))
                .unwrap_err();
            assert!(matches!(e, MatcherError::GalleryParams { .. }), "{e}");
            assert_eq!((g.len("a").unwrap(), g.len("b").unwrap()), (20, 30));
            assert_eq!(g.used_bytes(), used, "nothing charged");
        };

        let g = Galleries::open(dir.path(), &v2, 100).unwrap();
        // An empty gallery: any known version's probe finds nobody, in its own parameters.
        for (key, t) in [(&k1, &t1[0]), (&k2, &t2[0])] {
            let (probe, ctx) = encrypt_probe(key, t);
            let r = g.identify("a", &probe).unwrap();
            assert_eq!(r.params(), key.params());
            assert!(decrypt(key, &ctx, &r).unwrap().is_empty());
        }
        assert_eq!(g.gallery_params("a").unwrap(), None);
        enrolled(&g);
        exact(&g);
        mixed_refused(&g);
        let used = g.used_bytes();
        assert_eq!(
            used,
            20 * bytes_per_template(&v1) + 30 * bytes_per_template(&v2)
        );
        drop(g);
        for new_params in [v1, v2] {
            let g = Galleries::open(dir.path(), &new_params, 100).unwrap();
            assert_eq!(g.used_bytes(), used);
            exact(&g);
            mixed_refused(&g);
        }
    }

    /// A gallery holding one block in four (a cluster node's shards): whatever needs a
    /// block it does not hold loads it from the store first, every answer decrypts
    /// exactly, and a sweep drops what was loaded for single requests.
    #[test]
    fn blocks_not_held_are_loaded_when_needed_and_answer_exactly() {
        use std::collections::BTreeMap;

        use crate::he::{
            decrypt, encrypt_probe, encrypt_template, erasure, relocation, synthetic_templates,
            SecretKey, Template,
        };

        let p = Params::v1();
        let m = p.slots_per_block();
        let key = SecretKey::generate(&p);
        let dir = tempfile::tempdir().unwrap();
        let templates = synthetic_templates(3 * m + 4, 7, &p);
        let kept = Residency::Modulo {
            of: 4,
            kept: [1].into(),
        };
        let quotas = Quotas::templates_only(1000);
        let g = Galleries::open_holding(dir.path(), &p, quotas, kept.clone()).unwrap();
        let mut plain: BTreeMap<TemplateId, Template> = BTreeMap::new();
        for (i, t) in templates.iter().enumerate() {
            let id = TemplateId(i as u64 + 1);
            g.enrol("t", id, encrypt_template(&key, t), b"").unwrap();
            plain.insert(id, t.clone());
        }
        // Each block was held while a template went in, and released after.
        assert_eq!(g.held_blocks(), (1, 4));
        assert_eq!(
            g.set_residency(kept.clone()).unwrap(),
            ResidencyChange::default()
        );
        let exact = |g: &Galleries, plain: &BTreeMap<TemplateId, Template>| {
            for probe_of in [0, m + 3, templates.len() - 1] {
                let t = &templates[probe_of];
                let (probe, ctx) = encrypt_probe(&key, t);
                let got = decrypt(&key, &ctx, &g.identify("t", &probe).unwrap()).unwrap();
                assert_eq!(got.len(), plain.len());
                for d in got {
                    assert_eq!(d.distance_sq, t.distance_sq(&plain[&d.id]), "{}", d.id);
                }
                let id = TemplateId(probe_of as u64 + 1);
                if plain.contains_key(&id) {
                    let one = decrypt(&key, &ctx, &g.verify("t", &probe, id).unwrap()).unwrap();
                    let d = one.iter().find(|d| d.id == id).unwrap();
                    assert_eq!(d.distance_sq, 0);
                }
            }
        };
        exact(&g, &plain);
        assert_eq!(g.held_blocks().0, 1, "what a request loaded goes after it");

        // An erasure in block 2 and a move out of block 3 into its slot, both not held.
        let erased = TemplateId(2 * m as u64 + 1);
        let (loc, block) = g.block_of("t", erased).unwrap();
        g.erase("t", erased, &erasure(&key, &block, loc.slot).unwrap())
            .unwrap();
        plain.remove(&erased);
        let last = TemplateId(templates.len() as u64);
        let (from, block) = g.block_of("t", last).unwrap();
        let (negation, fresh) = relocation(&key, &block, from.slot).unwrap();
        let to = g.relocate("t", last, &negation, &fresh).unwrap();
        assert_eq!(to, Some(loc));
        assert_eq!(g.held_blocks().0, 1);
        exact(&g, &plain);

        // Taking every shard loads the rest; the store reopened whole agrees.
        let all = Residency::Modulo {
            of: 4,
            kept: (0..4).collect(),
        };
        let change = g.set_residency(all).unwrap();
        assert_eq!(change.released, 0);
        assert_eq!(g.held_blocks(), (4, 4));
        assert_eq!(change.loaded, 3);
        exact(&g, &plain);
        drop(g);
        let whole = Galleries::open_with(dir.path(), &p, quotas).unwrap();
        assert_eq!(whole.held_blocks(), (4, 4));
        exact(&whole, &plain);
    }

    #[test]
    fn a_template_costs_what_the_gallery_holds() {
        let b = bytes_per_template(&Params::v1());
        // 2,185 bytes of block + seed + slot + entry: ~2.3 KB (measured resident memory
        // per template: BENCHMARKS.md).
        assert!((2_250..2_400).contains(&b), "{b}");
    }
}
