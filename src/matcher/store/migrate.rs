//! Older schemas into schema 3, in the transaction that opens the store. Schema 1
//! (`templates_v1`: one seeded ciphertext per template, `u32 LE template length ||
//! template || label`): each tenant's templates are packed into blocks in id order
//! exactly as enrolment would, and the old table is dropped. Schema 2 (the same tables,
//! records without checksums): every block record and slot row is rewritten with its
//! checksum (format-1 block bodies are rounded as they are). A corrupt record refuses
//! the whole store, unchanged. Both schemas predate parameter versions: every template
//! and block in them is of parameters v1.

use redb::{ReadableTable, TableDefinition};

use super::record::{
    decode_legacy, encode_record, encode_slot, put_record, split_slot_v2, PART_BITS,
};
use super::tables::{BLOCKS, SLOTS};
use crate::he::{EncryptedTemplate, Gallery, Params, TemplateId};

const LEGACY_TEMPLATES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("templates_v1");

/// Packs schema 1's per-template ciphertexts into blocks (per tenant, in id order, as
/// enrolment would) and drops the old table. `Err(text)` refuses the store unchanged.
#[allow(clippy::result_large_err)]
pub(super) fn migrate_v1(txn: &redb::WriteTransaction) -> Result<Result<(), String>, redb::Error> {
    let params = &Params::v1();
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
                encode_slot(&tenant, *id, loc.block, loc.slot, label).as_slice(),
            )?;
        }
        for b in touched {
            let record = gallery.record(b).expect("block exists");
            put_record(
                &mut blocks,
                &tenant,
                b,
                &encode_record(&record, &tenant, b, params),
            )?;
        }
    }
    drop(blocks);
    drop(slots);
    txn.delete_table(LEGACY_TEMPLATES)?;
    Ok(Ok(()))
}

