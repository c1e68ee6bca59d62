//! Every durable change the server makes is an [`Op`]; `changes` carries it out on a
//! node's state (one function, `changes::apply`) and this file takes it there: a
//! [`Ledger`] is standalone (`changes::write` applies an op at once) or a cluster
//! [`Node`], which appends the op to the cluster's log (`cluster`):
//! - **Compare-and-set per subject**: a tenant's gallery changes share one subject, as do
//!   registrations; a write waits until this node has applied the subject's last change,
//!   checks the op against that state ([`Machine::precheck`]) and appends it expecting that
//!   sequence. If another node's change came first, JetStream refuses it and the write
//!   starts over from the new state. So writes to one tenant are linearizable: two nodes
//!   enrolling at once never plan against the same state.
//! - **One follower per node** (a thread) applies every node's ops in log order through
//!   [`Machine::apply_at`], which stamps each op's sequence into the store transaction
//!   that carries it out ([`crate::matcher::Store::arm_log_position`]): after a
//!   crash the node resumes after the last op it applied, never applying one twice.
//! - The submitting node answers with the outcome its own follower got (ops carry their
//!   node's `origin`); **reads** first wait until the node has applied the tenant's last
//!   change ([`Ledger::fresh`]), so a template enrolled through one node is seen by the
//!   next request to any node.
//!
//! Invariant: applying an op is deterministic in the state and the op (no clock, no
//! randomness: ids, tokens and times are chosen by the submitter and travel in the op),
//! so every node that applies the same log holds the same state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::cluster::{Entry, Log, LogError, Membership, PREFIX};
use super::error::ApiError;
use super::metrics::ClusterView;
use super::tls;
use crate::he::Location;
use crate::matcher::codes;

/// One durable change. Ids, tokens and times are chosen by the node that submits it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
    /// The cluster's identity: the first node to start creates it (cluster only).
    Identity { cluster: u64 },
    /// Sets (or replaces) the admin token's hash.
    AdminToken { hash: [u8; 32] },
    /// The cluster's self-signed certificate, shared by every node (cluster only).
    Certificate { cert_pem: String, key_pem: String },
    /// One-time registration codes' hashes, created at `now` (Unix seconds).
    Invites { hashes: Vec<[u8; 32]>, now: u64 },
    /// A tenant with its token hash, consuming `invite` if given, within `max` tenants.
    Register {
        tenant: String,
        token_hash: [u8; 32],
        invite: Option<[u8; 32]>,
        max: usize,
    },
    /// A template (wire bytes) with its sealed label.
    Enrol {
        tenant: String,
        id: u64,
        template: Vec<u8>,
        label: Vec<u8>,
    },
    /// Removal's second step: the owner's cancelling ciphertext.
    Erase {
        tenant: String,
        id: u64,
        negation: Vec<u8>,
    },
    /// Re-packing's move.
    Relocate {
        tenant: String,
        id: u64,
        negation: Vec<u8>,
        fresh: Vec<u8>,
    },
}

/// The log subject of a tenant's gallery changes.
pub fn gallery_subject(tenant: &str) -> String {
    format!("{PREFIX}.gallery.{tenant}")
}

/// The log subject of registrations.
pub fn tenants_subject() -> String {
    format!("{PREFIX}.tenants")
}

impl Op {
    /// The subject the op is appended under: ops that must not interleave unseen share one.
    pub fn subject(&self) -> String {
        match self {
            Op::Identity { .. } => format!("{PREFIX}.cluster"),
            Op::AdminToken { .. } => format!("{PREFIX}.admin"),
            Op::Certificate { .. } => format!("{PREFIX}.certificate"),
            Op::Invites { .. } => format!("{PREFIX}.invites"),
            Op::Register { .. } => tenants_subject(),
            Op::Enrol { tenant, .. } | Op::Erase { tenant, .. } | Op::Relocate { tenant, .. } => {
                gallery_subject(tenant)
            }
        }
    }
}

/// What an applied op did, for the node that submitted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// A registration: admitted, or refused for an unknown or used code.
    Admitted(bool),
    /// A move: where the template went (`None`: nothing changed).
    Moved(Option<Location>),
}

