//! An identify across a cluster's nodes (scatter-gather). The node that takes the
//! request waits until it holds the tenant's last change, lists the gallery's occupied
//! blocks, and asks each shard's holder (`cluster::Membership`) for that shard's blocks:
//! itself for the shards it holds, the others over core NATS ([`serve`] answers there,
//! at the same log position or later, in messages of at most [`BLOCKS_PER_MESSAGE`]
//! blocks). A holder that stops answering for [`SHARD_IDLE`] is replaced by the shard's
//! next holder (`--replicas 2` and more) for the blocks it had not sent.
//!
//! The taking node holds the tenant's and one matching slot for the whole identify
//! (until the last byte), as one server does; a node answering another's request takes
//! none, the asker's slot bounds it. The response starts only once every shard has
//! answered its first blocks; a shard
//! with no holder left is 503 with `Retry-After`, never a partial gallery, and one that
//! fails later cuts the stream, which the client's reader refuses. Blocks go to the client
//! in block order, the same stream a single server sends; the client then checks that
//! every listed block was answered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body as AxumBody, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::cluster::{match_subject, shard_of, SHARDS};
use super::error::ApiError;
use super::ledger::Node;
use super::state::{blocking, ServerState};
use crate::he::{BlockResult, EncryptedProbe, ResultWriter};
use crate::matcher::{codes, MatcherError};

/// Blocks per message between nodes (~8.6 KB each: well under NATS's 1 MiB payload).
pub const BLOCKS_PER_MESSAGE: usize = 64;
/// A shard's holder silent this long is given up for the next.
pub const SHARD_IDLE: Duration = Duration::from_secs(5);

/// What a node asks another for: `blocks` of `tenant`'s gallery, once it has applied
/// the log up to `position`.
#[derive(Serialize, Deserialize)]
struct MatchRequest {
    tenant: String,
    position: u64,
    blocks: Vec<u64>,
    probe: Vec<u8>,
}

/// Why a holder failed when nobody listens on its subject any more (it stopped or
/// restarted under another id): it is forgotten at once.
const GONE: &str = "the node is gone";

/// One message of an answer: the first byte says which.
const PART: u8 = 0;
const END: u8 = 1;
const FAILED: u8 = 2;

fn busy(message: String) -> ApiError {
    ApiError::busy(StatusCode::SERVICE_UNAVAILABLE, codes::BUSY, message, 1)
}

/// Answers other nodes' requests for their share of an identify, on this node's subject.
pub async fn serve(s: Arc<ServerState>, node: Arc<Node>) -> anyhow::Result<()> {
    let client = node.log().client().clone();
    let mut requests = client.subscribe(match_subject(node.origin())).await?;
    tokio::spawn(async move {
        while let Some(msg) = requests.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let (s, node, client) = (s.clone(), node.clone(), client.clone());
            tokio::spawn(async move {
                if let Err(e) = answer(&s, &node, &client, reply.clone(), &msg.payload).await {
                    let mut out = vec![FAILED];
                    out.extend_from_slice(e.message.as_bytes());
                    let _ = client.publish(reply, out.into()).await;
                }
            });
        }
    });
    Ok(())
}

async fn answer(
    s: &Arc<ServerState>,
    node: &Node,
    client: &async_nats::Client,
    reply: async_nats::Subject,
    payload: &[u8],
) -> Result<(), ApiError> {
    let req: MatchRequest = bincode::deserialize(payload)
        .map_err(|e| ApiError::bad_request(format!("a malformed match request: {e}")))?;
    node.wait_position(req.position).await?;
    let blocks = req.blocks.iter().map(|&b| b as usize).collect();
    let (work, mut rx) = share(s, req.tenant, Arc::new(req.probe), blocks);
    let forward = async {
        while let Some(part) = rx.recv().await {
            let len: usize = part.iter().map(|b| 4 + b.len()).sum();
            let mut out = Vec::with_capacity(5 + len);
            out.push(PART);
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            for bytes in &part {
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(bytes);
            }
            client
                .publish(reply.clone(), out.into())
                .await
                .map_err(|e| busy(format!("answering a node: {e}")))?;
        }
        Ok::<_, ApiError>(())
    };
    let (worked, forwarded) = tokio::join!(work, forward);
    worked?;
    forwarded?;
    client
        .publish(reply, vec![END].into())
        .await
        .map_err(|e| busy(format!("answering a node: {e}")))?;
    Ok(())
}