/// Rewrites schema 2's block records and slot rows with their checksums (block by block,
/// so a large store is never held in memory at once). `Err(text)` refuses the store
/// unchanged.
#[allow(clippy::result_large_err)]
pub(super) fn migrate_v2(txn: &redb::WriteTransaction) -> Result<Result<(), String>, redb::Error> {
    let params = &Params::v1();
    let mut blocks = txn.open_table(BLOCKS)?;
    let mut keys: Vec<(String, u64)> = Vec::new();
    for row in blocks.iter()? {
        let (k, _) = row?;
        let (tenant, key) = k.value();
        let block = key >> PART_BITS;
        if keys.last().map(|(t, b)| (t.as_str(), *b)) != Some((tenant, block)) {
            keys.push((tenant.to_string(), block));
        }
    }
    for (tenant, block) in keys {
        let base = block << PART_BITS;
        let mut bytes = Vec::new();
        for row in blocks.range((tenant.as_str(), base)..=(tenant.as_str(), base | 0xff))? {
            bytes.extend_from_slice(row?.1.value());
        }
        let Some(record) = decode_legacy(&bytes) else {
            return Ok(Err(format!(
                "block {block} of {tenant} is corrupt; nothing was migrated"
            )));
        };
        let b = block as usize;
        put_record(
            &mut blocks,
            &tenant,
            b,
            &encode_record(&record, &tenant, b, params),
        )?;
    }
    let mut slots = txn.open_table(SLOTS)?;
    let mut rows: Vec<(String, u64, Vec<u8>)> = Vec::new();
    for row in slots.iter()? {
        let (k, v) = row?;
        let (tenant, id) = k.value();
        rows.push((tenant.to_string(), id, v.value().to_vec()));
    }
    for (tenant, id, row) in rows {
        let Some((loc, label)) = split_slot_v2(&row) else {
            return Ok(Err(format!(
                "the slot row of template {id} of {tenant} is corrupt; nothing was migrated"
            )));
        };
        let row = encode_slot(&tenant, id, loc.block, loc.slot, label);
        slots.insert((tenant.as_str(), id), row.as_slice())?;
    }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use redb::Database;

    use super::*;
    use crate::he::{
        decrypt, encrypt_probe, encrypt_template, synthetic_templates, PreparedProbe, SecretKey,
        Template,
    };
    use crate::matcher::store::{Store, META, STORE_FILE, TENANTS};

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

    /// Builds before parameter versions wrote block records without one (format 3): such
    /// a store is read as parameters v1, answers exactly next to a v2 gallery, and a block
    /// changed since is written in format 4, naming v1.
    #[test]
    #[allow(clippy::result_large_err)]
    fn format_3_records_are_read_as_v1_next_to_a_v2_gallery() {
        use crate::matcher::store::record::{decode_record, encode_record_v3, record_version};
        use crate::matcher::Galleries;

        let (v1, v2) = (Params::v1(), Params::v2());
        let (k1, k2) = (SecretKey::generate(&v1), SecretKey::generate(&v2));
        let (t1, t2) = (
            synthetic_templates(16, 8, &v1),
            synthetic_templates(3, 9, &v2),
        );
        let dir = tempfile::tempdir().unwrap();
        // Ids 1..=n, one transaction.
        let enrol_all = |g: &Galleries, tenant: &str, key: &SecretKey, ts: &[Template]| {
            let items = (ts.iter().enumerate())
                .map(|(i, t)| (TemplateId(i as u64 + 1), encrypt_template(key, t), vec![]))
                .collect();
            g.enrol_many(tenant, items, 100).unwrap();
        };
        {
            let g = Galleries::open(dir.path(), &v1, 100).unwrap();
            enrol_all(&g, "old", &k1, &t1);
            // Rewritten as an older build wrote them.
            let store = g.store();
            let records = store.block_records("old", &v1, &[0, 1]).unwrap();
            store
                .write(|txn| {
                    let mut blocks = txn.open_table(BLOCKS)?;
                    for (b, r) in &records {
                        put_record(&mut blocks, "old", *b, &encode_record_v3(r, "old", *b))?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        let first_version = |dir: &Path, block: u64| {
            let store = Store::open(dir).unwrap();
            let txn = store.db.begin_read().unwrap();
            let table = txn.open_table(BLOCKS).unwrap();
            let row = table.get(("old", block << PART_BITS)).unwrap().unwrap();
            (row.value()[0], record_version(row.value()))
        };
        assert_eq!(first_version(dir.path(), 0), (3, Some(1)));
        let g = Galleries::open(dir.path(), &v2, 100).unwrap();
        assert_eq!(g.gallery_params("old").unwrap(), Some(v1));
        enrol_all(&g, "new", &k2, &t2);
        let exact = |g: &Galleries, removed: Option<usize>| {
            for (tenant, key, ts) in [("old", &k1, &t1), ("new", &k2, &t2)] {
                let (probe, ctx) = encrypt_probe(key, &ts[0]);
                let got = decrypt(key, &ctx, &g.identify(tenant, &probe).unwrap()).unwrap();
                let skip = if tenant == "old" { removed } else { None };
                assert_eq!(got.len(), ts.len() - skip.is_some() as usize);
                for d in got {
                    let i = d.id.0 as usize - 1;
                    assert_ne!(Some(i), skip);
                    assert_eq!(d.distance_sq, ts[0].distance_sq(&ts[i]), "{tenant} {i}");
                }
            }
        };
        exact(&g, None);
        // A removal in block 0 rewrites it (format 4, v1); block 1 stays format 3.
        let id = TemplateId(2);
        let (loc, block) = g.block_of("old", id).unwrap();
        assert_eq!(loc.block, 0);
        g.erase(
            "old",
            id,
            &crate::he::erasure(&k1, &block, loc.slot).unwrap(),
        )
        .unwrap();
        exact(&g, Some(1));
        drop(g);
        assert_eq!(first_version(dir.path(), 0), (4, Some(1)));
        assert_eq!(first_version(dir.path(), 1), (3, Some(1)));
        let g = Galleries::open(dir.path(), &v2, 100).unwrap();
        exact(&g, Some(1));
        let store = g.store();
        let (params, _) = store
            .read(|txn| {
                let table = txn.open_table(BLOCKS)?;
                let mut bytes = Vec::new();
                for row in table.range(("old", 0u64)..=("old", 0xff))? {
                    bytes.extend_from_slice(row?.1.value());
                }
                Ok(decode_record(&bytes, "old", 0).unwrap())
            })
            .unwrap();
        assert_eq!(params, v1);
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
                    txn.open_table(META)?.insert("schema", 4)?;
                    Ok(())
                })
                .unwrap();
        }
        let e = Store::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("schema version 4") && e.contains("upgrade blindface"),
            "{e}"
        );
    }
}
