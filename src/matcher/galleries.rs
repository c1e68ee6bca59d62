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

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use super::{Enrolled, MatcherError, Store};
use crate::he::{
    EncryptedProbe, EncryptedTemplate, Gallery, MatchResult, Params, PreparedProbe, TemplateId,
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
    /// Opens the store in `dir` and rebuilds every tenant's packed gallery from it.
    pub fn open(dir: &Path, params: &Params, max_templates: usize) -> Result<Self, MatcherError> {
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
        Ok(Galleries {
            params,
            store,
            max_templates,
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
            if g.len() >= self.max_templates {
                return Err(MatcherError::GalleryFull {
                    max: self.max_templates,
                });
            }
        }
        self.store.insert(tenant, id, &template.to_bytes(), label)?;
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
