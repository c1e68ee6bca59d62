//! The durable store of encrypted galleries: one redb file (embedded, ACID, crash-safe)
//! per data directory. Blocks are the unit of storage: no per-template ciphertext is kept.
//!
//! Layout (file `DIR/matcher.redb`, schema 3):
//! - `blocks_v2`: key `(tenant, block number << 8 | part)`, values the parts (3,860
//!   bytes each, the last shorter) of a [`BlockRecord`] (its bytes: `record`, format 3,
//!   with a checksum over its tenant, block number and bytes).
//! - `slots_v2`: key `(tenant, id)`, value `u64 block || u8 slot || encrypted label ||
//!   checksum` (over its tenant, id and bytes).
//! - `tenants_v1`: key tenant id, value SHA-256 of the tenant's bearer token (32 bytes).
//! - `meta_v1`: `schema` = 3; on a cluster node's cache (`serve --cluster`) also
//!   `cluster` (the cluster's id) and `log_position` (the JetStream sequence of the last
//!   change applied, written in that change's own transaction: [`Store::arm_log_position`]).
//!
//! Every record is verified wherever it is read (at open, list, a label change, a
//! rename): one that does not match its checksum is [`MatcherError::StoreDamaged`],
//! naming its tenant and block or id, never a distance. A new store is created only
//! where no file exists; a file that is not a blindface store is refused unchanged
//! ([`MatcherError::NotAStore`]).
//!
//! The server keeps its own tables in the same file (one-time registration codes, the
//! admin token: `crate::server`), through [`Store::read`], [`Store::write`] and the
//! `admit` step of [`Store::register_tenant`].
//!
//! Schemas 1 and 2 are migrated at open, in one transaction (`migrate`): schema 2's
//! records (no checksum) are rewritten with theirs, so after open every record is
//! checked. A newer schema is
//! refused with a message. Every write is one transaction committed with immediate
//! durability (fsync) before it returns, so a crash (kill -9, power loss) keeps every
//! acknowledged write and never exposes half of one.

mod migrate;
mod record;
mod tables;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, ReadableTableMetadata};

use self::record::{
    decode_record, encode_record, encode_slot, put_record, record_version, split_slot, PART_BITS,
    PART_BYTES, PART_MASK,
};
use self::tables::{BLOCKS, CLUSTER_ID, LOG_POSITION, META, SCHEMA, SLOTS, TENANTS};
use super::error::{MatcherError, StoredRecord};
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

/// The first bytes of every redb file.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

thread_local! {
    /// Set while this thread runs [`catch_quietly`]: its panics are not printed.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err(its message)` without printing it (the panic hook
/// installed once here stays silent on this thread while `f` runs, and defers to the
/// previous hook everywhere else).
fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    out.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "it panicked".into())
    })
}

/// A cluster cache's commits between two durable ones ([`Store::use_as_cache`]).
pub const CACHE_SYNC_EVERY: u64 = 1024;

/// The redb-backed store.
pub struct Store {
    db: Database,
    path: PathBuf,
    /// The log position the next write transaction records in `meta_v1` (cluster nodes
    /// only: their one writer, the log follower, arms it before applying a change).
    armed_position: parking_lot::Mutex<Option<u64>>,
    /// A cluster node's cache ([`Store::use_as_cache`]): commits not yet made durable.
    unsynced: std::sync::atomic::AtomicU64,
    cache: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

// redb::Error is large; it only lives inside write closures and is converted at once.
#[allow(clippy::result_large_err)]
impl Store {
    /// Opens (or creates, or migrates) the store in `dir`, creating the directory if
    /// needed. A new store is created only where no file exists; a file that is not a
    /// valid blindface store (empty, truncated, overwritten, another redb file) is
    /// refused ([`MatcherError::NotAStore`]) and left as it was. The store holds galleries
    /// of any parameters this build knows, each block naming its own.
    pub fn open(dir: &Path) -> Result<Store, MatcherError> {
        let path = dir.join(STORE_FILE);
        let shown = path.display().to_string();
        let err = |detail: String| MatcherError::Store {
            path: shown.clone(),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create directory: {e}")))?;
        match std::fs::metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create_new(dir, &path)?,
            Err(e) => return Err(err(e.to_string())),
        }
        let db = Self::open_existing(&path)?;
        let store = Store {
            db,
            path,
            armed_position: parking_lot::Mutex::new(None),
            unsynced: Default::default(),
            cache: Default::default(),
        };
        store.upgrade().map_err(err)?;
        Ok(store)
    }

