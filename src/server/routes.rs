//! HTTP routes under `/v1`. Templates travel as base64 in a small JSON body (with the
//! encrypted label); probes and results as binary `application/octet-stream` bodies.
//! Every JSON body is a type of `crate::matcher::api`, the one the client uses too.
//! Authentication (token and rate limit) comes before any body byte is read; every body
//! is read by `body::Body` (bounded per route and server-wide, with a minimum rate) and
//! every ciphertext is parsed (version, parameters, size,
//! checksum) before any heavy work; matching runs on blocking threads, off the executor.
//!
//! - `GET  /v1/health`, `GET /v1/version`
//! - `POST /v1/tenants` `{invite}` (unless registration is open) -> 201 `{tenant, token}`
//! - `POST /v1/admin/invites` `{count}` (admin token) -> 201 `{codes}`
//! - `GET  /metrics` (admin token) -> Prometheus text
//! - `POST /v1/templates` `{id, template, label}` (id chosen by the app; base64) -> 201 `{id}`
//! - `GET  /v1/templates` -> `{count, templates: [{block_no, id, label, slot}]}`
//! - `GET  /v1/templates/{id}/block` -> `{block, block_no, slot}` (block: base64 full
//!   ciphertext): the first step of removal, for the key holder
//! - `POST /v1/templates/{id}/erase` `{negation}` (base64 seeded ciphertext) -> 204: adds
//!   the owner's cancelling ciphertext into the slot and frees it
//! - `POST /v1/templates/{id}/move` `{negation, template}` -> `{moved, block_no, slot}`
//!   (re-packing; `{moved: false}` alone when no lower block had room)
//! - `DELETE /v1/templates/{id}` -> 400 `erase_required` (a matcher cannot remove alone)
//! - `POST /v1/verify/{id}` (probe bytes) -> result bytes
//! - `POST /v1/identify` (probe bytes) -> result bytes, streamed (chunked) as the blocks
//!   are computed: never the whole result in one buffer
//!
//! Verify and identify take a matching slot first (503 when every slot and the queue are
//! taken); every authenticated route passes the tenant's rate limit (429); every request
//! has a deadline (408) and is counted and logged by `observe::observe`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use tokio::sync::mpsc::error::TrySendError;

use super::body::{self, Body, TenantBody, SMALL_BODY_LIMIT};
use super::error::ApiError;
use super::ledger::{Ledger, Op, Outcome};
use super::state::{blocking, ServerState, Tenant};
use super::{admin, auth, changes, limits, observe, scatter};
use crate::he::{
    wire::WIRE_VERSION, BlockResult, EncryptedProbe, EncryptedTemplate, MatchResult, ResultWriter,
    TemplateId, PARAMS_VERSION,
};
use crate::matcher::api::{
    paths, BlockReply, Credentials, EnrolReply, EnrolRequest, EraseRequest, Health, ListEntry,
    ListReply, MoveReply, MoveRequest, RegisterRequest, Version,
};
use crate::matcher::MatcherError;

/// Largest enrol body (a seeded template is ~16 KiB, ~22 KiB in base64).
pub const ENROL_BODY_LIMIT: usize = 64 * 1024;
/// Largest move body (a negation and a template).
pub const MOVE_BODY_LIMIT: usize = 2 * ENROL_BODY_LIMIT;
/// Largest probe body (a seeded probe is ~128 KiB).
pub const PROBE_BODY_LIMIT: usize = 512 * 1024;

type Shared = Arc<ServerState>;

pub fn router(state: Shared, request_timeout: Duration) -> Router {
    Router::new()
        .route(paths::HEALTH, get(health))
        .route(paths::VERSION, get(version))
        .route(paths::METRICS, get(observe::scrape))
        .route(paths::TENANTS, post(create_tenant))
        .route(paths::INVITES, post(admin::create_invites))
        .route(paths::TEMPLATES, post(enrol).get(list))
        .route(paths::TEMPLATE, delete(remove))
        .route(paths::TEMPLATE_BLOCK, get(removal_block))
        .route(paths::TEMPLATE_ERASE, post(erase))
        .route(paths::TEMPLATE_MOVE, post(relocate))
        .route(paths::VERIFY, post(verify))
        .route(paths::IDENTIFY, post(identify))
        .fallback(|| async { ApiError::not_found("no such route; see GET /v1/version") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                crate::matcher::codes::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .layer(middleware::from_fn_with_state(
            request_timeout,
            limits::request_timeout,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::state::unauthenticated,
        ))
        .layer(middleware::from_fn(body::linger))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}

fn path_id(p: Result<Path<TemplateId>, PathRejection>) -> Result<TemplateId, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|_| ApiError::bad_request("the template id must be a decimal integer"))
}

