//! A matcher node's link to its cluster (`serve --cluster`): one JetStream stream,
//! [`STREAM`], is the cluster's durable, replicated log of changes (file storage,
//! replicated by the NATS servers' Raft: R3 on a 3-server NATS cluster). Every node
//! applies the whole log in order (`ledger`'s follower); nothing about membership,
//! replication or ordering is ours.
//!
//! This file knows subjects, sequences and bytes, not what a change means (that is
//! `ledger`'s). It offers what the ledger needs from JetStream:
//! - [`Log::append`]: publish with `Nats-Expected-Last-Subject-Sequence`, JetStream's
//!   compare-and-set per subject; [`LogError::Conflict`] when another write came first.
//! - [`Log::last_of`] and [`Log::last`]: the sequence a read or a write must wait for.
//! - [`Log::follow`]: an ordered consumer from a sequence on (it is recreated by the
//!   client after a gap or a server's loss; sequences arrive strictly increasing).
//!
//! It also holds what nodes say to each other outside the log, on core NATS subjects
//! outside the stream's: [`Membership`] (heartbeats; who holds which shard) and the
//! subject a node answers its share of an identify on ([`match_subject`]).
//!
//! Invariant: the stream is never purged or edited (`deny_delete`, `deny_purge`), so a
//! node's cache plus the log after its position is always the whole state.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

/// The stream holding the cluster's log.
pub const STREAM: &str = "BLINDFACE";
/// How long a starting node waits for JetStream to answer.
const STARTUP_PATIENCE: Duration = Duration::from_secs(30);
/// Every subject of the log lies under this prefix.
pub const PREFIX: &str = "blindface";

/// How a node reaches NATS.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Comma-separated `nats://HOST:PORT` (or `tls://`) URLs of the NATS servers.
    pub urls: String,
    /// Replicas of the log (the stream's replication factor; at most the number of
    /// NATS servers). Used when this node creates the stream.
    pub log_replicas: usize,
    /// A NATS credentials file (JWT and NKey), when the NATS servers require one.
    pub credentials: Option<PathBuf>,
    /// A CA certificate (PEM) to verify the NATS servers' TLS certificates with.
    pub ca: Option<PathBuf>,
    /// Nodes holding each shard of every gallery (an identify survives the loss of all
    /// but one of a shard's holders).
    pub replicas: usize,
    /// Ops between snapshots of the cache in the object store (`snapshot`); 0: none.
    pub snapshot_every: u64,
}

/// Why the log refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Another write to the subject came after the expected sequence.
    #[error("another change came first")]
    Conflict,
    /// NATS or JetStream did not answer (no quorum, no connection, a timeout).
    #[error("the cluster's log is unavailable: {0}")]
    Unavailable(String),
}

fn unavailable(e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(e.to_string())
}

/// One change as the log holds it.
pub struct Entry {
    pub sequence: u64,
    pub payload: bytes::Bytes,
}

/// The cluster's log.
pub struct Log {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream,
    urls: String,
}

impl Log {
    /// Connects to NATS (failing within a few seconds if none answers) and opens the log,
    /// creating it with `log_replicas` replicas if it does not exist.
    pub async fn connect(config: &ClusterConfig) -> anyhow::Result<Log> {
        use anyhow::Context as _;
        let mut options = async_nats::ConnectOptions::new()
            .name("blindface-matcher")
            .connection_timeout(Duration::from_secs(5));
        if let Some(creds) = &config.credentials {
            options = options
                .credentials_file(creds)
                .await
                .with_context(|| format!("reading NATS credentials {}", creds.display()))?;
        }
        if let Some(ca) = &config.ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let servers = config
            .urls
            .split(',')
            .map(|u| u.trim().parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("--cluster {}: expected nats://HOST:PORT,...", config.urls))?;
        let client = options
            .connect(servers)
            .await
            .with_context(|| format!("cannot reach NATS at {}", config.urls))?;
        let js = jetstream::new(client.clone());
        // A NATS cluster that has just started elects its JetStream leader first (about a
        // second): until then every stream request fails, so retry for a while.
        let deadline = tokio::time::Instant::now() + STARTUP_PATIENCE;
        let stream = loop {
            let outcome = js.get_or_create_stream(Self::stream_config(config)).await;
            match outcome {
                Ok(stream) => break Ok(stream),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "JetStream not ready; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => break Err(e),
            }
        }
        .with_context(|| {
            format!(
                "opening the JetStream stream {STREAM} with {} replicas on {} (is JetStream \
                 enabled (nats-server -js), and are there at least that many NATS servers? \
                 --log-replicas sets the number)",
                config.log_replicas, config.urls
            )
        })?;
        Ok(Log {
            client,
            js,
            stream,
            urls: config.urls.clone(),
        })
    }