    /// Creates a new, empty store at `path`: built under a temporary name and renamed
    /// into place once its tables exist, so that a crash never leaves a file at `path`
    /// that is not a whole store.
    fn create_new(dir: &Path, path: &Path) -> Result<(), MatcherError> {
        let building = dir.join(format!("{STORE_FILE}.new"));
        let err = |detail: String| MatcherError::Store {
            path: building.display().to_string(),
            detail,
        };
        match std::fs::remove_file(&building) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e.to_string())),
            _ => {}
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(&building)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => MatcherError::StoreLocked {
                    path: building.display().to_string(),
                },
                e => err(e.to_string()),
            })?;
        let store = Store {
            db,
            path: building.clone(),
            armed_position: parking_lot::Mutex::new(None),
            unsynced: Default::default(),
            cache: Default::default(),
        };
        store.upgrade().map_err(err)?;
        drop(store);
        std::fs::rename(&building, path).map_err(|e| err(e.to_string()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            d.sync_all().ok();
        }
        Ok(())
    }

    /// Opens an existing store file, refusing one that is not a blindface store. redb
    /// panics on some damaged files (a truncated one): the panic is caught (and kept out
    /// of stderr) and becomes [`MatcherError::NotAStore`].
    fn open_existing(path: &Path) -> Result<Database, MatcherError> {
        let shown = path.display().to_string();
        let not_a_store = |detail: String| MatcherError::NotAStore {
            path: shown.clone(),
            detail,
        };
        let mut head = [0u8; REDB_MAGIC.len()];
        let read = std::fs::File::open(path).and_then(|mut f| {
            use std::io::Read;
            let len = f.metadata()?.len();
            f.read_exact(&mut head)
                .map(|()| len)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => Ok(len),
                    _ => Err(e),
                })
        });
        match read {
            Err(e) => {
                return Err(MatcherError::Store {
                    path: shown.clone(),
                    detail: e.to_string(),
                })
            }
            Ok(0) => return Err(not_a_store("the file is empty (0 bytes)".into())),
            Ok(_) if head != REDB_MAGIC => {
                return Err(not_a_store(
                    "it does not start with a redb header: overwritten, or another kind of file"
                        .into(),
                ))
            }
            Ok(_) => {}
        }
        let opened = catch_quietly(|| {
            let db = redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .open(path)?;
            let schema = (|| {
                let txn = db.begin_read()?;
                let meta = txn.open_table(META)?;
                let schema = meta.get("schema")?.map(|v| v.value());
                Ok::<_, redb::Error>(schema)
            })();
            Ok::<_, redb::Error>((db, schema))
        });
        match opened {
            Err(panic) => Err(not_a_store(format!("redb cannot read it: {panic}"))),
            Ok(Err(redb::Error::DatabaseAlreadyOpen)) => {
                Err(MatcherError::StoreLocked { path: shown })
            }
            Ok(Err(redb::Error::Io(e))) => Err(MatcherError::Store {
                path: shown,
                detail: e.to_string(),
            }),
            Ok(Err(e)) => Err(not_a_store(e.to_string())),
            Ok(Ok((_, Err(redb::Error::TableDoesNotExist(_)) | Ok(None)))) => {
                Err(not_a_store("a redb file without blindface's tables".into()))
            }
            Ok(Ok((_, Err(e)))) => Err(not_a_store(e.to_string())),
            Ok(Ok((db, Ok(Some(_))))) => Ok(db),
        }
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
        {
            txn.open_table(BLOCKS)?;
            txn.open_table(SLOTS)?;
            txn.open_table(TENANTS)?;
            let mut meta = txn.open_table(META)?;
            let schema = meta.get("schema")?.map(|v| v.value());
            match schema {
                Some(SCHEMA) => return Ok(Ok(())),
                None | Some(1) | Some(2) => {}
                Some(other) => {
                    return Ok(Err(format!(
                        "schema version {other}, this build reads {SCHEMA} (and migrates 1 and 2); upgrade blindface"
                    )))
                }
            }
            let migrated = match schema {
                Some(1) => migrate::migrate_v1(txn)?,
                Some(2) => migrate::migrate_v2(txn)?,
                _ => Ok(()),
            };
            if let Err(e) = migrated {
                return Ok(Err(e));
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

    /// The error for a record of `tenant` that does not match its checksum.
    fn damaged(&self, tenant: &str, record: StoredRecord) -> MatcherError {
        MatcherError::StoreDamaged {
            path: self.path.display().to_string(),
            tenant: tenant.to_string(),
            record,
        }
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
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        self.cache_durability(&mut txn);
        let out = f(&txn).map_err(|e| self.error(e))?;
        self.stamp(&txn).map_err(|e| self.error(e))?;
        txn.commit().map_err(|e| self.error(e))?;
        Ok(out)
    }

    /// Marks this store as a cluster node's cache: its commits are atomic but not each
    /// made durable at once (every [`CACHE_SYNC_EVERY`]th is, and [`Store::sync`] makes
    /// the rest durable). A crash may take the last changes back, with the log position
    /// recorded beside them, and the node applies them again from the log: the cluster's
    /// durability is JetStream's, and this saves an fsync per change on every node.
    pub fn use_as_cache(&self) {
        self.cache.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes every commit so far durable (a cluster cache's, when its node is idle).
    pub fn sync(&self) -> Result<(), MatcherError> {
        if self.unsynced.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            let txn = self.db.begin_write().map_err(|e| self.error(e))?;
            txn.commit().map_err(|e| self.error(e))?;
            self.unsynced.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    fn cache_durability(&self, txn: &mut redb::WriteTransaction) {
        use std::sync::atomic::Ordering;
        if self.cache.load(Ordering::Relaxed) {
            if self.unsynced.fetch_add(1, Ordering::Relaxed) + 1 < CACHE_SYNC_EVERY {
                txn.set_durability(redb::Durability::None);
            } else {
                self.unsynced.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Records the armed log position, if any, in `txn` (which is about to commit).
    fn stamp(&self, txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
        if let Some(position) = self.armed_position.lock().take() {
            txn.open_table(META)?.insert(LOG_POSITION, position)?;
        }
        Ok(())
    }

    /// Cluster nodes: the next write transaction (whatever it writes) also records
    /// `position`, the JetStream sequence of the change being applied, so the change and
    /// the position are durable together and a change is never applied twice (an erasure
    /// applied twice would corrupt its block). Only the one writer (the log follower)
    /// arms it; [`Store::settle_log_position`] records it alone when the change wrote
    /// nothing (a refused one).
    pub fn arm_log_position(&self, position: u64) {
        *self.armed_position.lock() = Some(position);
    }

    /// Records the armed position in a transaction of its own if no write took it.
    pub fn settle_log_position(&self) -> Result<(), MatcherError> {
        if self.armed_position.lock().is_some() {
            self.write(|_| Ok(()))?;
        }
        Ok(())
    }

    /// The log position of the last change applied (a cluster node's cache), if any.
    pub fn log_position(&self) -> Result<Option<u64>, MatcherError> {
        self.meta_value(LOG_POSITION)
    }

    /// The id of the cluster whose cache this store is, if it is one.
    pub fn cluster_id(&self) -> Result<Option<u64>, MatcherError> {
        self.meta_value(CLUSTER_ID)
    }

    /// Marks this store as the cache of cluster `id`.
    pub fn set_cluster_id(&self, id: u64) -> Result<(), MatcherError> {
        self.write(|txn| {
            txn.open_table(META)?.insert(CLUSTER_ID, id)?;
            Ok(())
        })
    }

    fn meta_value(&self, key: &str) -> Result<Option<u64>, MatcherError> {
        self.read(|txn| Ok(txn.open_table(META)?.get(key)?.map(|v| v.value())))
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
            let (location, label) = split_slot(v.value(), tenant, id)
                .ok_or_else(|| self.damaged(tenant, StoredRecord::Slot(TemplateId(id))))?;
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
        let (location, label) = split_slot(v.value(), tenant, id.0)
            .ok_or_else(|| self.damaged(tenant, StoredRecord::Slot(id)))?;
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

    /// The parameters `tenant`'s gallery was made with, as its first block's record names
    /// them (`None`: the tenant has no block). Every other block is checked against them
    /// as it is read ([`Store::for_each_block_batch`], [`Store::block_records`]).
    pub fn gallery_params(&self, tenant: &str) -> Result<Option<Params>, MatcherError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(BLOCKS).map_err(|e| self.error(e))?;
        let mut rows = table
            .range((tenant, 0u64)..=(tenant, u64::MAX))
            .map_err(|e| self.error(e))?;
        let Some(row) = rows.next() else {
            return Ok(None);
        };
        let (k, v) = row.map_err(|e| self.error(e))?;
        let block = k.value().1 >> PART_BITS;
        let damaged = || self.damaged(tenant, StoredRecord::Block(block));
        let version = record_version(v.value()).ok_or_else(damaged)?;
        let known = Params::known()
            .map(|p| format!("v{}", p.version))
            .join(", ");
        match Params::of_version(version) {
            Some(p) => Ok(Some(p)),
            None => Err(self.error(format!(
                "block {block} of tenant {tenant:?} was made with template parameters \
                 v{version}, which this build does not know (it reads {known}); upgrade \
                 blindface"
            ))),
        }
    }

    /// Hands `tenant`'s block records, all of `params` (a record of other parameters is
    /// [`MatcherError::StoreDamaged`]), to `f` in batches of up to `batch`, in block order
    /// (so a large gallery is never held twice in memory at open).
    pub fn for_each_block_batch(
        &self,
        tenant: &str,
        params: &Params,
        batch: usize,
        mut f: impl FnMut(Vec<(usize, BlockRecord)>) -> Result<(), MatcherError>,
    ) -> Result<(), MatcherError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(BLOCKS).map_err(|e| self.error(e))?;
        let mut part = Vec::with_capacity(batch);
        // The record of the block being read, assembled from its consecutive parts.
        let mut current: Option<(u64, Vec<u8>)> = None;
        let mut finish = |current: Option<(u64, Vec<u8>)>,
                          part: &mut Vec<(usize, BlockRecord)>|
         -> Result<(), MatcherError> {
            if let Some((block, bytes)) = current {
                let record = decode_record(&bytes, tenant, block as usize)
                    .filter(|(p, _)| p == params)
                    .ok_or_else(|| self.damaged(tenant, StoredRecord::Block(block)))?
                    .1;
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
                _ if index != 0 => return Err(self.damaged(tenant, StoredRecord::Block(block))),
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

    /// The records of `tenant`'s blocks `numbers`, in the order given, from one read
    /// transaction (a cluster node taking a shard, or loading a block it does not hold for
    /// one request). A block without a record, or of other parameters than `params`, is
    /// [`MatcherError::StoreDamaged`].
    pub fn block_records(
        &self,
        tenant: &str,
        params: &Params,
        numbers: &[usize],
    ) -> Result<Vec<(usize, BlockRecord)>, MatcherError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(BLOCKS).map_err(|e| self.error(e))?;
        let mut out = Vec::with_capacity(numbers.len());
        for &b in numbers {
            let first = (b as u64) << PART_BITS;
            let mut bytes = Vec::new();
            let damaged = || self.damaged(tenant, StoredRecord::Block(b as u64));
            for (i, row) in table
                .range((tenant, first)..=(tenant, first | PART_MASK))
                .map_err(|e| self.error(e))?
                .enumerate()
            {
                let (k, v) = row.map_err(|e| self.error(e))?;
                if k.value().1 & PART_MASK != i as u64 || bytes.len() != i * PART_BYTES {
                    return Err(damaged());
                }
                bytes.extend_from_slice(v.value());
            }
            if bytes.is_empty() {
                return Err(damaged());
            }
            let record = decode_record(&bytes, tenant, b)
                .filter(|(p, _)| p == params)
                .ok_or_else(damaged)?
                .1;
            out.push((b, record));
        }
        Ok(out)
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
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        self.cache_durability(&mut txn);
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
            self.stamp(&txn).map_err(|e| self.error(e))?;
            txn.commit().map_err(|e| self.error(e))?;
        } else {
            txn.abort().map_err(|e| self.error(e))?;
        }
        Ok(valid)
    }

    /// Makes one gallery change durable: the block's record (of `params`, the gallery's)
    /// and the slot row.
    pub fn commit(
        &self,
        tenant: &str,
        params: &Params,
        change: &StoreChange<'_>,
    ) -> Result<(), MatcherError> {
        self.commit_all(tenant, params, std::slice::from_ref(change))
    }

    /// Makes several changes durable in one transaction (bulk enrolment, a move); a block
    /// changed more than once keeps its last record. A change's `drop_from` deletes those
    /// blocks after its own record is written; no later change may touch them.
    pub fn commit_all(
        &self,
        tenant: &str,
        params: &Params,
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
                    .then(|| encode_record(c.record, tenant, c.block, params))
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
                        let row = encode_slot(tenant, id.0, c.block, slot, label);
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
            let location = match table.get((tenant, id.0))? {
                None => return Ok(Ok(false)),
                Some(v) => split_slot(v.value(), tenant, id.0).map(|(loc, _)| loc),
            };
            let Some(loc) = location else {
                return Ok(Err(self.damaged(tenant, StoredRecord::Slot(id))));
            };
            let row = encode_slot(tenant, id.0, loc.block, loc.slot, label);
            table.insert((tenant, id.0), row.as_slice())?;
            Ok(Ok(true))
        })??;
        if !found {
            return Err(MatcherError::UnknownId(id));
        }
        Ok(())
    }

    /// Moves every block and slot (and the token hash, if any) of tenant `from` to `to`,
    /// in one durable transaction.
    pub fn rename_tenant(&self, from: &str, to: &str) -> Result<(), MatcherError> {
        // Every record's checksum covers its tenant: each is verified under `from` and
        // written again under `to`. A damaged one refuses the whole move (nothing changes:
        // the transaction is not committed).
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        let moved = (|| {
            let mut blocks = txn.open_table(BLOCKS)?;
            let rows: Vec<(u64, Vec<u8>)> = blocks
                .extract_from_if((from, 0u64)..=(from, u64::MAX), |_, _| true)?
                .map(|r| r.map(|(k, v)| (k.value().1, v.value().to_vec())))
                .collect::<Result<_, _>>()?;
            let mut i = 0;
            while i < rows.len() {
                let block = rows[i].0 >> PART_BITS;
                let mut bytes = Vec::new();
                while i < rows.len() && rows[i].0 >> PART_BITS == block {
                    bytes.extend_from_slice(&rows[i].1);
                    i += 1;
                }
                let Some((params, record)) = decode_record(&bytes, from, block as usize) else {
                    return Ok(Err(self.damaged(from, StoredRecord::Block(block))));
                };
                put_record(
                    &mut blocks,
                    to,
                    block as usize,
                    &encode_record(&record, to, block as usize, &params),
                )?;
            }
            let mut slots = txn.open_table(SLOTS)?;
            let rows: Vec<(u64, Vec<u8>)> = slots
                .extract_from_if((from, 0u64)..=(from, u64::MAX), |_, _| true)?
                .map(|r| r.map(|(k, v)| (k.value().1, v.value().to_vec())))
                .collect::<Result<_, _>>()?;
            for (id, row) in rows {
                let Some((loc, label)) = split_slot(&row, from, id) else {
                    return Ok(Err(self.damaged(from, StoredRecord::Slot(TemplateId(id)))));
                };
                let row = encode_slot(to, id, loc.block, loc.slot, label);
                slots.insert((to, id), row.as_slice())?;
            }
            let mut tenants = txn.open_table(TENANTS)?;
            let hash = tenants.remove(from)?.map(|v| v.value().to_vec());
            if let Some(hash) = hash {
                tenants.insert(to, hash.as_slice())?;
            }
            Ok::<_, redb::Error>(Ok(()))
        })()
        .map_err(|e| self.error(e))?;
        match moved {
            Ok(()) => txn.commit().map_err(|e| self.error(e)),
            Err(e) => {
                txn.abort().ok();
                Err(e)
            }
        }
    }
}