/// Serializes (and checksums) a result: multi-MB for large galleries, so callers run it
/// inside their blocking closure.
fn result_bytes(r: MatchResult) -> Vec<u8> {
    r.to_bytes()
}

fn result_response(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

/// 200 when this server answers; a cluster node answers 503 while it is not in step
/// with its cluster's log (catching up, or stopped), so a client moves on.
async fn health(State(s): State<Shared>) -> Result<Json<Health>, ApiError> {
    s.ledger.ready()?;
    Ok(Json(Health::ok()))
}

async fn version() -> Json<Version> {
    Json(Version {
        api: "v1".into(),
        name: "blindface".into(),
        params_version: PARAMS_VERSION,
        version: env!("CARGO_PKG_VERSION").into(),
        wire_version: WIRE_VERSION,
    })
}

async fn create_tenant(
    State(s): State<Shared>,
    b: Body<SMALL_BODY_LIMIT>,
) -> Result<(StatusCode, Json<Credentials>), ApiError> {
    let req: RegisterRequest = if b.is_empty() {
        RegisterRequest::default()
    } else {
        serde_json::from_slice(&b).map_err(|e| {
            ApiError::bad_request(format!("expected JSON {{\"invite\": CODE}}: {e}"))
        })?
    };
    let invite = auth::Tokens::invitation(s.registration, req.invite.as_deref())?;
    let (tenant, token) = auth::new_tenant()?;
    let op = Op::Register {
        tenant: tenant.clone(),
        token_hash: auth::hash_token(&token),
        invite,
        max: s.max_tenants,
    };
    if changes::write(&s, op).await? != Outcome::Admitted(true) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            crate::matcher::codes::INVITE_INVALID,
            "unknown or already used invitation code",
        ));
    }
    tracing::info!(tenant, "tenant registered");
    Ok((StatusCode::CREATED, Json(Credentials { tenant, token })))
}

async fn enrol(
    State(s): State<Shared>,
    TenantBody { tenant, body: b }: TenantBody<ENROL_BODY_LIMIT>,
) -> Result<(StatusCode, Json<EnrolReply>), ApiError> {
    let req: EnrolRequest = serde_json::from_slice(&b).map_err(|e| {
        ApiError::bad_request(format!(
            "expected JSON {{\"id\": integer, \"template\": base64, \"label\": base64}}: {e}"
        ))
    })?;
    let template = template_field("template", &req.template)?;
    let label = B64
        .decode(req.label.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("label is not valid base64: {e}")))?;
    let id = req.id;
    let op = Op::Enrol {
        tenant,
        id: id.0,
        template,
        label,
    };
    changes::write(&s, op).await?;
    Ok((StatusCode::CREATED, Json(EnrolReply { id })))
}

async fn list(
    State(s): State<Shared>,
    Tenant(tenant): Tenant,
) -> Result<Json<ListReply>, ApiError> {
    s.ledger.fresh(&tenant).await?;
    let reply = blocking(move || {
        let entries = s.galleries.list(&tenant)?;
        let templates: Vec<_> = entries
            .iter()
            .map(|e| ListEntry {
                block_no: e.location.block,
                id: e.id,
                label: B64.encode(&e.label),
                slot: e.location.slot,
            })
            .collect();
        Ok(ListReply {
            count: templates.len(),
            templates,
        })
    })
    .await?;
    Ok(Json(reply))
}

async fn remove(id: Result<Path<TemplateId>, PathRejection>) -> Result<Response, ApiError> {
    path_id(id)?;
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        crate::matcher::codes::ERASE_REQUIRED,
        "removal needs the key holder: GET /v1/templates/{id}/block, then POST the \
         cancelling ciphertext to /v1/templates/{id}/erase (blindface does both)",
    ))
}

