//! The durable store of encrypted galleries: one redb file (embedded, ACID, crash-safe)
//! per data directory. Blocks are the unit of storage: no per-template ciphertext is kept.
//!
//! Layout (file `DIR/matcher.redb`, schema 2):
//! - `blocks_v2`: key `(tenant, block number << 8 | part)`, values the parts (3,860
//!   bytes each, the last shorter) of a [`BlockRecord`]: `u8 format (2) || N x 44-bit
//!   summed body (two in 11 bytes) || u8 has_base || [N x u64 base mask] || u32 seed
//!   count || seeds x (u128 seed, u16 shift)`, little-endian. The mask is rebuilt at open
//!   from the seeds. Format 1 (64-bit body, u32 shifts) is still read.
//! - `slots_v2`: key `(tenant, id)`, value `u64 block || u8 slot || encrypted label`.
//! - `tenants_v1`: key tenant id, value SHA-256 of the tenant's bearer token (32 bytes).
//! - `meta_v1`: `schema` = 2.
//! - `invites_v1` (server): key SHA-256 of a one-time registration code, value its
//!   creation time (Unix seconds); removed in the transaction that registers with it.
//! - `admin_v1` (server): `token` = SHA-256 of the admin token.
//!
//! Schema 1 (`templates_v1`: one seeded ciphertext per template) is migrated at open, in
//! one transaction: its templates are packed into blocks exactly as enrolment would, and
//! the old table is dropped. A newer schema is refused with a message. Every write is one
//! transaction committed with immediate durability (fsync) before it returns, so a crash
//! (kill -9, power loss) keeps every acknowledged write and never exposes half of one.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::MatcherError;
use crate::he::{
    round_body, BlockRecord, EncryptedTemplate, Gallery, Location, MaskSeed, Params, TemplateId,
};

/// Name of the store file inside a data directory.
pub const STORE_FILE: &str = "matcher.redb";

