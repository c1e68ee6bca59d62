//! The redb tables of schema 3 (their layout is described in the store's module doc), in
//! one place for the store and its schema-1 migration.

use redb::TableDefinition;

pub(super) const BLOCKS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("blocks_v2");
pub(super) const SLOTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("slots_v2");
pub(super) const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants_v1");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta_v1");
pub(super) const SCHEMA: u64 = 3;
/// `meta_v1` keys of a cluster node's cache (see the store's module doc).
pub(super) const CLUSTER_ID: &str = "cluster";
pub(super) const LOG_POSITION: &str = "log_position";