/// The format of a log entry's bytes: this byte, then bincode of [`Envelope`].
const ENTRY_FORMAT: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The node that submitted the op (random per process).
    origin: u64,
    op: Op,
}

fn encode(origin: u64, op: Op) -> Vec<u8> {
    let mut out = vec![ENTRY_FORMAT];
    bincode::serialize_into(&mut out, &Envelope { origin, op })
        .expect("serialising to a Vec cannot fail");
    out
}

fn decode(bytes: &[u8]) -> Result<Envelope, String> {
    match bytes.split_first() {
        Some((&ENTRY_FORMAT, rest)) => {
            bincode::deserialize(rest).map_err(|e| format!("unreadable log entry: {e}"))
        }
        Some((other, _)) => Err(format!(
            "the log holds an entry of format {other}; this build reads format {ENTRY_FORMAT}: \
             upgrade this node"
        )),
        None => Err("an empty log entry".into()),
    }
}

/// What a node's state does with ops: the follower and the writer need it, and
/// `changes` provides it over the server's state (this file knows the log, not the
/// state).
pub trait Machine: Send + Sync + 'static {
    /// Carries out `op`, the log's change at `sequence`, recording the sequence with it;
    /// the op's own outcome, or `Err` when this node cannot go on (its cache failed):
    /// applying later ops without this one would diverge.
    fn apply_at(&self, sequence: u64, op: Op) -> Result<Result<Outcome, ApiError>, String>;
    /// Makes every op applied so far durable (called when the follower is idle).
    fn sync(&self) -> Result<(), String>;
    /// Refuses an op the state would refuse now (before it is appended).
    fn precheck(&self, op: &Op) -> Result<(), ApiError>;
}

/// Where the server's writes go.
pub enum Ledger {
    /// One machine: ops are applied at once.
    Standalone,
    /// A cluster node: ops go through the log.
    Cluster(Arc<Node>),
}

impl Ledger {
    /// Waits until this node holds `tenant`'s last change (a no-op standalone).
    pub async fn fresh(&self, tenant: &str) -> Result<(), ApiError> {
        match self {
            Ledger::Standalone => Ok(()),
            Ledger::Cluster(node) => node.barrier(&gallery_subject(tenant)).await,
        }
    }

    /// Waits until this node holds every registration made so far (a no-op standalone).
    pub async fn fresh_tenants(&self) -> Result<(), ApiError> {
        match self {
            Ledger::Standalone => Ok(()),
            Ledger::Cluster(node) => node.barrier(&tenants_subject()).await,
        }
    }

    /// This node's place in its cluster, for `/metrics` (empty standalone).
    pub fn view(&self) -> ClusterView {
        match self {
            Ledger::Standalone => ClusterView::default(),
            Ledger::Cluster(node) => {
                let (shards, nodes) = node.shards();
                ClusterView {
                    log_position: node.applied(),
                    nodes,
                    shards,
                }
            }
        }
    }

    /// 503 while a cluster node is not in step with its log (a no-op standalone).
    pub fn ready(&self) -> Result<(), ApiError> {
        match self {
            Ledger::Standalone => Ok(()),
            Ledger::Cluster(node) => node.ready(),
        }
    }
}

/// The longest a write or read waits for the log or for this node to catch up.
const WAIT: Duration = Duration::from_secs(5);
/// How often the follower checks that the log's delivery has not stalled.
const STALL_CHECK: Duration = Duration::from_secs(2);
/// Compare-and-set rounds a write tries before answering 503.
const ATTEMPTS: usize = 32;

/// A cluster node's side of the ledger: the log, what this node has applied of it, and
/// the outcomes of its own ops.
pub struct Node {
    log: Log,
    origin: u64,
    applied: watch::Sender<u64>,
    outcomes: parking_lot::Mutex<HashMap<u64, Result<Outcome, ApiError>>>,
    /// Why the follower stopped, if it did (this node then answers 503).
    failed: parking_lot::Mutex<Option<String>>,
    /// The follower has caught up with the log as it was at start.
    caught_up: AtomicBool,
    /// Who is alive and holds which shard (set once the node has caught up).
    membership: std::sync::OnceLock<Arc<Membership>>,
    /// Held by the follower while it applies an op: [`Node::paused`] holds it to read the
    /// cache between two ops.
    gate: parking_lot::Mutex<()>,
}