const BLOCKS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("blocks_v2");
const SLOTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("slots_v2");
const LEGACY_TEMPLATES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("templates_v1");
const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants_v1");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta_v1");
const INVITES: TableDefinition<&[u8], u64> = TableDefinition::new("invites_v1");
const ADMIN: TableDefinition<&str, &[u8]> = TableDefinition::new("admin_v1");
const SCHEMA: u64 = 2;
/// redb's page cache: the galleries live in memory already (rebuilt at open), so the
/// store needs little cache of its own; redb's default (1 GiB) would double the
/// matcher's memory for a large gallery.
const CACHE_BYTES: usize = 16 << 20;
/// Block records written by this build: 44-bit bodies, 16-bit shifts.
const RECORD_FORMAT: u8 = 2;
/// Block records of the first block layout (read, rounded, rewritten on change).
const RECORD_FORMAT_V1: u8 = 1;
/// A seed on disk: the u128 seed and its u16 shift.
const SEED_BYTES: usize = 18;

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
        Self::open_with(dir, &Params::default())
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
            txn.open_table(INVITES)?;
            txn.open_table(ADMIN)?;
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
                if let Err(e) = migrate_v1(txn, &params)? {
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

/// Packs schema 1's per-template ciphertexts into blocks (per tenant, in id order, as
/// enrolment would) and drops the old table. `Err(text)` refuses the store unchanged.
#[allow(clippy::result_large_err)]
fn migrate_v1(
    txn: &redb::WriteTransaction,
    params: &Params,
) -> Result<Result<(), String>, redb::Error> {
    let legacy = txn.open_table(LEGACY_TEMPLATES)?;
    let mut rows: Vec<(String, u64, Vec<u8>)> = Vec::new();
    for row in legacy.iter()? {
        let (k, v) = row?;
        let (tenant, id) = k.value();
        rows.push((tenant.to_string(), id, v.value().to_vec()));
    }
    drop(legacy);
    let mut blocks = txn.open_table(BLOCKS)?;
    let mut slots = txn.open_table(SLOTS)?;
    let mut i = 0;
    while i < rows.len() {
        let tenant = rows[i].0.clone();
        let mut gallery = Gallery::new(params);
        let mut touched = std::collections::BTreeSet::new();
        while i < rows.len() && rows[i].0 == tenant {
            let (_, id, record) = &rows[i];
            i += 1;
            let Some((template, label)) = split_legacy(record) else {
                return Ok(Err(format!(
                    "template {id} of {tenant} is corrupt; nothing was migrated"
                )));
            };
            let template = match EncryptedTemplate::from_bytes(template, params) {
                Ok(t) => t,
                Err(e) => {
                    return Ok(Err(format!(
                        "template {id} of {tenant}: {e}; nothing was migrated"
                    )))
                }
            };
            let change = match gallery.plan_insert(TemplateId(*id), &template) {
                Ok(c) => c,
                Err(e) => return Ok(Err(format!("template {id} of {tenant}: {e}"))),
            };
            let loc = change.location();
            gallery.apply(change);
            touched.insert(loc.block);
            slots.insert(
                (tenant.as_str(), *id),
                encode_slot(loc.block, loc.slot, label).as_slice(),
            )?;
        }
        for b in touched {
            let record = gallery.record(b).expect("block exists");
            put_record(&mut blocks, &tenant, b, &encode_record(&record, params))?;
        }
    }
    drop(blocks);
    drop(slots);
    txn.delete_table(LEGACY_TEMPLATES)?;
    Ok(Ok(()))
}

/// Schema 1's record: `u32 LE template length || template || label`.
fn split_legacy(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(v.get(..4)?.try_into().ok()?) as usize;
    let rest = v.get(4..)?;
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

fn encode_slot(block: usize, slot: usize, label: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(9 + label.len());
    row.extend_from_slice(&(block as u64).to_le_bytes());
    row.push(slot as u8);
    row.extend_from_slice(label);
    row
}

fn split_slot(v: &[u8]) -> Option<(Location, &[u8])> {
    let block = u64::from_le_bytes(v.get(..8)?.try_into().ok()?) as usize;
    let slot = *v.get(8)? as usize;
    Some((Location { block, slot }, &v[9..]))
}

/// A record is stored in parts of at most this many bytes, keyed `block << PART_BITS |
/// part`, so that each part with its key fills one 4 KiB redb page alone: redb gives a
/// leaf larger than a page the next power of two (a whole record took 32 KiB), and small
/// entries inserted in order half-fill their pages. A full block's format-2 record
/// (11,540 bytes) is three parts, 12 KiB on disk; the ~230 bytes a page has beside its
/// part hold the key (a tenant id of up to ~200 bytes) and the leaf header.
const PART_BYTES: usize = 3_860;
const PART_BITS: u32 = 8;
const PART_MASK: u64 = (1 << PART_BITS) - 1;

type BlockTable<'t> = redb::Table<'t, (&'static str, u64), &'static [u8]>;

/// Writes a block's record as its parts, removing parts a longer earlier record left.
#[allow(clippy::result_large_err)]
fn put_record(
    table: &mut BlockTable<'_>,
    tenant: &str,
    block: usize,
    bytes: &[u8],
) -> Result<(), redb::Error> {
    let base = (block as u64) << PART_BITS;
    let parts = bytes.len().div_ceil(PART_BYTES) as u64;
    assert!(parts <= PART_MASK, "a record fits in 255 parts");
    table.retain_in(
        (tenant, base + parts)..=(tenant, base | PART_MASK),
        |_, _| false,
    )?;
    for (i, chunk) in bytes.chunks(PART_BYTES).enumerate() {
        table.insert((tenant, base + i as u64), chunk)?;
    }
    Ok(())
}

/// Packs a body (each coefficient a multiple of 2^(64 - body_bits)) as its top
/// `body_bits` = 44 bits, two coefficients in 11 bytes.
fn pack_body(body: &[u64], params: &Params, out: &mut Vec<u8>) {
    let low = 64 - params.body_bits();
    debug_assert_eq!(params.body_bits(), 44, "the packing below is for 44 bits");
    for pair in body.chunks_exact(2) {
        debug_assert!(pair.iter().all(|c| c & ((1 << low) - 1) == 0));
        let v = (pair[0] >> low) as u128 | ((pair[1] >> low) as u128) << 44;
        out.extend_from_slice(&v.to_le_bytes()[..11]);
    }
}

fn unpack_body(bytes: &[u8], params: &Params) -> Vec<u64> {
    let low = 64 - params.body_bits();
    let mut body = Vec::with_capacity(bytes.len() / 11 * 2);
    for chunk in bytes.chunks_exact(11) {
        let mut b = [0u8; 16];
        b[..11].copy_from_slice(chunk);
        let v = u128::from_le_bytes(b);
        let mask = (1u128 << 44) - 1;
        body.push(((v & mask) as u64) << low);
        body.push((((v >> 44) & mask) as u64) << low);
    }
    body
}

/// Bytes of a packed body of `n` coefficients.
fn packed_body_len(n: usize) -> usize {
    n / 2 * 11
}

fn encode_record(r: &BlockRecord, params: &Params) -> Vec<u8> {
    let n = r.body.len();
    let mut out = Vec::with_capacity(
        1 + packed_body_len(n)
            + 1
            + r.base_mask.as_ref().map_or(0, |m| 8 * m.len())
            + 4
            + SEED_BYTES * r.seeds.len(),
    );
    out.push(RECORD_FORMAT);
    pack_body(&r.body, params, &mut out);
    match &r.base_mask {
        Some(m) => {
            out.push(1);
            for c in m {
                out.extend_from_slice(&c.to_le_bytes());
            }
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(r.seeds.len() as u32).to_le_bytes());
    for s in &r.seeds {
        out.extend_from_slice(&s.seed.to_le_bytes());
        out.extend_from_slice(&(s.shift as u16).to_le_bytes());
    }
    out
}

/// Decodes a record of format 2 (this build's) or 1 (64-bit body, 32-bit shifts; its
/// body is rounded to the stored precision as it is read, the one-time rounding a
/// format-1 block gets; the record is rewritten as format 2 at its next change).
fn decode_record(v: &[u8], params: &Params) -> Option<BlockRecord> {
    let n = params.polynomial_size;
    let mut at = 0usize;
    let mut take = |len: usize| -> Option<&[u8]> {
        let s = v.get(at..at + len)?;
        at += len;
        Some(s)
    };
    let format = take(1)?[0];
    let words = |b: &[u8]| -> Vec<u64> {
        b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    };
    let body = match format {
        RECORD_FORMAT => unpack_body(take(packed_body_len(n))?, params),
        RECORD_FORMAT_V1 => words(take(8 * n)?)
            .into_iter()
            .map(|c| round_body(c, params))
            .collect(),
        _ => return None,
    };
    let base_mask = match take(1)?[0] {
        0 => None,
        1 => Some(words(take(8 * n)?)),
        _ => return None,
    };
    let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    if count > BlockRecord::seed_limit(params) {
        return None;
    }
    let mut seeds = Vec::with_capacity(count);
    for _ in 0..count {
        let seed = u128::from_le_bytes(take(16)?.try_into().ok()?);
        let shift = if format == RECORD_FORMAT {
            u16::from_le_bytes(take(2)?.try_into().ok()?) as u32
        } else {
            u32::from_le_bytes(take(4)?.try_into().ok()?)
        };
        if shift as usize >= n {
            return None;
        }
        seeds.push(MaskSeed { seed, shift });
    }
    if at != v.len() {
        return None;
    }
    Some(BlockRecord {
        body,
        base_mask,
        seeds,
    })
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::he::{
        decrypt, encrypt_probe, encrypt_template, synthetic_templates, PreparedProbe, SecretKey,
    };

    /// Writes a schema-1 store as blindface 0.1 did: one seeded ciphertext per template.
    fn write_v1(dir: &Path, rows: &[(&str, u64, Vec<u8>, Vec<u8>)]) {
        std::fs::create_dir_all(dir).unwrap();
        let db = Database::create(dir.join(STORE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(LEGACY_TEMPLATES).unwrap();
            for (tenant, id, template, label) in rows {
                let mut record = (template.len() as u32).to_le_bytes().to_vec();
                record.extend_from_slice(template);
                record.extend_from_slice(label);
                t.insert((*tenant, *id), record.as_slice()).unwrap();
            }
            txn.open_table(TENANTS).unwrap();
            txn.open_table(META).unwrap().insert("schema", 1).unwrap();
        }
        txn.commit().unwrap();
    }

    #[test]
    fn a_schema_1_store_is_migrated_into_blocks_with_identical_distances() {
        let p = Params::v1();
        let key = SecretKey::generate(&p);
        let templates = synthetic_templates(40, 5, &p);
        let rows: Vec<_> = templates
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let tenant = if i % 2 == 0 { "a" } else { "b" };
                let label = format!("label {i}").into_bytes();
                (
                    tenant,
                    i as u64 + 1,
                    encrypt_template(&key, t).to_bytes(),
                    label,
                )
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        write_v1(dir.path(), &rows);
        let galleries = crate::matcher::Galleries::open(dir.path(), &p, 100).unwrap();
        assert_eq!(galleries.len("a").unwrap(), 20);
        assert_eq!(galleries.len("b").unwrap(), 20);
        let (probe, ctx) = encrypt_probe(&key, &templates[0]);
        let prepared = PreparedProbe::new(&probe, &p).unwrap();
        for tenant in ["a", "b"] {
            let result = galleries
                .with_gallery(tenant, |g| g.identify(&prepared).unwrap())
                .unwrap();
            let d = decrypt(&key, &ctx, &result).unwrap();
            assert_eq!(d.len(), 20);
            for x in d {
                let i = x.id.0 as usize - 1;
                assert_eq!(x.distance_sq, templates[0].distance_sq(&templates[i]));
            }
        }
        let labels = galleries.list("b").unwrap();
        assert_eq!(labels[0].label, b"label 1");
        drop(galleries);
        // The old table is gone and the schema says so: opening again reads blocks only.
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.slots().unwrap().len(), 40);
        assert_eq!(store.block_count("a").unwrap(), 2);
        let txn = store.db.begin_read().unwrap();
        assert!(txn.open_table(LEGACY_TEMPLATES).is_err());
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn a_corrupt_old_store_or_a_newer_schema_is_refused_and_left_untouched() {
        let p = Params::v1();
        let key = SecretKey::generate(&p);
        let good = encrypt_template(&key, &synthetic_templates(1, 1, &p)[0]).to_bytes();
        let mut bad = good.clone();
        bad[100] ^= 1;
        let dir = tempfile::tempdir().unwrap();
        write_v1(
            dir.path(),
            &[("a", 1, good, b"x".to_vec()), ("a", 2, bad, b"y".to_vec())],
        );
        let file = dir.path().join(STORE_FILE);
        let before = std::fs::read(&file).unwrap();
        let e = Store::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("template 2 of a") && e.contains("nothing was migrated"),
            "{e}"
        );
        assert_eq!(std::fs::read(&file).unwrap(), before, "left as it was");

        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .write(|txn| {
                    txn.open_table(META)?.insert("schema", 3)?;
                    Ok(())
                })
                .unwrap();
        }
        let e = Store::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("schema version 3") && e.contains("upgrade blindface"),
            "{e}"
        );
    }

    #[test]
    fn block_records_round_trip_and_corrupt_ones_are_rejected() {
        let p = Params::v1();
        let n = p.polynomial_size;
        let low = 64 - p.body_bits();
        let mut rng = StdRng::seed_from_u64(3);
        // Bodies at the stored precision, including both ends of the 44 bits.
        let mut body: Vec<u64> = (0..n).map(|_| round_body(rng.random(), &p)).collect();
        body[0] = 0;
        body[1] = u64::MAX << low;
        body[2] = 1 << low;
        body[n - 1] = 1 << 63;
        for base_mask in [None, Some((0..n).map(|_| rng.random()).collect())] {
            let record = BlockRecord {
                body: body.clone(),
                base_mask,
                seeds: vec![
                    MaskSeed { seed: 1, shift: 0 },
                    MaskSeed {
                        seed: u128::MAX,
                        shift: 129 * 14,
                    },
                ],
            };
            let bytes = encode_record(&record, &p);
            assert_eq!(decode_record(&bytes, &p), Some(record.clone()));
            for cut in [0, 1, 100, bytes.len() - 1] {
                assert_eq!(decode_record(&bytes[..cut], &p), None);
            }
            let mut long = bytes.clone();
            long.push(0);
            assert_eq!(decode_record(&long, &p), None);
            let mut unknown = bytes.clone();
            unknown[0] = 9;
            assert_eq!(decode_record(&unknown, &p), None);
        }
        // A full block of 15 seeds is three parts of one page each.
        let full = BlockRecord {
            body,
            base_mask: None,
            seeds: (0..15)
                .map(|i| MaskSeed {
                    seed: i,
                    shift: i as u32 * 129,
                })
                .collect(),
        };
        assert_eq!(encode_record(&full, &p).len().div_ceil(PART_BYTES), 3);
    }

    /// The first block layout's encoding (64-bit body, u32 shifts), as earlier builds wrote it.
    fn encode_record_v1(r: &BlockRecord) -> Vec<u8> {
        let mut out = vec![RECORD_FORMAT_V1];
        for c in &r.body {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.push(0);
        out.extend_from_slice(&(r.seeds.len() as u32).to_le_bytes());
        for s in &r.seeds {
            out.extend_from_slice(&s.seed.to_le_bytes());
            out.extend_from_slice(&s.shift.to_le_bytes());
        }
        out
    }

    #[test]
    fn a_format_1_record_is_read_with_its_body_rounded_and_rewritten_as_format_2() {
        let p = Params::v1();
        let mut rng = StdRng::seed_from_u64(4);
        let old = BlockRecord {
            body: (0..p.polynomial_size).map(|_| rng.random()).collect(),
            base_mask: None,
            seeds: vec![MaskSeed {
                seed: rng.random(),
                shift: 129 * 3,
            }],
        };
        let read = decode_record(&encode_record_v1(&old), &p).unwrap();
        assert_eq!(read.seeds, old.seeds);
        for (r, o) in read.body.iter().zip(&old.body) {
            assert_eq!(*r, round_body(*o, &p));
            let err = r.wrapping_sub(*o) as i64;
            assert!(err.unsigned_abs() <= 1 << (63 - p.body_bits()), "{err}");
        }
        assert_eq!(decode_record(&encode_record(&read, &p), &p), Some(read));
    }
}