/// This node's share of an identify: `blocks` of `tenant`'s gallery matched on a blocking
/// thread, each chunk's blocks sent encoded ([`BlockResult::encode`]) as they are done;
/// the future is the work (for another node's request or the taker's own shards).
fn share(
    s: &Arc<ServerState>,
    tenant: String,
    probe: Arc<Vec<u8>>,
    blocks: Vec<usize>,
) -> (
    impl std::future::Future<Output = Result<(), ApiError>>,
    mpsc::Receiver<Vec<Vec<u8>>>,
) {
    let (tx, rx) = mpsc::channel(2);
    let state = s.clone();
    let work = blocking(move || {
        let probe = EncryptedProbe::from_bytes_known(&probe)?;
        state
            .galleries
            .identify_blocks(&tenant, &probe, &blocks, BLOCKS_PER_MESSAGE, |part| {
                state.metrics.matched(part.len());
                tx.blocking_send(part.iter().map(BlockResult::encode).collect())
                    .map_err(|_| MatcherError::Cancelled)
            })?;
        Ok(())
    });
    (work, rx)
}

/// One shard's blocks, encoded ([`BlockResult::encode`]), in order, as they come (an
/// error ends it). The node that merges them does not parse them: the client's reader
/// checks every block.
/// Blocks travel in batches (one answer message's, or one chunk computed here), so the
/// merge costs one channel hop per batch, not per block; remote blocks are slices of the
/// message they came in, never copied before the client's stream.
type ShardStream = mpsc::Receiver<Result<Vec<Bytes>, String>>;
type ShardSender = mpsc::Sender<Result<Vec<Bytes>, String>>;

/// Fetches `blocks` (one shard's, ascending) from the shard's holders in turn, forwarding
/// each block once, in order.
#[allow(clippy::too_many_arguments)]
async fn fetch_shard(
    s: Arc<ServerState>,
    node: Arc<Node>,
    tenant: String,
    position: u64,
    probe: Arc<Vec<u8>>,
    shard: usize,
    holders: Vec<u64>,
    blocks: Vec<usize>,
    tx: ShardSender,
) {
    let mut sent = 0usize;
    let mut why = String::from("no live node holds this shard");
    let mut holders = std::collections::VecDeque::from(holders);
    let mut tried = Vec::new();
    while let Some(holder) = holders.pop_front() {
        if sent == blocks.len() {
            return;
        }
        tried.push(holder);
        let rest = &blocks[sent..];
        let outcome = if holder == node.origin() {
            local_share(&s, &tenant, &probe, rest, &tx, &mut sent).await
        } else {
            remote_share(
                &node, holder, &tenant, position, &probe, rest, &tx, &mut sent,
            )
            .await
        };
        match outcome {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(holder = %format!("{holder:016x}"), error = %e, "a shard's holder did not answer; trying the next");
                if e == GONE {
                    // Its successor among the live nodes takes the shard now.
                    let membership = node.membership();
                    membership.forget(holder);
                    holders = membership
                        .holders(shard)
                        .into_iter()
                        .filter(|h| !tried.contains(h))
                        .collect();
                }
                why = e;
            }
        }
    }
    if sent < blocks.len() {
        let _ = tx.send(Err(why)).await;
    }
}

async fn local_share(
    s: &Arc<ServerState>,
    tenant: &str,
    probe: &Arc<Vec<u8>>,
    blocks: &[usize],
    tx: &ShardSender,
    sent: &mut usize,
) -> Result<(), String> {
    let (work, mut part_rx) = share(s, tenant.to_string(), probe.clone(), blocks.to_vec());
    let forward = async {
        while let Some(part) = part_rx.recv().await {
            let n = part.len();
            let batch = part.into_iter().map(Bytes::from).collect();
            tx.send(Ok(batch))
                .await
                .map_err(|_| "cancelled".to_string())?;
            *sent += n;
        }
        Ok::<_, String>(())
    };
    let (worked, forwarded) = tokio::join!(work, forward);
    worked.map_err(|e| e.message)?;
    forwarded
}

