//! Tenants' encrypted galleries in memory (the core `Gallery`, packed blocks derived at
//! open), kept in step with the durable [`Store`]: every enrol and remove is committed to
//! the store before the in-memory gallery changes and before the caller hears back.
//!
//! Shared by the built-in matcher (one tenant per key) and the server (one per bearer
//! token).
//!
//! Locking, per tenant: `writer` serialises enrol/remove (and is the only lock held while
//! the store fsyncs); `gallery` is read-locked by matching and write-locked only for the
//! in-memory insert or subtraction; `labels` is separate, so listing never waits for a
//! long identify or an fsync. A poisoned lock is [`MatcherError::Poisoned`] (the server's
//! 500), never a client error.
//!
//! Memory: every template and registered tenant is charged what it holds in memory
//! ([`Galleries::bytes_per_template`], the one place that cost is written down, and
//! [`Galleries::bytes_per_tenant`]) against [`Quotas`]; an enrolment or registration
//! that would exceed a quota or the global budget is refused before anything changes.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::{Enrolled, MatcherError, Store};
use crate::he::{
    EncryptedProbe, EncryptedTemplate, Gallery, MatchResult, Params, PreparedProbe, TemplateId,
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
    quotas: Quotas,
    /// Bytes charged against `quotas.memory_budget` (reserved before a write).
    used: AtomicU64,
    tenants: RwLock<HashMap<String, Arc<Tenant>>>,
}

fn poisoned<T>(_: T) -> MatcherError {
    MatcherError::Poisoned
}

impl Galleries {
    /// Opens the store in `dir` and rebuilds every tenant's packed gallery from it.
    pub fn open(dir: &Path, params: &Params, max_templates: usize) -> Result<Self, MatcherError> {
        Self::open_with(dir, params, Quotas::templates_only(max_templates))
    }

    /// [`Galleries::open`] with byte quotas too. What the store already holds is charged
    /// in full, even beyond the budget (nothing is dropped); new writes are then refused.
    pub fn open_with(dir: &Path, params: &Params, quotas: Quotas) -> Result<Self, MatcherError> {
        let params = *params;
        let store = Store::open(dir)?;
        let mut tenants: HashMap<String, (Gallery, BTreeMap<TemplateId, Vec<u8>>)> = HashMap::new();
        for (name, _) in store.tenants()? {
            tenants.insert(name, (Gallery::new(&params), BTreeMap::new()));
        }
        for t in store.templates()? {
            let template = EncryptedTemplate::from_bytes(&t.template, &params)?;
            let (gallery, labels) = tenants
                .entry(t.tenant.clone())
                .or_insert_with(|| (Gallery::new(&params), BTreeMap::new()));
            gallery.insert(t.id, template)?;
            labels.insert(t.id, t.label);
        }
        let registered = store.tenants()?.len() as u64;
        let templates: usize = tenants.values().map(|(_, l)| l.len()).sum();
        let used =
            registered * bytes_per_tenant(&params) + templates as u64 * bytes_per_template(&params);
        Ok(Galleries {
            params,
            store,
            quotas,
            used: AtomicU64::new(used),
            tenants: RwLock::new(
                tenants
                    .into_iter()
                    .map(|(k, (g, l))| (k, Arc::new(Tenant::new(g, l))))
                    .collect(),
            ),
        })
    }

