//! The durable store of encrypted galleries: one redb file (embedded, ACID, crash-safe)
//! per data directory. Blocks are the unit of storage: no per-template ciphertext is kept.
//!
//! Layout (file `DIR/matcher.redb`, schema 2):
//! - `blocks_v2`: key `(tenant, block number << 8 | part)`, values the parts (3,860
//!   bytes each, the last shorter) of a [`BlockRecord`] (its bytes: `record`).
//! - `slots_v2`: key `(tenant, id)`, value `u64 block || u8 slot || encrypted label`.
//! - `tenants_v1`: key tenant id, value SHA-256 of the tenant's bearer token (32 bytes).
//! - `meta_v1`: `schema` = 2.
//!
//! The server keeps its own tables in the same file (one-time registration codes, the
//! admin token: `crate::server`), through [`Store::read`], [`Store::write`] and the
//! `admit` step of [`Store::register_tenant`].
//!
//! Schema 1 is migrated at open, in one transaction (`migrate`). A newer schema is
//! refused with a message. Every write is one transaction committed with immediate
//! durability (fsync) before it returns, so a crash (kill -9, power loss) keeps every
//! acknowledged write and never exposes half of one.

mod migrate;
mod record;
mod tables;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, ReadableTableMetadata};

use self::record::{
    decode_record, encode_record, encode_slot, put_record, split_slot, PART_BITS, PART_BYTES,
    PART_MASK,
};
use self::tables::{BLOCKS, META, SCHEMA, SLOTS, TENANTS};
use super::error::MatcherError;
use crate::he::{BlockRecord, Location, Params, TemplateId};

/// Name of the store file inside a data directory.
pub const STORE_FILE: &str = "matcher.redb";

/// redb's page cache: the galleries live in memory already (rebuilt at open), so the
/// store needs little cache of its own; redb's default (1 GiB) would double the
/// matcher's memory for a large gallery.
const CACHE_BYTES: usize = 16 << 20;

/// One stored template as listed: tenant, id, where it sits, encrypted label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSlot {
    pub tenant: String,
    pub id: TemplateId,
    pub location: Location,
    pub label: Vec<u8>,
}

/// Where a store's bytes go (redb's own accounting), for `blindface bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StoreUsage {
    /// Pages redb has allocated, in bytes (the file may be longer: free space).
    pub allocated_bytes: u64,
    pub blocks: TableUsage,
    pub slots: TableUsage,
}

/// One table's bytes: what was stored (keys and values), its index and metadata, and
/// what its pages hold unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TableUsage {
    pub stored_bytes: u64,
    pub metadata_bytes: u64,
    pub fragmented_bytes: u64,
    pub leaf_pages: u64,
}

/// One change to a tenant's gallery, written in one transaction: a block's new record and
/// the slot row it fills or frees.
pub struct StoreChange<'a> {
    pub block: usize,
    pub record: &'a BlockRecord,
    pub slot: SlotChange<'a>,
    /// Blocks from this number on are deleted after this change (the gallery dropped its
    /// trailing empty blocks: [`crate::he::Change::drop_from`]).
    pub drop_from: Option<usize>,
}

pub enum SlotChange<'a> {
    Fill {
        id: TemplateId,
        slot: usize,
        label: &'a [u8],
    },
    Free {
        id: TemplateId,
    },
}

/// The redb-backed store.
pub struct Store {
    db: Database,
    path: PathBuf,
    params: Params,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

// redb::Error is large; it only lives inside write closures and is converted at once.
#[allow(clippy::result_large_err)]
impl Store {
    /// Opens (or creates, or migrates) the store in `dir` for this build's parameters.
    pub fn open(dir: &Path) -> Result<Store, MatcherError> {
        Self::open_with(dir, &Params::v1())
    }

    /// Opens (or creates, or migrates) the store in `dir`, creating the directory if
    /// needed.
    pub fn open_with(dir: &Path, params: &Params) -> Result<Store, MatcherError> {
        let path = dir.join(STORE_FILE);
        let shown = path.display().to_string();
        let err = |detail: String| MatcherError::Store {
            path: shown.clone(),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create directory: {e}")))?;
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => MatcherError::StoreLocked {
                    path: shown.clone(),
                },
                e => err(e.to_string()),
            })?;
        let store = Store {
            db,
            path,
            params: *params,
        };
        store.upgrade().map_err(err)?;
        Ok(store)
    }