async fn removal_block(
    State(s): State<Shared>,
    Tenant(tenant): Tenant,
    id: Result<Path<TemplateId>, PathRejection>,
) -> Result<Json<BlockReply>, ApiError> {
    let id = path_id(id)?;
    s.ledger.fresh(&tenant).await?;
    let reply = blocking(move || {
        let (loc, block) = s.galleries.block_of(&tenant, id)?;
        Ok(BlockReply {
            block: B64.encode(block.to_bytes()),
            block_no: loc.block,
            slot: loc.slot,
        })
    })
    .await?;
    Ok(Json(reply))
}

/// An encrypted template sent as the base64 JSON field `what`: its bytes, checked to
/// parse with parameters this build knows (the op carries the bytes; `changes::apply`
/// parses them again, and the gallery checks they are its own).
fn template_field(what: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    let bytes = B64
        .decode(text.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("{what} is not valid base64: {e}")))?;
    EncryptedTemplate::from_bytes_known(&bytes)?;
    Ok(bytes)
}

async fn erase(
    State(s): State<Shared>,
    id: Result<Path<TemplateId>, PathRejection>,
    TenantBody { tenant, body: b }: TenantBody<ENROL_BODY_LIMIT>,
) -> Result<StatusCode, ApiError> {
    let id = path_id(id)?;
    let req: EraseRequest = serde_json::from_slice(&b).map_err(|e| {
        ApiError::bad_request(format!("expected JSON {{\"negation\": base64}}: {e}"))
    })?;
    let negation = template_field("negation", &req.negation)?;
    let op = Op::Erase {
        tenant,
        id: id.0,
        negation,
    };
    changes::write(&s, op).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Re-packing: the owner's erasure of the old slot and fresh encryption for the new one,
/// applied as one durable change; answers where the template now sits (`moved: false`
/// when no lower block had room, nothing changed).
async fn relocate(
    State(s): State<Shared>,
    id: Result<Path<TemplateId>, PathRejection>,
    TenantBody { tenant, body: b }: TenantBody<MOVE_BODY_LIMIT>,
) -> Result<Json<MoveReply>, ApiError> {
    let id = path_id(id)?;
    let req: MoveRequest = serde_json::from_slice(&b).map_err(|e| {
        ApiError::bad_request(format!(
            "expected JSON {{\"negation\": base64, \"template\": base64}}: {e}"
        ))
    })?;
    let negation = template_field("negation", &req.negation)?;
    let fresh = template_field("template", &req.template)?;
    let op = Op::Relocate {
        tenant,
        id: id.0,
        negation,
        fresh,
    };
    match changes::write(&s, op).await? {
        Outcome::Moved(to) => Ok(Json(MoveReply::from(to))),
        other => Err(ApiError::internal(format!("a move answered {other:?}"))),
    }
}

/// A probe of any parameters this build knows (the gallery checks they are its own).
fn parse_probe(b: &[u8]) -> Result<EncryptedProbe, ApiError> {
    Ok(EncryptedProbe::from_bytes_known(b)?)
}

async fn verify(
    State(s): State<Shared>,
    id: Result<Path<TemplateId>, PathRejection>,
    TenantBody { tenant, body: b }: TenantBody<PROBE_BODY_LIMIT>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    s.ledger.fresh(&tenant).await?;
    // A verify's result is one block (~8 KiB): the tenant's slot is held while it is made.
    let tenant_slot = s.limits.per_tenant.take(&tenant)?;
    let slot = s.limits.matching.enter().await?;
    let r = blocking(move || {
        let _slots = (slot, tenant_slot);
        let probe = parse_probe(&b)?;
        let result = s.galleries.verify(&tenant, &probe, id)?;
        s.metrics.matched(1);
        Ok(result_bytes(result))
    })
    .await?;
    Ok(result_response(r))
}

/// Chunks of an identify's result waiting between the matching thread and the connection.
const RESULT_CHANNEL: usize = 2;

/// The most block bytes one identify of `blocks` blocks holds at once: the chunks in
/// the channel, the one being made and the one the connection took last. Taken (with the
/// result's header and tail) from the buffer budget before matching starts and held until
/// the response is done.
fn identify_block_bytes(params: &crate::he::Params, blocks: usize) -> usize {
    let block = BlockResult::encoded_len(params, params.slots_per_block());
    blocks.min((RESULT_CHANNEL + 2) * crate::matcher::IDENTIFY_CHUNK) * block
}

async fn identify(
    State(s): State<Shared>,
    TenantBody { tenant, body: b }: TenantBody<PROBE_BODY_LIMIT>,
) -> Result<Response, ApiError> {
    s.ledger.fresh(&tenant).await?;
    if let Ledger::Cluster(node) = &s.ledger {
        if node.membership().live().len() > 1 {
            let probe = Bytes::copy_from_slice(&b);
            drop(b);
            return scatter::identify(&s, node, tenant, probe).await;
        }
    }
    // Held until the response's last byte is handed over (or the connection is gone),
    // with the result's buffer bytes: a client that never reads holds them only until
    // the connection's write deadline (`stall`).
    let tenant_slot = s.limits.per_tenant.take(&tenant)?;
    let slot = s.limits.matching.enter().await?;
    let probe = blocking(move || parse_probe(&b)).await?;
    // The matching thread computes a chunk of blocks at a time and hands each, encoded,
    // to the response body through a small bounded channel: at most a few chunks are in
    // memory, and a client that stops reading stops the computation.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(RESULT_CHANNEL);
    type Admitted = Result<Option<tokio::sync::OwnedSemaphorePermit>, ApiError>;
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Admitted>();
    tokio::task::spawn_blocking(move || {
        // The matching slot is held while blocks are computed, and given back while the
        // client is behind (the channel full): a client that reads slowly, or not at all,
        // holds no slot while it makes the matcher wait. When it catches up the next
        // chunk is computed with a slot if one is free, else without: waiting for one
        // here, under the gallery's read lock, could deadlock against an enrolment
        // queued for the write lock and an identify holding the slot behind it. So a
        // paused identify computes at its client's reading pace.
        let mut slot = Some(slot);
        let params = *probe.params();
        let mut first = Some(first_tx);
        let outcome = s.galleries.identify_chunks(
            &tenant,
            &probe,
            crate::matcher::IDENTIFY_CHUNK,
            |n| {
                let mut w = ResultWriter::new(&params, n);
                let header = w.header();
                // The header, the blocks held at once and a tail of a few bytes.
                let bytes = header.len() + identify_block_bytes(&params, n) + 64;
                let budget = s.limits.buffered.take(bytes);
                let refused = budget.is_err();
                if let Some(f) = first.take() {
                    let _ = f.send(budget);
                }
                if refused {
                    return Err(MatcherError::Cancelled);
                }
                tx.blocking_send(Ok(Bytes::from(header)))
                    .map_err(|_| MatcherError::Cancelled)?;
                Ok(w)
            },
            |w, part| {
                let mut out = Vec::with_capacity(
                    part.len() * BlockResult::encoded_len(&params, params.slots_per_block()),
                );
                for block in &part {
                    w.block(block, &mut out);
                }
                s.metrics.matched(part.len());
                match tx.try_send(Ok(Bytes::from(out))) {
                    Ok(()) => Ok(()),
                    Err(TrySendError::Closed(_)) => Err(MatcherError::Cancelled),
                    Err(TrySendError::Full(chunk)) => {
                        slot = None;
                        tx.blocking_send(chunk)
                            .map_err(|_| MatcherError::Cancelled)?;
                        slot = s.limits.matching.try_resume();
                        Ok(())
                    }
                }
            },
        );
        drop(slot);
        match outcome {
            Ok(w) => {
                let mut tail = Vec::new();
                w.finish(&mut tail);
                let _ = tx.blocking_send(Ok(Bytes::from(tail)));
            }
            Err(e) => match first.take() {
                // Nothing sent yet: the client gets a proper error reply.
                Some(f) => {
                    let _ = f.send(Err(ApiError::from(e)));
                }
                // Mid-stream: cut the body, which the client sees as a truncated result.
                None => {
                    if !matches!(e, MatcherError::Cancelled) {
                        tracing::warn!(error = %e, "identify failed mid-stream");
                    }
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
            },
        }
    });
    let budget = first_rx
        .await
        .map_err(|_| ApiError::internal("the matching thread stopped"))??;
    let held = (tenant_slot, budget);
    let stream = futures_util::stream::poll_fn(move |cx| {
        let _held = &held;
        rx.poll_recv(cx)
    });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}