    fn stream_config(config: &ClusterConfig) -> stream::Config {
        stream::Config {
            name: STREAM.into(),
            subjects: vec![format!("{PREFIX}.>")],
            storage: stream::StorageType::File,
            num_replicas: config.log_replicas.max(1),
            deny_delete: true,
            deny_purge: true,
            // One change is at most a re-packing move (two templates, ~40 KB).
            max_message_size: 1 << 20,
            ..Default::default()
        }
    }

    /// The JetStream context (the snapshots' object store).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The NATS connection (for core NATS: membership, requests between nodes).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The NATS servers this node was given.
    pub fn urls(&self) -> &str {
        &self.urls
    }

    /// The replication factor of the log as JetStream has it.
    pub fn replicas(&self) -> usize {
        self.stream.cached_info().config.num_replicas
    }

    /// Appends `payload` under `subject` if the subject's last change is still `expected`
    /// (0: the subject has none); returns the change's sequence once JetStream has it
    /// durably (on a quorum of the stream's replicas).
    pub async fn append(
        &self,
        subject: String,
        payload: Vec<u8>,
        expected: u64,
    ) -> Result<u64, LogError> {
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .expected_last_subject_sequence(expected);
        let ack = self
            .js
            .send_publish(subject, publish)
            .await
            .map_err(publish_error)?
            .await
            .map_err(publish_error)?;
        Ok(ack.sequence)
    }

    /// The sequence of `subject`'s last change (0: none).
    pub async fn last_of(&self, subject: &str) -> Result<u64, LogError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(m.sequence),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// `subject`'s last change, if any.
    pub async fn last_entry(&self, subject: &str) -> Result<Option<Entry>, LogError> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Some(Entry {
                sequence: m.sequence,
                payload: m.payload,
            })),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The sequence of the log's last change (0: empty).
    pub async fn last(&self) -> Result<u64, LogError> {
        let info = self.stream.get_info().await.map_err(unavailable)?;
        Ok(info.state.last_sequence)
    }

    /// The log's changes from sequence `from` on, in order, for as long as the stream is
    /// read; an error ends it.
    pub async fn follow(
        &self,
        from: u64,
    ) -> Result<impl futures_util::Stream<Item = Result<Entry, LogError>>, LogError> {
        let consumer = self
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: from.max(1),
                },
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let messages = consumer.messages().await.map_err(unavailable)?;
        Ok(messages.map(|m| {
            let m = m.map_err(unavailable)?;
            let sequence = m.info().map_err(unavailable)?.stream_sequence;
            Ok(Entry {
                sequence,
                payload: m.payload.clone(),
            })
        }))
    }
}

fn publish_error(e: jetstream::context::PublishError) -> LogError {
    match e.kind() {
        jetstream::context::PublishErrorKind::WrongLastSequence => LogError::Conflict,
        _ => unavailable(e),
    }
}

/// Shards a gallery's blocks are spread over: block `b` is in shard `b % SHARDS`. The same
/// on every node (a constant of the build).
pub const SHARDS: usize = 16;

/// The shard block `block` is in (what `shards::holding` keeps in memory, as
/// `Residency::Modulo` of [`SHARDS`]).
pub fn shard_of(block: usize) -> usize {
    block % SHARDS
}
/// How often a node says it is alive, and how long a silent node is still counted.
const HEARTBEAT: Duration = Duration::from_secs(1);
const SILENT: Duration = Duration::from_secs(5);
/// Core NATS subjects between nodes (outside the log's `blindface.>`).
const HEARTBEAT_SUBJECT: &str = "bfnode.heartbeat";

/// The subject on which node `node` answers its share of an identify.
pub fn match_subject(node: u64) -> String {
    format!("bfnode.{node:016x}.match")
}

/// Which nodes are alive and which hold which shard. Every node publishes a heartbeat
/// each second on core NATS and hears everyone's; a node silent for 5 s is gone. A
/// shard's holders come from [`assignment`] over the live nodes, so every node that
/// hears the same nodes computes the same holders.
pub struct Membership {
    me: u64,
    replicas: usize,
    seen: parking_lot::Mutex<std::collections::HashMap<u64, tokio::time::Instant>>,
    /// The shards this node holds, once it has listened for [`SETTLE`] (`None` before:
    /// alone at first, it would take every shard).
    held: tokio::sync::watch::Sender<Option<Vec<usize>>>,
}

/// How long a starting node listens to heartbeats before it counts its shards: two
/// heartbeats, so it has heard every live node at least once.
const SETTLE: Duration = Duration::from_secs(2);