    /// Creates the tables, or migrates schema 1, or refuses a newer schema; a refused or
    /// failed migration leaves the file untouched (the transaction is aborted).
    fn upgrade(&self) -> Result<(), String> {
        let txn = self.db.begin_write().map_err(|e| e.to_string())?;
        match self.upgrade_in(&txn) {
            Ok(Ok(())) => txn.commit().map_err(|e| e.to_string()),
            Ok(Err(refused)) => {
                txn.abort().ok();
                Err(refused)
            }
            Err(e) => {
                txn.abort().ok();
                Err(e.to_string())
            }
        }
    }

    fn upgrade_in(&self, txn: &redb::WriteTransaction) -> Result<Result<(), String>, redb::Error> {
        let params = self.params;
        {
            txn.open_table(BLOCKS)?;
            txn.open_table(SLOTS)?;
            txn.open_table(TENANTS)?;
            let mut meta = txn.open_table(META)?;
            let schema = meta.get("schema")?.map(|v| v.value());
            match schema {
                Some(SCHEMA) => return Ok(Ok(())),
                None | Some(1) => {}
                Some(other) => {
                    return Ok(Err(format!(
                        "schema version {other}, this build reads {SCHEMA} (and migrates 1); upgrade blindface"
                    )))
                }
            }
            if schema == Some(1) {
                if let Err(e) = migrate::migrate_v1(txn, &params)? {
                    return Ok(Err(e));
                }
            }
            meta.insert("schema", SCHEMA)?;
            Ok(Ok(()))
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rewrites the file without the free pages left by earlier transactions (after a bulk
    /// load, or by an operator at a quiet moment); `false` if there was nothing to do.
    pub fn compact(&mut self) -> Result<bool, MatcherError> {
        self.db.compact().map_err(|e| self.error(e))
    }

    fn error(&self, e: impl std::fmt::Display) -> MatcherError {
        MatcherError::Store {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        }
    }

    /// Runs `f` in one read transaction (the server reads its own tables with it).
    pub fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, MatcherError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        f(&txn).map_err(|e| self.error(e))
    }

    /// Runs `f` in one write transaction and commits it durably (the server writes its
    /// own tables with it).
    pub fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, MatcherError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let out = f(&txn).map_err(|e| self.error(e))?;
        txn.commit().map_err(|e| self.error(e))?;
        Ok(out)
    }

    /// How the store's pages are used.
    pub fn usage(&self) -> Result<StoreUsage, MatcherError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let allocated_bytes = txn
            .stats()
            .map(|s| s.allocated_pages() * s.page_size() as u64)
            .map_err(|e| self.error(e))?;
        let table = |def| -> Result<TableUsage, MatcherError> {
            let t = txn.open_table(def).map_err(|e| self.error(e))?;
            let s = t.stats().map_err(|e| self.error(e))?;
            Ok(TableUsage {
                stored_bytes: s.stored_bytes(),
                metadata_bytes: s.metadata_bytes(),
                fragmented_bytes: s.fragmented_bytes(),
                leaf_pages: s.leaf_pages(),
            })
        };
        let usage = StoreUsage {
            allocated_bytes,
            blocks: table(BLOCKS)?,
            slots: table(SLOTS)?,
        };
        txn.abort().map_err(|e| self.error(e))?;
        Ok(usage)
    }

    /// Every stored template's slot and label, in (tenant, id) order.
    pub fn slots(&self) -> Result<Vec<StoredSlot>, MatcherError> {
        self.slots_in(None)
    }

    /// `tenant`'s stored templates, in id order.
    pub fn slots_of(&self, tenant: &str) -> Result<Vec<StoredSlot>, MatcherError> {
        self.slots_in(Some(tenant))
    }