/// This node cannot reach its cluster's log (before doing anything: another node may).
fn unavailable(detail: impl std::fmt::Display) -> ApiError {
    ApiError::node_unavailable(
        format!("this matcher node cannot reach its cluster's log: {detail}"),
        1,
    )
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> Self {
        unavailable(e)
    }
}

impl Node {
    /// A node over `log` that has applied it up to `position` (its cache's).
    pub fn new(log: Log, position: u64) -> Result<Arc<Node>, ApiError> {
        let mut origin = [0u8; 8];
        getrandom::fill(&mut origin).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(Arc::new(Node {
            log,
            origin: u64::from_le_bytes(origin),
            applied: watch::Sender::new(position),
            outcomes: parking_lot::Mutex::new(HashMap::new()),
            failed: parking_lot::Mutex::new(None),
            caught_up: AtomicBool::new(false),
            membership: std::sync::OnceLock::new(),
            gate: parking_lot::Mutex::new(()),
        }))
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// This node's id (random per process): its ops' origin, its name among the nodes.
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// Starts this node's heartbeats and shard bookkeeping, with `replicas` holders per
    /// shard.
    pub async fn start_membership(&self, replicas: usize) -> anyhow::Result<()> {
        let m = Membership::start(self.log.client(), self.origin, replicas).await?;
        let _ = self.membership.set(m);
        Ok(())
    }

    /// Runs `f` between two ops (none is applied meanwhile), with the position of the
    /// last one applied (blocking: call from a blocking thread).
    pub fn paused<T>(&self, f: impl FnOnce(u64) -> T) -> T {
        let _gate = self.gate.lock();
        f(self.applied())
    }

    /// Who is alive and holds which shard.
    pub fn membership(&self) -> &Membership {
        self.membership
            .get()
            .expect("membership starts before serving")
    }

    /// The shards this node holds and the nodes alive (for `/metrics`).
    pub fn shards(&self) -> (Vec<usize>, usize) {
        match self.membership.get() {
            Some(m) => (m.held(), m.live().len()),
            None => (Vec::new(), 0),
        }
    }

    /// Waits until this node has applied the log up to `sequence` (another node's read
    /// position).
    pub async fn wait_position(&self, sequence: u64) -> Result<(), ApiError> {
        self.ready()?;
        self.wait_applied(sequence).await
    }

    /// The sequence of the last op this node applied.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    fn ready(&self) -> Result<(), ApiError> {
        if let Some(why) = &*self.failed.lock() {
            return Err(ApiError::node_unavailable(
                format!("this matcher node stopped applying its cluster's log: {why}"),
                5,
            ));
        }
        if !self.caught_up.load(Ordering::Acquire) {
            return Err(ApiError::node_unavailable(
                "this matcher node is catching up with its cluster's log",
                1,
            ));
        }
        Ok(())
    }