/// Every shard's holders among `live`: the live nodes in order of their ids form a ring
/// and shard `s`'s replicas are the `replicas` nodes from position `s` on, so every node
/// holds within one shard of an even share (`SHARDS * replicas / nodes`) and the holders
/// of one shard are distinct. Deterministic in `live`: every node computes the same. (A
/// node joining or leaving moves most shards, and their new holders load them from their
/// caches (`shards`); rendezvous hashing moves fewer but gave four nodes 3, 4, 4 and 5 of
/// 16 shards, a quarter more work on the busiest.)
pub fn assignment(live: &[u64], replicas: usize) -> Vec<Vec<u64>> {
    let mut ring = live.to_vec();
    ring.sort_unstable();
    ring.dedup();
    let n = ring.len();
    let r = replicas.clamp(1, n.max(1));
    (0..SHARDS)
        .map(|shard| (0..r.min(n)).map(|j| ring[(shard + j) % n]).collect())
        .collect()
}

impl Membership {
    /// Starts this node's heartbeats and listening to the others'.
    pub async fn start(
        client: &async_nats::Client,
        me: u64,
        replicas: usize,
    ) -> anyhow::Result<std::sync::Arc<Membership>> {
        let membership = std::sync::Arc::new(Membership {
            me,
            replicas: replicas.max(1),
            seen: Default::default(),
            held: tokio::sync::watch::Sender::new(None),
        });
        let mut heard = client.subscribe(HEARTBEAT_SUBJECT).await?;
        let m = membership.clone();
        tokio::spawn(async move {
            while let Some(msg) = heard.next().await {
                if let Ok(bytes) = <[u8; 8]>::try_from(&msg.payload[..]) {
                    let node = u64::from_le_bytes(bytes);
                    let new = m
                        .seen
                        .lock()
                        .insert(node, tokio::time::Instant::now())
                        .is_none();
                    if new && node != m.me {
                        tracing::info!(node = %format!("{node:016x}"), "a matcher node joined");
                    }
                }
            }
        });
        let (client, m) = (client.clone(), membership.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            let started = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let _ = client
                    .publish(HEARTBEAT_SUBJECT, m.me.to_le_bytes().to_vec().into())
                    .await;
                if started.elapsed() < SETTLE {
                    continue;
                }
                let now = m.held();
                m.held.send_if_modified(|held| {
                    if held.as_ref() == Some(&now) {
                        return false;
                    }
                    tracing::info!(shards = ?now, nodes = m.live().len(), "shards held by this node");
                    *held = Some(now);
                    true
                });
            }
        });
        Ok(membership)
    }

    /// The live nodes (this one always among them), ascending.
    pub fn live(&self) -> Vec<u64> {
        let now = tokio::time::Instant::now();
        let mut seen = self.seen.lock();
        seen.retain(|_, at| now.duration_since(*at) < SILENT);
        let mut live: Vec<u64> = seen.keys().copied().collect();
        if !live.contains(&self.me) {
            live.push(self.me);
        }
        live.sort_unstable();
        live
    }

    /// Drops `node` from the live set at once (nobody listens on its subject any more).
    pub fn forget(&self, node: u64) {
        if node != self.me {
            self.seen.lock().remove(&node);
        }
    }

    /// The nodes holding `shard`, first choice first.
    pub fn holders(&self, shard: usize) -> Vec<u64> {
        assignment(&self.live(), self.replicas).swap_remove(shard)
    }

    /// The shards this node holds as they change (`None` until the node has listened for
    /// [`SETTLE`]).
    pub fn held_changes(&self) -> tokio::sync::watch::Receiver<Option<Vec<usize>>> {
        self.held.subscribe()
    }

    /// The shards this node holds.
    pub fn held(&self) -> Vec<usize> {
        assignment(&self.live(), self.replicas)
            .iter()
            .enumerate()
            .filter(|(_, holders)| holders.contains(&self.me))
            .map(|(s, _)| s)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_spread_evenly_over_distinct_holders() {
        for nodes in 1..=5usize {
            let live: Vec<u64> = (0..nodes as u64).map(|i| 1000 - 7 * i).collect();
            for replicas in 1..=3usize {
                let a = assignment(&live, replicas);
                let r = replicas.min(nodes);
                let mut load: std::collections::HashMap<u64, usize> =
                    std::collections::HashMap::new();
                for holders in &a {
                    assert_eq!(holders.len(), r);
                    let distinct: std::collections::BTreeSet<_> = holders.iter().collect();
                    assert_eq!(distinct.len(), r, "distinct holders");
                    for h in holders {
                        *load.entry(*h).or_default() += 1;
                    }
                }
                let even = SHARDS * r / nodes;
                assert!(load.values().all(|&l| l.abs_diff(even) <= 1), "{load:?}");
                assert_eq!(load.values().sum::<usize>(), SHARDS * r);
                assert_eq!(load.len(), nodes, "every node holds shards");
            }
        }
        // The same live set in another order: the same assignment.
        assert_eq!(
            assignment(&[44, 11, 33, 22], 2),
            assignment(&[11, 22, 33, 44], 2)
        );
        assert!(assignment(&[], 1).iter().all(|h| h.is_empty()));
    }
}
