//! Snapshots of a node's cache in JetStream's object store (bucket
//! [`BUCKET`], one object), so that a node starting with no cache restores the latest
//! snapshot and applies only the log after it, instead of replaying the whole log.
//!
//! A snapshot is the cache's redb file copied between two ops (the follower paused, the
//! cache made durable first) and stamped with the log position it holds (which the file
//! itself also records) and the cluster's id. One node takes them, the first holder of
//! shard 0, every `--snapshot-every` ops and after a minute without a change; the object
//! store keeps the newest only. Like the
//! log, a snapshot holds nothing secret: ciphertexts, sealed labels, hashes, and the
//! self-signed certificate's key that the log holds too (SECURITY.md, "A cluster").

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::object_store::{self, ObjectMetadata, ObjectStore};

use super::cluster::Log;
use super::ledger::Node;
use super::state::ServerState;
use crate::matcher::{Store, STORE_FILE};

/// The object store bucket of a cluster's snapshots, and the one object in it.
pub const BUCKET: &str = "BLINDFACE_SNAPSHOTS";
const OBJECT: &str = "cache";
/// Object metadata keys: the log position the snapshot holds, the cluster's id (hex).
const POSITION: &str = "position";
const CLUSTER: &str = "cluster";
/// Where in the node's `--data` a snapshot is prepared before it is uploaded.
const SNAPSHOT_DIR: &str = "snapshot";
/// How often the snapshot taker checks whether one is due.
const CHECK: Duration = Duration::from_secs(5);
/// A log that has not moved for this long gets a snapshot of its last changes, however
/// few (so a quiet cluster's newest snapshot is its state, and a new node replays nothing).
const QUIET: Duration = Duration::from_secs(60);