    fn slots_in(&self, tenant: Option<&str>) -> Result<Vec<StoredSlot>, MatcherError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(SLOTS).map_err(|e| self.error(e))?;
        let rows = match tenant {
            Some(t) => table.range((t, 0u64)..=(t, u64::MAX)),
            None => table.iter(),
        }
        .map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (k, v) = row.map_err(|e| self.error(e))?;
            let (tenant, id) = k.value();
            let (location, label) =
                split_slot(v.value()).ok_or_else(|| self.error("a slot record is corrupt"))?;
            out.push(StoredSlot {
                tenant: tenant.to_string(),
                id: TemplateId(id),
                location,
                label: label.to_vec(),
            });
        }
        Ok(out)
    }

    /// One stored template's slot row, if it is stored.
    pub fn slot(&self, tenant: &str, id: TemplateId) -> Result<Option<StoredSlot>, MatcherError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(SLOTS).map_err(|e| self.error(e))?;
        let Some(v) = table.get((tenant, id.0)).map_err(|e| self.error(e))? else {
            return Ok(None);
        };
        let (location, label) =
            split_slot(v.value()).ok_or_else(|| self.error("a slot record is corrupt"))?;
        Ok(Some(StoredSlot {
            tenant: tenant.to_string(),
            id,
            location,
            label: label.to_vec(),
        }))
    }

    /// Number of stored blocks of `tenant`.
    pub fn block_count(&self, tenant: &str) -> Result<usize, MatcherError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(BLOCKS).map_err(|e| self.error(e))?;
        let mut n = 0;
        let mut last = None;
        for row in table
            .range((tenant, 0u64)..=(tenant, u64::MAX))
            .map_err(|e| self.error(e))?
        {
            let block = row.map_err(|e| self.error(e))?.0.value().1 >> PART_BITS;
            if last != Some(block) {
                n += 1;
                last = Some(block);
            }
        }
        Ok(n)
    }

    /// Hands `tenant`'s block records to `f` in batches of up to `batch`, in block order
    /// (so a large gallery is never held twice in memory at open).
    pub fn for_each_block_batch(
        &self,
        tenant: &str,
        batch: usize,
        mut f: impl FnMut(Vec<(usize, BlockRecord)>) -> Result<(), MatcherError>,
    ) -> Result<(), MatcherError> {
        let params = self.params;
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(BLOCKS).map_err(|e| self.error(e))?;
        let mut part = Vec::with_capacity(batch);
        // The record of the block being read, assembled from its consecutive parts.
        let mut current: Option<(u64, Vec<u8>)> = None;
        let mut finish = |current: Option<(u64, Vec<u8>)>,
                          part: &mut Vec<(usize, BlockRecord)>|
         -> Result<(), MatcherError> {
            if let Some((block, bytes)) = current {
                let record = decode_record(&bytes, &params)
                    .ok_or_else(|| self.error(format!("block {block} of {tenant} is corrupt")))?;
                part.push((block as usize, record));
                if part.len() == batch {
                    f(std::mem::replace(part, Vec::with_capacity(batch)))?;
                }
            }
            Ok(())
        };
        for row in table
            .range((tenant, 0u64)..=(tenant, u64::MAX))
            .map_err(|e| self.error(e))?
        {
            let (k, v) = row.map_err(|e| self.error(e))?;
            let key = k.value().1;
            let (block, index) = (key >> PART_BITS, key & PART_MASK);
            match &mut current {
                Some((b, bytes)) if *b == block && index as usize * PART_BYTES == bytes.len() => {
                    bytes.extend_from_slice(v.value())
                }
                _ if index != 0 => {
                    return Err(self.error(format!("block {block} of {tenant} is missing a part")))
                }
                _ => {
                    finish(current.take(), &mut part)?;
                    current = Some((block, v.value().to_vec()));
                }
            }
        }
        finish(current.take(), &mut part)?;
        if !part.is_empty() {
            f(part)?;
        }
        Ok(())
    }

    /// Tenants that have blocks or slots (a tenant without a token: the built-in matcher's).
    pub fn gallery_tenants(&self) -> Result<Vec<String>, MatcherError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(SLOTS).map_err(|e| self.error(e))?;
        let mut out: Vec<String> = Vec::new();
        for row in table.iter().map_err(|e| self.error(e))? {
            let (k, _) = row.map_err(|e| self.error(e))?;
            let tenant = k.value().0;
            if out.last().map(String::as_str) != Some(tenant) {
                out.push(tenant.to_string());
            }
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

    /// Records a tenant with its token hash if `admit`, run first in the same transaction,
    /// says so (the server consumes a one-time registration code there; `|_| Ok(true)`:
    /// open registration). `false`, with nothing changed, if it does not.
    pub fn register_tenant(
        &self,
        tenant: &str,
        token_hash: &[u8; 32],
        admit: impl FnOnce(&redb::WriteTransaction) -> Result<bool, redb::Error>,
    ) -> Result<bool, MatcherError> {
        // A refusal must abort the transaction, so it travels as Ok(false) out of the
        // closure only after nothing was written.
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let valid = (|| {
            if !admit(&txn)? {
                return Ok(false);
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

    /// Makes one gallery change durable: the block's record and the slot row.
    pub fn commit(&self, tenant: &str, change: &StoreChange<'_>) -> Result<(), MatcherError> {
        self.commit_all(tenant, std::slice::from_ref(change))
    }

    /// Makes several changes durable in one transaction (bulk enrolment, a move); a block
    /// changed more than once keeps its last record. A change's `drop_from` deletes those
    /// blocks after its own record is written; no later change may touch them.
    pub fn commit_all(
        &self,
        tenant: &str,
        changes: &[StoreChange<'_>],
    ) -> Result<(), MatcherError> {
        // Only each block's last change is written: find it in one pass from the end.
        let mut written = std::collections::HashSet::new();
        let mut encoded: Vec<Option<Vec<u8>>> = changes
            .iter()
            .rev()
            .map(|c| {
                written
                    .insert(c.block)
                    .then(|| encode_record(c.record, &self.params))
            })
            .collect();
        encoded.reverse();
        self.write(|txn| {
            let mut blocks = txn.open_table(BLOCKS)?;
            let mut slots = txn.open_table(SLOTS)?;
            for (c, record) in changes.iter().zip(&encoded) {
                if let Some(record) = record {
                    put_record(&mut blocks, tenant, c.block, record)?;
                }
                match c.slot {
                    SlotChange::Fill { id, slot, label } => {
                        let row = encode_slot(c.block, slot, label);
                        slots.insert((tenant, id.0), row.as_slice())?;
                    }
                    SlotChange::Free { id } => {
                        slots.remove((tenant, id.0))?;
                    }
                }
                if let Some(first) = c.drop_from {
                    let from = (first as u64) << PART_BITS;
                    blocks.retain_in((tenant, from)..=(tenant, u64::MAX), |_, _| false)?;
                }
            }
            Ok(())
        })
    }

    /// Replaces the encrypted label of a stored template (tests of tampering use it, as
    /// anyone with the file could).
    pub fn set_label(
        &self,
        tenant: &str,
        id: TemplateId,
        label: &[u8],
    ) -> Result<(), MatcherError> {
        let found = self.write(|txn| {
            let mut table = txn.open_table(SLOTS)?;
            let location = table
                .get((tenant, id.0))?
                .and_then(|v| split_slot(v.value()).map(|(loc, _)| loc));
            if let Some(loc) = location {
                let row = encode_slot(loc.block, loc.slot, label);
                table.insert((tenant, id.0), row.as_slice())?;
            }
            Ok(location.is_some())
        })?;
        if !found {
            return Err(MatcherError::UnknownId(id));
        }
        Ok(())
    }

    /// Moves every block and slot (and the token hash, if any) of tenant `from` to `to`,
    /// in one durable transaction.
    pub fn rename_tenant(&self, from: &str, to: &str) -> Result<(), MatcherError> {
        self.write(|txn| {
            for table in [BLOCKS, SLOTS] {
                let mut table = txn.open_table(table)?;
                let rows: Vec<(u64, Vec<u8>)> = table
                    .range((from, 0u64)..=(from, u64::MAX))?
                    .map(|r| r.map(|(k, v)| (k.value().1, v.value().to_vec())))
                    .collect::<Result<_, _>>()?;
                for (key, record) in rows {
                    table.remove((from, key))?;
                    table.insert((to, key), record.as_slice())?;
                }
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
