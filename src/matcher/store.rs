//! The durable store of encrypted galleries: one redb file (embedded, ACID, crash-safe)
//! per data directory.
//!
//! Layout (file `DIR/matcher.redb`):
//! - `templates_v1`: key `(tenant, id)`, value `u32 LE template length || seeded template
//!   ciphertext (EncryptedTemplate::to_bytes) || encrypted label`.
//! - `tenants_v1`: key tenant id, value SHA-256 of the tenant's bearer token (32 bytes).
//! - `meta_v1`: `schema` = 1.
//! - `invites_v1` (server): key SHA-256 of a one-time registration code, value its
//!   creation time (Unix seconds); removed in the transaction that registers with it.
//! - `admin_v1` (server): `token` = SHA-256 of the admin token.
//!
//! Packed blocks are never stored: they are derived at open. Every write is one
//! transaction committed with immediate durability (fsync) before it returns, so a crash
//! (kill -9, power loss) keeps every acknowledged write and never exposes half of one.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::MatcherError;
use crate::he::TemplateId;

/// Name of the store file inside a data directory.
pub const STORE_FILE: &str = "matcher.redb";

const TEMPLATES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("templates_v1");
const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants_v1");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta_v1");
const INVITES: TableDefinition<&[u8], u64> = TableDefinition::new("invites_v1");
const ADMIN: TableDefinition<&str, &[u8]> = TableDefinition::new("admin_v1");
const SCHEMA: u64 = 1;

/// One stored template: id, seeded ciphertext bytes, encrypted label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTemplate {
    pub tenant: String,
    pub id: TemplateId,
    pub template: Vec<u8>,
    pub label: Vec<u8>,
}

/// The redb-backed store.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