/// The cluster's snapshot bucket, created (file storage, the log's replicas) if absent.
async fn bucket(log: &Log) -> anyhow::Result<ObjectStore> {
    let js = log.jetstream();
    if let Ok(b) = js.get_object_store(BUCKET).await {
        return Ok(b);
    }
    js.create_object_store(object_store::Config {
        bucket: BUCKET.into(),
        description: Some("blindface matcher snapshots".into()),
        storage: async_nats::jetstream::stream::StorageType::File,
        num_replicas: log.replicas(),
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating the object store bucket {BUCKET}"))
}

/// The position and cluster of the newest snapshot, if there is one.
async fn newest(bucket: &ObjectStore) -> Option<(u64, u64)> {
    let info = bucket.info(OBJECT).await.ok()?;
    let position = info.metadata.get(POSITION)?.parse().ok()?;
    let cluster = u64::from_str_radix(info.metadata.get(CLUSTER)?, 16).ok()?;
    Some((position, cluster))
}

/// Restores the newest snapshot of cluster `cluster` into `data` when `data` has no
/// cache yet; returns the position it holds (`None`: nothing restored, the node builds
/// its cache from the log). A snapshot of another cluster is ignored; one that cannot be
/// read whole is left (the node builds its cache from the log instead).
pub async fn restore(log: &Log, data: &Path, cluster: u64) -> Option<u64> {
    let file = data.join(STORE_FILE);
    if file.exists() {
        return None;
    }
    let part = data.join(format!("{STORE_FILE}.part"));
    match download(log, data, cluster).await {
        Ok(position) => position,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            tracing::warn!(error = %e, "could not restore the cluster's snapshot; building this node's cache from the log");
            None
        }
    }
}

async fn download(log: &Log, data: &Path, cluster: u64) -> anyhow::Result<Option<u64>> {
    let file = data.join(STORE_FILE);
    let Ok(bucket) = log.jetstream().get_object_store(BUCKET).await else {
        return Ok(None); // no node has taken a snapshot yet
    };
    let Some((position, of)) = newest(&bucket).await else {
        return Ok(None);
    };
    if of != cluster {
        tracing::warn!(snapshot_of = %format!("{of:016x}"), "the snapshot in NATS is of another cluster; ignoring it");
        return Ok(None);
    }
    let started = Instant::now();
    std::fs::create_dir_all(data)?;
    let part = data.join(format!("{STORE_FILE}.part"));
    let mut object = bucket
        .get(OBJECT)
        .await
        .context("reading the cluster's snapshot")?;
    let mut out = tokio::fs::File::create(&part).await?;
    let bytes = tokio::io::copy(&mut object, &mut out)
        .await
        .context("reading the cluster's snapshot")?;
    out.sync_all().await?;
    drop(out);
    std::fs::rename(&part, &file)?;
    tracing::info!(
        position,
        bytes,
        ms = started.elapsed().as_millis() as u64,
        "restored the cluster's snapshot; applying the log after it"
    );
    Ok(Some(position))
}

/// Takes a snapshot every `every` ops, and of any change once the log has been quiet for
/// [`QUIET`], while this node is the first holder of shard 0 (a task).
pub fn follow(s: Arc<ServerState>, node: Arc<Node>, cluster: u64, every: u64) {
    if every == 0 {
        return;
    }
    tokio::spawn(async move {
        let bucket = loop {
            match bucket(node.log()).await {
                Ok(b) => break b,
                Err(e) => tracing::warn!(error = %e, "snapshots: no bucket yet"),
            }
            tokio::time::sleep(CHECK).await;
        };
        let mut tick = tokio::time::interval(CHECK);
        let (mut seen, mut since) = (node.applied(), Instant::now());
        loop {
            tick.tick().await;
            let applied = node.applied();
            if applied != seen {
                (seen, since) = (applied, Instant::now());
            }
            if node.membership().holders(0).first() != Some(&node.origin()) {
                continue;
            }
            let last = newest(&bucket).await.map_or(0, |(p, _)| p);
            let due = applied >= last.saturating_add(every)
                || (applied > last && since.elapsed() >= QUIET);
            if !due {
                continue;
            }
            let taken = take(&s, &node, &bucket, cluster).await;
            // The local copy goes, whatever happened to it.
            let _ = std::fs::remove_dir_all(s.data.join(SNAPSHOT_DIR));
            if let Err(e) = taken {
                tracing::warn!(error = %e, "taking a snapshot failed; the next try is in a moment");
            }
        }
    });
}

/// Copies the cache between two ops, makes the copy a clean, compacted store (redb marks
/// an open file as needing recovery: the copy is opened once here, which recovers and
/// checks it, and closed cleanly, so a restoring node opens it without that work), and
/// uploads it.
async fn take(
    s: &Arc<ServerState>,
    node: &Arc<Node>,
    bucket: &ObjectStore,
    cluster: u64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = s.data.join(SNAPSHOT_DIR);
    let copy = dir.join(STORE_FILE);
    let (state, n, to) = (s.clone(), node.clone(), dir.clone());
    let (position, paused_ms) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        std::fs::create_dir_all(&to)?;
        let position = n.paused(|position| -> anyhow::Result<u64> {
            let store = state.galleries.store();
            store.sync()?;
            std::fs::copy(store.path(), to.join(STORE_FILE))?;
            Ok(position)
        })?;
        let paused_ms = started.elapsed().as_millis() as u64;
        let mut clean = Store::open(&to)?;
        clean.compact()?;
        drop(clean);
        Ok((position, paused_ms))
    })
    .await??;
    let mut file = tokio::fs::File::open(&copy).await?;
    let meta = ObjectMetadata {
        name: OBJECT.into(),
        description: Some(format!("the matcher's state at log position {position}")),
        metadata: HashMap::from([
            (POSITION.to_string(), position.to_string()),
            (CLUSTER.to_string(), format!("{cluster:016x}")),
        ]),
        ..Default::default()
    };
    let uploaded = bucket.put(meta, &mut file).await;
    drop(file);
    let info = uploaded.context("uploading the snapshot")?;
    tracing::info!(
        position,
        bytes = info.size,
        paused_ms,
        ms = started.elapsed().as_millis() as u64,
        "snapshot taken"
    );
    Ok(())
}