    pub fn params(&self) -> &Params {
        &self.params
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

    /// Memory one enrolled template costs the matcher, in bytes: the one formula quotas
    /// and the budget use.
    pub fn bytes_per_template(&self) -> u64 {
        bytes_per_template(&self.params)
    }

    /// Memory one registered tenant costs before its first template.
    pub fn bytes_per_tenant(&self) -> u64 {
        bytes_per_tenant(&self.params)
    }

    /// Bytes charged against the memory budget.
    pub fn used_bytes(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Templates of every tenant.
    pub fn template_count(&self) -> usize {
        self.tenants
            .read()
            .map(|m| {
                m.values()
                    .map(|t| t.labels.read().map(|l| l.len()).unwrap_or(0))
                    .sum()
            })
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

    /// Registers a tenant durably, within the memory budget, consuming the one-time code
    /// whose hash is `invite` (`None`: open registration); `false` if that code is unknown
    /// or used, with nothing changed.
    pub fn register_tenant(
        &self,
        tenant: &str,
        token_hash: &[u8; 32],
        invite: Option<&[u8; 32]>,
    ) -> Result<bool, MatcherError> {
        let cost = self.bytes_per_tenant();
        self.reserve(cost)?;
        match self.store.register_tenant(tenant, token_hash, invite) {
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

    /// Enrols a template (parameters already checked by parsing) under the caller's id with
    /// its sealed label.
    pub fn enrol(
        &self,
        tenant: &str,
        id: TemplateId,
        template: EncryptedTemplate,
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
        let t = self.tenant(tenant)?;
        let _writer = t.writer.lock().map_err(poisoned)?;
        {
            let g = t.gallery.read().map_err(poisoned)?;
            if g.contains(id) {
                return Err(MatcherError::DuplicateId(id));
            }
            if g.len() >= self.quotas.max_templates {
                return Err(MatcherError::GalleryFull {
                    max: self.quotas.max_templates,
                });
            }
            let cost = self.bytes_per_template();
            if (g.len() as u64 + 1).saturating_mul(cost) > self.quotas.max_tenant_bytes {
                return Err(MatcherError::TenantQuota {
                    max_bytes: self.quotas.max_tenant_bytes,
                });
            }
        }
        let cost = self.bytes_per_template();
        self.reserve(cost)?;
        if let Err(e) = self.store.insert(tenant, id, &template.to_bytes(), label) {
            self.release(cost);
            return Err(e);
        }
        t.gallery.write().map_err(poisoned)?.insert(id, template)?;
        t.labels
            .write()
            .map_err(poisoned)?
            .insert(id, label.to_vec());
        Ok(())
    }

    pub fn remove(&self, tenant: &str, id: TemplateId) -> Result<(), MatcherError> {
        let t = self.tenant(tenant)?;
        let _writer = t.writer.lock().map_err(poisoned)?;
        if !t.gallery.read().map_err(poisoned)?.contains(id) {
            return Err(MatcherError::UnknownId(id));
        }
        self.store.remove(tenant, id)?;
        self.release(self.bytes_per_template());
        t.gallery.write().map_err(poisoned)?.remove(id)?;
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
        let prepared = PreparedProbe::new(probe, &self.params)?;
        let t = self.tenant(tenant)?;
        let g = t.gallery.read().map_err(poisoned)?;
        Ok(g.identify(&prepared)?)
    }
}

/// Memory of one enrolled template: its seeded GLWE kept for removals and re-packing (one
/// body polynomial plus a seed), its share of a packed block ((k + 1) polynomials per
/// `slots_per_block` templates), the largest sealed label, and map entries. Issue 13
/// changes the gallery's layout: this is the one place to update.
fn bytes_per_template(p: &Params) -> u64 {
    let poly = (p.polynomial_size * 8) as u64;
    let seeded = poly + 64;
    let block_share = ((p.glwe_dimension as u64 + 1) * poly).div_ceil(p.slots_per_block() as u64);
    seeded + block_share + MAX_SEALED_LEN as u64 + 128
}

/// Memory of one registered tenant without templates: its maps, locks and token entry.
fn bytes_per_tenant(_p: &Params) -> u64 {
    1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_costs_what_the_gallery_holds() {
        let b = bytes_per_template(&Params::v1());
        // 16 KiB seeded body + 2,185 bytes of block + label: ~18.7 KB today.
        assert!((18_000..19_500).contains(&b), "{b}");
    }
}