// redb::Error is large; it only lives inside write closures and is converted at once.
#[allow(clippy::result_large_err)]
impl Store {
    /// Opens (or creates) the store in `dir`, creating the directory if needed.
    pub fn open(dir: &Path) -> Result<Store, MatcherError> {
        let path = dir.join(STORE_FILE);
        let shown = path.display().to_string();
        let err = |detail: String| MatcherError::Store {
            path: shown.clone(),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create directory: {e}")))?;
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => MatcherError::StoreLocked {
                path: shown.clone(),
            },
            e => err(e.to_string()),
        })?;
        let store = Store { db, path };
        store
            .write(|txn| {
                txn.open_table(TEMPLATES)?;
                txn.open_table(TENANTS)?;
                txn.open_table(INVITES)?;
                txn.open_table(ADMIN)?;
                let mut meta = txn.open_table(META)?;
                let schema = meta.get("schema")?.map(|v| v.value());
                match schema {
                    None => {
                        meta.insert("schema", SCHEMA)?;
                    }
                    Some(SCHEMA) => {}
                    Some(other) => {
                        return Ok(Err(format!(
                            "schema version {other}, this build reads {SCHEMA}; upgrade blindface"
                        )))
                    }
                }
                Ok(Ok(()))
            })?
            .map_err(err)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, e: impl std::fmt::Display) -> MatcherError {
        MatcherError::Store {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        }
    }

    /// Runs `f` in one write transaction and commits it durably.
    fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, MatcherError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let out = f(&txn).map_err(|e| self.error(e))?;
        txn.commit().map_err(|e| self.error(e))?;
        Ok(out)
    }

    /// Every stored template, grouped in (tenant, id) order.
    pub fn templates(&self) -> Result<Vec<StoredTemplate>, MatcherError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(TEMPLATES).map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.error(e))? {
            let (k, v) = row.map_err(|e| self.error(e))?;
            let (tenant, id) = k.value();
            let id = TemplateId(id);
            let (template, label) = split_record(v.value())
                .ok_or_else(|| self.error("a template record is corrupt"))?;
            out.push(StoredTemplate {
                tenant: tenant.to_string(),
                id,
                template: template.to_vec(),
                label: label.to_vec(),
            });
        }
        Ok(out)
    }

    /// Every tenant with the SHA-256 of its token.
    pub fn tenants(&self) -> Result<Vec<(String, [u8; 32])>, MatcherError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(TENANTS).map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.error(e))? {
            let (k, v) = row.map_err(|e| self.error(e))?;
            let hash: [u8; 32] = v
                .value()
                .try_into()
                .map_err(|_| self.error("a tenant record is corrupt"))?;
            out.push((k.value().to_string(), hash));
        }
        Ok(out)
    }

    /// Records a tenant and its token hash (durable on return).
    pub fn add_tenant(&self, tenant: &str, token_hash: &[u8; 32]) -> Result<(), MatcherError> {
        self.write(|txn| {
            txn.open_table(TENANTS)?
                .insert(tenant, token_hash.as_slice())?;
            Ok(())
        })
    }

    /// Records a tenant with its token hash, consuming the one-time code whose hash is
    /// `invite` in the same transaction (`None`: open registration). `false`, with nothing
    /// changed, if that code is unknown or already used.
    pub fn register_tenant(
        &self,
        tenant: &str,
        token_hash: &[u8; 32],
        invite: Option<&[u8; 32]>,
    ) -> Result<bool, MatcherError> {
        // A failed check must abort the transaction, so it travels as Ok(false) out of
        // the closure only after nothing was written.
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let valid = (|| {
            if let Some(code) = invite {
                if txn.open_table(INVITES)?.remove(code.as_slice())?.is_none() {
                    return Ok(false);
                }
            }
            txn.open_table(TENANTS)?
                .insert(tenant, token_hash.as_slice())?;
            Ok::<_, redb::Error>(true)
        })()
        .map_err(|e| self.error(e))?;
        if valid {
            txn.commit().map_err(|e| self.error(e))?;
        } else {
            txn.abort().map_err(|e| self.error(e))?;
        }
        Ok(valid)
    }

    /// Records one-time registration codes (their hashes), durably.
    pub fn add_invites(&self, hashes: &[[u8; 32]], now: u64) -> Result<(), MatcherError> {
        self.write(|txn| {
            let mut t = txn.open_table(INVITES)?;
            for h in hashes {
                t.insert(h.as_slice(), now)?;
            }
            Ok(())
        })
    }

    /// Unused registration codes.
    pub fn invite_count(&self) -> Result<u64, MatcherError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let t = txn.open_table(INVITES).map_err(|e| self.error(e))?;
        t.len().map_err(|e| self.error(e))
    }

    /// The SHA-256 of the admin token, once one was set.
    pub fn admin_token_hash(&self) -> Result<Option<[u8; 32]>, MatcherError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let t = txn.open_table(ADMIN).map_err(|e| self.error(e))?;
        let v = t.get("token").map_err(|e| self.error(e))?;
        v.map(|v| {
            v.value()
                .try_into()
                .map_err(|_| self.error("the admin token record is corrupt"))
        })
        .transpose()
    }

    /// Sets (or replaces) the admin token's hash, durably.
    pub fn set_admin_token_hash(&self, hash: &[u8; 32]) -> Result<(), MatcherError> {
        self.write(|txn| {
            txn.open_table(ADMIN)?.insert("token", hash.as_slice())?;
            Ok(())
        })
    }

    /// A template row's value: `u32 LE length || template || label`.
    fn record(&self, template: &[u8], label: &[u8]) -> Result<Vec<u8>, MatcherError> {
        let len = u32::try_from(template.len()).map_err(|_| self.error("template too large"))?;
        let mut record = Vec::with_capacity(4 + template.len() + label.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(template);
        record.extend_from_slice(label);
        Ok(record)
    }

    /// Stores one template and its label (durable on return).
    pub fn insert(
        &self,
        tenant: &str,
        id: TemplateId,
        template: &[u8],
        label: &[u8],
    ) -> Result<(), MatcherError> {
        let record = self.record(template, label)?;
        self.write(|txn| {
            txn.open_table(TEMPLATES)?
                .insert((tenant, id.0), record.as_slice())?;
            Ok(())
        })
    }

    /// Stores many templates of one tenant in one durable transaction (bulk import):
    /// `(id, seeded template bytes, label)` each.
    pub fn insert_many(
        &self,
        tenant: &str,
        rows: &[(TemplateId, Vec<u8>, Vec<u8>)],
    ) -> Result<(), MatcherError> {
        let records = rows
            .iter()
            .map(|(id, template, label)| Ok((id.0, self.record(template, label)?)))
            .collect::<Result<Vec<_>, MatcherError>>()?;
        self.write(|txn| {
            let mut t = txn.open_table(TEMPLATES)?;
            for (id, record) in &records {
                t.insert((tenant, *id), record.as_slice())?;
            }
            Ok(())
        })
    }

    /// Deletes one template; `false` if it was not there.
    pub fn remove(&self, tenant: &str, id: TemplateId) -> Result<bool, MatcherError> {
        self.write(|txn| {
            let mut table = txn.open_table(TEMPLATES)?;
            let existed = table.remove((tenant, id.0))?.is_some();
            Ok(existed)
        })
    }

    /// Moves every template (and the token hash, if any) of tenant `from` to `to`, in one
    /// durable transaction.
    pub fn rename_tenant(&self, from: &str, to: &str) -> Result<(), MatcherError> {
        self.write(|txn| {
            let mut table = txn.open_table(TEMPLATES)?;
            let rows: Vec<(u64, Vec<u8>)> = table
                .range((from, 0u64)..=(from, u64::MAX))?
                .map(|r| r.map(|(k, v)| (k.value().1, v.value().to_vec())))
                .collect::<Result<_, _>>()?;
            for (id, record) in rows {
                table.remove((from, id))?;
                table.insert((to, id), record.as_slice())?;
            }
            let mut tenants = txn.open_table(TENANTS)?;
            let hash = tenants.remove(from)?.map(|v| v.value().to_vec());
            if let Some(hash) = hash {
                tenants.insert(to, hash.as_slice())?;
            }
            Ok(())
        })
    }
}

fn split_record(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(v.get(..4)?.try_into().ok()?) as usize;
    let rest = v.get(4..)?;
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}
