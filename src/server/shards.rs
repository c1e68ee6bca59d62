//! A cluster node's shards in memory: every node applies every change to its cache, but
//! keeps in memory only the ciphertexts of the blocks in the shards it holds
//! (`matcher::Galleries::set_residency`), following the membership as nodes come and go.
//! Until the node knows its shards it holds none; a request for a block it does not hold
//! loads that block from its cache first and drops it after (slower, never wrong).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use super::cluster::SHARDS;
use super::ledger::Node;
use super::state::ServerState;
use crate::he::Residency;

/// The residency of a node holding `shards` (of [`SHARDS`]).
pub fn holding(shards: impl IntoIterator<Item = usize>) -> Residency {
    Residency::Modulo {
        of: SHARDS,
        kept: shards.into_iter().collect::<BTreeSet<usize>>(),
    }
}

/// A node that holds no shard yet.
pub fn none() -> Residency {
    holding([])
}

/// Keeps `s`'s galleries holding this node's shards, from now on (a task).
pub fn follow(s: Arc<ServerState>, node: &Node) {
    let mut changes = node.membership().held_changes();
    tokio::spawn(async move {
        loop {
            let held = changes.borrow_and_update().clone();
            if let Some(held) = held {
                let s = s.clone();
                let started = Instant::now();
                let shards = held.clone();
                let done =
                    tokio::task::spawn_blocking(move || s.galleries.set_residency(holding(held)))
                        .await;
                match done {
                    Ok(Ok(change)) if change.loaded + change.released > 0 => tracing::info!(
                        shards = ?shards,
                        loaded = change.loaded,
                        released = change.released,
                        ms = started.elapsed().as_millis() as u64,
                        "blocks in memory follow this node's shards"
                    ),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "loading this node's shards"),
                    Err(e) => tracing::error!(error = %e, "loading this node's shards"),
                }
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
}
