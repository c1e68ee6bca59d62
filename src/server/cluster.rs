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
        let js = jetstream::new(client);
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
