//! Tenants' encrypted galleries in memory (the core `Gallery`, packed blocks derived at
//! open), kept in step with the durable [`Store`]: every enrol and remove is committed to
//! the store before the in-memory gallery changes and before the caller hears back.
//!
//! Shared by the built-in matcher (one tenant) and the server (one per bearer token).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};

use super::{Enrolled, MatcherError, Store};
use crate::he::{
    EncryptedProbe, EncryptedTemplate, Gallery, MatchResult, Params, PreparedProbe, TemplateId,
};
use crate::labels::MAX_SEALED_LEN;

/// Default bound on the number of templates per tenant.
pub const DEFAULT_MAX_TEMPLATES: usize = 10_000;

/// Ids are random in [1, 2^53) so they survive JSON numbers and reveal no enrolment order.
const ID_RANGE: u64 = 1 << 53;

struct Tenant {
    gallery: Gallery,
    labels: BTreeMap<TemplateId, Vec<u8>>,
}

impl Tenant {
    fn new(params: &Params) -> Self {
        Tenant {
            gallery: Gallery::new(params),
            labels: BTreeMap::new(),
        }
    }
}

/// All tenants' galleries plus the store they come from.
pub struct Galleries {
    params: Params,
    store: Store,
    max_templates: usize,
    tenants: RwLock<HashMap<String, Arc<RwLock<Tenant>>>>,
}

fn poisoned() -> MatcherError {
    MatcherError::BadInput {
        what: "state",
        detail: "an earlier request panicked; restart the matcher".into(),
    }
}

impl Galleries {
    /// Opens the store in `dir` and rebuilds every tenant's packed gallery from it.
    pub fn open(dir: &Path, max_templates: usize) -> Result<Self, MatcherError> {
        let params = Params::v1();
        let store = Store::open(dir)?;
        let mut tenants: HashMap<String, Tenant> = HashMap::new();
        for (name, _) in store.tenants()? {
            tenants.insert(name, Tenant::new(&params));
        }
        for t in store.templates()? {
            let template = EncryptedTemplate::from_bytes(&t.template, &params)?;
            let tenant = tenants
                .entry(t.tenant.clone())
                .or_insert_with(|| Tenant::new(&params));
            tenant.gallery.insert(t.id, template)?;
            tenant.labels.insert(t.id, t.label);
        }
        Ok(Galleries {
            params,
            store,
            max_templates,
            tenants: RwLock::new(
                tenants
                    .into_iter()
                    .map(|(k, v)| (k, Arc::new(RwLock::new(v))))
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
        let mut map = self.tenants.write().map_err(|_| poisoned())?;
        map.entry(tenant.to_string())
            .or_insert_with(|| Arc::new(RwLock::new(Tenant::new(&self.params))));
        Ok(())
    }

    /// Number of tenants.
    pub fn tenant_count(&self) -> usize {
        self.tenants.read().map(|m| m.len()).unwrap_or(0)
    }

    fn tenant(&self, tenant: &str) -> Result<Arc<RwLock<Tenant>>, MatcherError> {
        if let Some(t) = self.tenants.read().map_err(|_| poisoned())?.get(tenant) {
            return Ok(t.clone());
        }
        self.ensure_tenant(tenant)?;
        self.tenant(tenant)
    }

    /// Enrols a template (parameters already checked by parsing) with its sealed label.
    pub fn enrol(
        &self,
        tenant: &str,
        template: EncryptedTemplate,
        label: &[u8],
    ) -> Result<TemplateId, MatcherError> {
        if template.params() != &self.params {
            return Err(crate::he::HeError::WrongParams {
                what: "encrypted template",
            }
            .into());
        }
        if label.len() > MAX_SEALED_LEN {
            return Err(MatcherError::LabelTooLarge {
                got: label.len(),
                max: MAX_SEALED_LEN,
            });
        }
        let t = self.tenant(tenant)?;
        let mut t = t.write().map_err(|_| poisoned())?;
        if t.gallery.len() >= self.max_templates {
            return Err(MatcherError::GalleryFull {
                max: self.max_templates,
            });
        }
        let id = loop {
            let id = random_id()?;
            if !t.gallery.contains(id) {
                break id;
            }
        };
        self.store.insert(tenant, id, &template.to_bytes(), label)?;
        t.gallery.insert(id, template)?;
        t.labels.insert(id, label.to_vec());
        Ok(id)
    }

    pub fn remove(&self, tenant: &str, id: TemplateId) -> Result<(), MatcherError> {
        let t = self.tenant(tenant)?;
        let mut t = t.write().map_err(|_| poisoned())?;
        if !t.gallery.contains(id) {
            return Err(MatcherError::UnknownId(id));
        }
        self.store.remove(tenant, id)?;
        t.gallery.remove(id)?;
        t.labels.remove(&id);
        Ok(())
    }

    pub fn list(&self, tenant: &str) -> Result<Vec<Enrolled>, MatcherError> {
        let t = self.tenant(tenant)?;
        let t = t.read().map_err(|_| poisoned())?;
        Ok(t.labels
            .iter()
            .map(|(&id, label)| Enrolled {
                id,
                label: label.clone(),
            })
            .collect())
    }

    pub fn len(&self, tenant: &str) -> Result<usize, MatcherError> {
        let t = self.tenant(tenant)?;
        let t = t.read().map_err(|_| poisoned())?;
        Ok(t.gallery.len())
    }

    pub fn verify(
        &self,
        tenant: &str,
        probe: &EncryptedProbe,
        id: TemplateId,
    ) -> Result<MatchResult, MatcherError> {
        let prepared = PreparedProbe::new(probe, &self.params)?;
        let t = self.tenant(tenant)?;
        let t = t.read().map_err(|_| poisoned())?;
        if !t.gallery.contains(id) {
            return Err(MatcherError::UnknownId(id));
        }
        Ok(t.gallery.verify(&prepared, id)?)
    }

    pub fn identify(
        &self,
        tenant: &str,
        probe: &EncryptedProbe,
    ) -> Result<MatchResult, MatcherError> {
        let prepared = PreparedProbe::new(probe, &self.params)?;
        let t = self.tenant(tenant)?;
        let t = t.read().map_err(|_| poisoned())?;
        Ok(t.gallery.identify(&prepared)?)
    }
}

fn random_id() -> Result<TemplateId, MatcherError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| MatcherError::BadInput {
        what: "random generator",
        detail: e.to_string(),
    })?;
    Ok(u64::from_le_bytes(b) % (ID_RANGE - 1) + 1)
}