#[allow(clippy::too_many_arguments)]
async fn remote_share(
    node: &Node,
    holder: u64,
    tenant: &str,
    position: u64,
    probe: &Arc<Vec<u8>>,
    blocks: &[usize],
    tx: &ShardSender,
    sent: &mut usize,
) -> Result<(), String> {
    let client = node.log().client();
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    let request = MatchRequest {
        tenant: tenant.to_string(),
        position,
        blocks: blocks.iter().map(|&b| b as u64).collect(),
        probe: probe.to_vec(),
    };
    let payload = bincode::serialize(&request).map_err(|e| e.to_string())?;
    client
        .publish_with_reply(match_subject(holder), inbox, payload.into())
        .await
        .map_err(|e| e.to_string())?;
    // The probe was parsed before it was sent out: its header names known parameters.
    let params = crate::he::wire::known_params(crate::he::wire::Kind::Probe, probe)
        .map_err(|e| e.to_string())?;
    let mut got = 0usize;
    loop {
        let msg = match tokio::time::timeout(SHARD_IDLE, answers.next()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => return Err("the connection to NATS closed".into()),
            Err(_) => return Err(format!("no answer for {} s", SHARD_IDLE.as_secs())),
        };
        if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return Err(GONE.into());
        }
        match msg.payload.split_first() {
            Some((&PART, rest)) => {
                let ranges = split_part(rest, &params)?;
                if got + ranges.len() > blocks.len() {
                    return Err("more blocks than asked".into());
                }
                let n = ranges.len();
                let batch = ranges
                    .into_iter()
                    .map(|r| msg.payload.slice(1 + r.start..1 + r.end))
                    .collect();
                tx.send(Ok(batch))
                    .await
                    .map_err(|_| "cancelled".to_string())?;
                got += n;
                *sent += n;
            }
            Some((&END, _)) if got == blocks.len() => return Ok(()),
            Some((&END, _)) => return Err(format!("{got} blocks of {}", blocks.len())),
            Some((&FAILED, why)) => return Err(String::from_utf8_lossy(why).into_owned()),
            _ => return Err("an unreadable answer".into()),
        }
    }
}

/// The encoded blocks of one answer message: `u32 count`, then each block as `u32 length`
/// and its bytes, every length the one its entry count (its first byte) gives.
fn split_part(
    bytes: &[u8],
    params: &crate::he::Params,
) -> Result<Vec<std::ops::Range<usize>>, String> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<(std::ops::Range<usize>, &[u8]), String> {
        let piece = bytes.get(at..at + n).ok_or("a truncated answer")?;
        at += n;
        Ok((at - n..at, piece))
    };
    let count = u32::from_le_bytes(take(4)?.1.try_into().expect("4 bytes")) as usize;
    if count > BLOCKS_PER_MESSAGE {
        return Err(format!("{count} blocks in one answer"));
    }
    let mut blocks = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u32::from_le_bytes(take(4)?.1.try_into().expect("4 bytes")) as usize;
        let (range, block) = take(len)?;
        let entries = *block.first().ok_or("an empty block")? as usize;
        if entries > params.slots_per_block() || len != BlockResult::encoded_len(params, entries) {
            return Err("a malformed block in an answer".into());
        }
        blocks.push(range);
    }
    if at != bytes.len() {
        return Err("trailing bytes in an answer".into());
    }
    Ok(blocks)
}