    /// Waits until this node has applied the op at `sequence`. The 503 on a timeout
    /// does not send the client elsewhere: when the op is the client's own, it is in the
    /// log and will be applied.
    async fn wait_applied(&self, sequence: u64) -> Result<(), ApiError> {
        let mut rx = self.applied.subscribe();
        let reached = tokio::time::timeout(WAIT, rx.wait_for(|&a| a >= sequence)).await;
        let behind = |message: String, retry| {
            ApiError::busy(StatusCode::SERVICE_UNAVAILABLE, codes::BUSY, message, retry)
        };
        if let Some(why) = &*self.failed.lock() {
            return Err(behind(
                format!("this matcher node stopped applying its cluster's log: {why}"),
                5,
            ));
        }
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(behind(
                format!(
                    "this node has applied its cluster's log up to {}, not yet {sequence}",
                    self.applied()
                ),
                1,
            )),
        }
    }

    /// Waits until this node has applied its own op at `sequence`, and takes what it did
    /// (`None` if nothing was recorded).
    async fn outcome_of(
        &self,
        sequence: u64,
    ) -> Result<Option<Result<Outcome, ApiError>>, ApiError> {
        self.wait_applied(sequence).await?;
        Ok(self.outcomes.lock().remove(&sequence))
    }

    async fn barrier(&self, subject: &str) -> Result<(), ApiError> {
        self.ready()?;
        let last = timed(self.log.last_of(subject)).await?;
        self.wait_applied(last).await
    }

    /// Appends `op` with compare-and-set on its subject and answers with its outcome
    /// here (see the module doc).
    pub async fn submit(&self, machine: Arc<dyn Machine>, op: Op) -> Result<Outcome, ApiError> {
        self.ready()?;
        let subject = op.subject();
        let payload = encode(self.origin, op.clone());
        for _ in 0..ATTEMPTS {
            let expected = timed(self.log.last_of(&subject)).await?;
            self.wait_applied(expected).await?;
            let (m, checked) = (machine.clone(), op.clone());
            tokio::task::spawn_blocking(move || m.precheck(&checked))
                .await
                .map_err(|e| ApiError::internal(format!("worker failed: {e}")))??;
            match timed(self.log.append(subject.clone(), payload.clone(), expected)).await {
                Ok(sequence) => {
                    return self.outcome_of(sequence).await?.unwrap_or_else(|| {
                        Err(ApiError::internal("the outcome of an op was lost"))
                    });
                }
                Err(LogError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::busy(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::BUSY,
            "too many concurrent changes to this gallery; try again",
            1,
        ))
    }

    /// Appends `op` unless its subject already has a change (cluster-wide "create once":
    /// the identity, the certificate, the first admin token); `true` if this one won.
    pub async fn create_once(&self, op: Op) -> Result<bool, ApiError> {
        let subject = op.subject();
        match timed(self.log.append(subject, encode(self.origin, op), 0)).await {
            Ok(sequence) => {
                self.outcome_of(sequence)
                    .await?
                    .unwrap_or(Ok(Outcome::Done))?;
                Ok(true)
            }
            Err(LogError::Conflict) => {
                self.wait_applied(self.log.last().await?).await?;
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Starts the follower from the op after this node's position: a task reads the log
    /// (re-subscribing after an error, from the first op not yet forwarded) and a thread
    /// applies it in order. Returns once the node has caught up with the log as it was
    /// when this was called.
    pub async fn follow(self: &Arc<Self>, machine: Arc<dyn Machine>) -> anyhow::Result<()> {
        let target = self.log.last().await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Entry>(256);
        let node = self.clone();
        std::thread::Builder::new()
            .name("log-follower".into())
            .spawn(move || {
                while let Some(entry) = rx.blocking_recv() {
                    let gate = node.gate.lock();
                    let mut applied = node.apply_entry(&*machine, entry);
                    if applied.is_ok() && rx.is_empty() {
                        // idle: make the cache's last changes durable
                        applied = machine.sync();
                    }
                    drop(gate);
                    if let Err(why) = applied {
                        tracing::error!(%why, "stopped applying the cluster's log");
                        *node.failed.lock() = Some(why);
                        // wake every waiter: they see `failed`
                        node.applied.send_modify(|_| {});
                        return;
                    }
                }
            })?;
        let node = self.clone();
        tokio::spawn(async move {
            let mut next = node.applied() + 1;
            loop {
                match node.log.follow(next).await {
                    Ok(entries) => {
                        let mut entries = std::pin::pin!(entries);
                        // A watchdog: a consumer that stalls (its NATS server died under
                        // it) while the log has moved on is dropped and made again.
                        let mut tick = tokio::time::interval_at(
                            tokio::time::Instant::now() + STALL_CHECK,
                            STALL_CHECK,
                        );
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        let mut seen = next;
                        loop {
                            let entry = tokio::select! {
                                entry = entries.next() => entry,
                                _ = tick.tick() => {
                                    let stalled = seen == next
                                        && matches!(timed(node.log.last()).await, Ok(last) if last >= next);
                                    seen = next;
                                    if stalled {
                                        tracing::warn!(waiting_for = next, "the log's delivery stalled; re-reading");
                                        break;
                                    }
                                    continue;
                                }
                            };
                            let Some(entry) = entry else { break };
                            match entry {
                                Ok(e) if e.sequence < next => continue,
                                Ok(e) if e.sequence > next => {
                                    tracing::warn!(
                                        expected = next,
                                        got = e.sequence,
                                        "a gap in the log's delivery; re-reading"
                                    );
                                    break;
                                }
                                Ok(e) => {
                                    next = e.sequence + 1;
                                    if tx.send(e).await.is_err() {
                                        return; // the applier stopped
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "reading the cluster's log; re-reading");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read the cluster's log; retrying"),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        let mut rx = self.applied.subscribe();
        loop {
            if let Some(why) = &*self.failed.lock() {
                anyhow::bail!("applying the cluster's log: {why}");
            }
            if *rx.borrow_and_update() >= target {
                break;
            }
            if rx.changed().await.is_err() {
                anyhow::bail!("the log follower stopped");
            }
        }
        self.caught_up.store(true, Ordering::Release);
        Ok(())
    }

    /// Applies one entry (on the follower thread). An op's own refusal is its outcome;
    /// `Err` only when this node cannot go on (its cache failed, or the entry is
    /// unreadable): applying later entries without it would diverge.
    fn apply_entry(&self, machine: &dyn Machine, entry: Entry) -> Result<(), String> {
        let envelope = decode(&entry.payload)?;
        let outcome = machine.apply_at(entry.sequence, envelope.op)?;
        if envelope.origin == self.origin {
            let mut outcomes = self.outcomes.lock();
            // outcomes nobody waited for (a submitter that timed out) do not pile up
            outcomes.retain(|&seq, _| seq + 10_000 > entry.sequence);
            outcomes.insert(entry.sequence, outcome);
        }
        self.applied.send_replace(entry.sequence);
        Ok(())
    }
}

/// Bounds a request to the log by [`WAIT`].
async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, LogError>>,
) -> Result<T, LogError> {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| Err(LogError::Unavailable("no answer in time".into())))
}

/// The cluster's id: read from the log, or created by this node if it is the first.
pub async fn identity(log: &Log) -> anyhow::Result<u64> {
    let subject = Op::Identity { cluster: 0 }.subject();
    for _ in 0..ATTEMPTS {
        if let Some(entry) = timed(log.last_entry(&subject)).await? {
            return match decode(&entry.payload).map_err(anyhow::Error::msg)?.op {
                Op::Identity { cluster } => Ok(cluster),
                other => anyhow::bail!("the log's identity entry holds {other:?}"),
            };
        }
        let mut id = [0u8; 8];
        getrandom::fill(&mut id)?;
        let op = Op::Identity {
            cluster: u64::from_le_bytes(id),
        };
        match timed(log.append(subject.clone(), encode(0, op), 0)).await {
            Ok(_) | Err(LogError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("could not read the cluster's identity from its log")
}

/// Opens a node's cache of cluster `id` in `data`: a cache of another cluster (its
/// NATS data was replaced) is discarded and rebuilt from the log; a standalone matcher's
/// store is refused, never overwritten. Only the blocks `residency` names are held in
/// memory.
pub fn open_cache(
    data: &std::path::Path,
    params: &crate::he::Params,
    quotas: crate::matcher::Quotas,
    residency: crate::he::Residency,
    id: u64,
) -> anyhow::Result<crate::matcher::Galleries> {
    use crate::matcher::{Galleries, Store, STORE_FILE};
    let file = data.join(STORE_FILE);
    if file.exists() {
        let store = Store::open(data)?;
        match store.cluster_id()? {
            Some(mine) if mine == id => {}
            Some(other) => {
                drop(store);
                tracing::warn!(cache = %file.display(), was = %format!("{other:016x}"), now = %format!("{id:016x}"), "the cache belongs to another cluster; rebuilding it from the log");
                std::fs::remove_file(&file)?;
                for f in [tls::SELF_SIGNED_CERT, tls::SELF_SIGNED_KEY] {
                    let _ = std::fs::remove_file(data.join(f));
                }
            }
            None if store.tenants()?.is_empty() && store.gallery_tenants()?.is_empty() => {}
            None => anyhow::bail!(
                "{} holds a standalone matcher's store, not a cluster node's cache: give the \
                 node its own --data directory (its state comes from the cluster's log), or \
                 serve this store without --cluster",
                file.display()
            ),
        }
    }
    let galleries = Galleries::open_holding(data, params, quotas, residency)?;
    galleries.store().use_as_cache();
    if galleries.store().cluster_id()?.is_none() {
        galleries.store().set_cluster_id(id)?;
    }
    Ok(galleries)
}