/// `POST /v1/identify` on a cluster node with other live nodes: see the module doc.
pub async fn identify(
    s: &Arc<ServerState>,
    node: &Arc<Node>,
    tenant: String,
    probe: Bytes,
) -> Result<Response, ApiError> {
    // Held until the merged stream's last byte, as for one server's identify; the
    // matching slot here stands for the whole identify, its shards here and elsewhere
    // (a node answering another's request takes none: the asker's slot bounds it).
    let tenant_slot = s.limits.per_tenant.take(&tenant)?;
    let matching_slot = s.limits.matching.enter().await?;
    let checked = probe.clone();
    let params =
        blocking(move || Ok(*EncryptedProbe::from_bytes_known(&checked)?.params())).await?;
    s.galleries.check_params(&tenant, &params)?;
    let position = node.applied();
    let occupied = s.galleries.occupied_blocks(&tenant)?;
    let membership = node.membership();
    let probe = Arc::new(probe.to_vec());
    let mut shards: BTreeMap<usize, ShardStream> = BTreeMap::new();
    for shard in 0..SHARDS {
        let blocks: Vec<usize> = occupied
            .iter()
            .copied()
            .filter(|&b| shard_of(b) == shard)
            .collect();
        if blocks.is_empty() {
            continue;
        }
        let (tx, rx) = mpsc::channel(4); // batches: at most ~256 blocks (2.2 MB) per shard
        tokio::spawn(fetch_shard(
            s.clone(),
            node.clone(),
            tenant.clone(),
            position,
            probe.clone(),
            shard,
            membership.holders(shard),
            blocks,
            tx,
        ));
        shards.insert(shard, rx);
    }
    // Every shard's first blocks before the first byte: a shard nobody answers is a 503.
    let mut pending: BTreeMap<usize, std::collections::VecDeque<Bytes>> = BTreeMap::new();
    for (&shard, rx) in shards.iter_mut() {
        match rx.recv().await {
            Some(Ok(batch)) => {
                pending.insert(shard, batch.into());
            }
            Some(Err(why)) => {
                return Err(busy(format!(
                    "shard {shard} of this gallery has no node that answers now ({why})"
                )))
            }
            None => {
                return Err(busy(format!(
                    "shard {shard} of this gallery was not answered"
                )))
            }
        }
    }
    let (out_tx, out_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::spawn(async move {
        let _slots = (tenant_slot, matching_slot);
        let mut w = ResultWriter::new(&params, occupied.len());
        if out_tx.send(Ok(Bytes::from(w.header()))).await.is_err() {
            return;
        }
        let mut out = Vec::new();
        for &b in &occupied {
            let shard = shard_of(b);
            let queue = pending.get_mut(&shard).expect("every shard with blocks");
            if queue.is_empty() {
                match shards
                    .get_mut(&shard)
                    .expect("every shard with blocks")
                    .recv()
                    .await
                {
                    Some(Ok(batch)) => queue.extend(batch),
                    Some(Err(why)) => {
                        tracing::warn!(shard, %why, "an identify lost a shard mid-stream; cutting the response");
                        let _ = out_tx.send(Err(std::io::Error::other(why))).await;
                        return;
                    }
                    None => {}
                }
            }
            let block = queue
                .pop_front()
                .ok_or_else(|| format!("shard {shard} ended early"));
            match block {
                Ok(block) => w.encoded_block(&block, &mut out),
                Err(why) => {
                    tracing::warn!(shard, %why, "an identify lost a shard mid-stream; cutting the response");
                    let _ = out_tx.send(Err(std::io::Error::other(why))).await;
                    return;
                }
            }
            if out.len() >= 1 << 20
                && out_tx
                    .send(Ok(Bytes::from(std::mem::take(&mut out))))
                    .await
                    .is_err()
            {
                return;
            }
        }
        w.finish(&mut out);
        let _ = out_tx.send(Ok(Bytes::from(out))).await;
    });
    let body = AxumBody::from_stream(tokio_stream_from(out_rx));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// A receiver as a stream of body chunks.
fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::he::{Params, SlotReadout, TemplateId};

    fn message(blocks: &[Vec<u8>]) -> Vec<u8> {
        let mut out = (blocks.len() as u32).to_le_bytes().to_vec();
        for b in blocks {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    #[test]
    fn an_answer_splits_into_its_blocks_and_bad_framing_is_refused() {
        let p = Params::v1();
        let block = |entries: usize| {
            BlockResult {
                mask: vec![7; p.polynomial_size],
                entries: (0..entries)
                    .map(|i| SlotReadout {
                        slot: i as u8,
                        id: Some(TemplateId(i as u64 + 1)),
                        readout: 9,
                    })
                    .collect(),
            }
            .encode()
        };
        let (a, b) = (block(15), block(3));
        let good = message(&[a.clone(), b.clone()]);
        let ranges = split_part(&good, &p).unwrap();
        let pieces: Vec<&[u8]> = ranges.into_iter().map(|r| &good[r]).collect();
        assert_eq!(pieces, vec![&a[..], &b[..]]);
        assert!(
            split_part(&good[..good.len() - 1], &p).is_err(),
            "truncated"
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(split_part(&trailing, &p).is_err(), "trailing");
        let mut short = b.clone();
        short.pop();
        assert!(
            split_part(&message(&[short]), &p).is_err(),
            "a block of the wrong length"
        );
        let mut lying = a.clone();
        lying[0] = 16;
        assert!(
            split_part(&message(&[lying]), &p).is_err(),
            "more entries than slots"
        );
        let too_many = message(&vec![b.clone(); BLOCKS_PER_MESSAGE + 1]);
        assert!(split_part(&too_many, &p).is_err(), "too many blocks");
        assert!(split_part(&[], &p).is_err(), "empty");
    }
}
