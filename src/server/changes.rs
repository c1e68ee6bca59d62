//! What each change does to a node's state: [`apply`], the one function that carries an
//! [`Op`] out (store, galleries, tokens, admin hash, certificate); [`precheck`], the
//! refusals a cluster node makes before it appends an op to the log; [`write`], where
//! every handler's change goes (applied here standalone, through the log on a cluster:
//! `ledger`); and [`StateMachine`], the server's state as the log's follower sees it.

use std::sync::Arc;

use axum::http::StatusCode;

use super::error::ApiError;
use super::ledger::{Ledger, Machine, Op, Outcome};
use super::state::{blocking, ServerState};
use super::{accounts, tls};
use crate::he::{EncryptedTemplate, TemplateId};

/// Carries out `op` (durably, on every node of a cluster) and says what it did.
pub async fn write(s: &Arc<ServerState>, op: Op) -> Result<Outcome, ApiError> {
    match &s.ledger {
        Ledger::Standalone => {
            let s = s.clone();
            blocking(move || apply(&s, op)).await
        }
        Ledger::Cluster(node) => node.submit(Arc::new(StateMachine(s.clone())), op).await,
    }
}

/// The server's state as a cluster node's log follower and writer see it.
pub struct StateMachine(pub Arc<ServerState>);

impl Machine for StateMachine {
    fn apply_at(&self, sequence: u64, op: Op) -> Result<Result<Outcome, ApiError>, String> {
        let store = self.0.galleries.store();
        store.arm_log_position(sequence);
        let outcome = apply(&self.0, op);
        if let Err(e) = &outcome {
            if e.status == StatusCode::INTERNAL_SERVER_ERROR {
                return Err(format!("op {sequence} failed here: {}", e.message));
            }
        }
        store
            .settle_log_position()
            .map_err(|e| format!("recording op {sequence}: {e}"))?;
        Ok(outcome)
    }

    fn sync(&self) -> Result<(), String> {
        self.0
            .galleries
            .store()
            .sync()
            .map_err(|e| format!("syncing the cache: {e}"))
    }

    fn precheck(&self, op: &Op) -> Result<(), ApiError> {
        precheck(&self.0, op)
    }
}

/// A template an op carries: of any parameters this build knows (its gallery checks
/// they are its own).
fn template(bytes: &[u8]) -> Result<EncryptedTemplate, ApiError> {
    Ok(EncryptedTemplate::from_bytes_known(bytes)?)
}

/// Carries `op` out on this node's state. Deterministic (see the module doc).
pub fn apply(s: &ServerState, op: Op) -> Result<Outcome, ApiError> {
    let store = s.galleries.store();
    match op {
        Op::Identity { cluster } => {
            if store.cluster_id()?.is_none() {
                store.set_cluster_id(cluster)?;
            }
            Ok(Outcome::Done)
        }
        Op::AdminToken { hash } => {
            accounts::set_admin_token_hash(store, &hash)?;
            *s.admin_hash.write() = Some(hash);
            Ok(Outcome::Done)
        }
        Op::Certificate { cert_pem, key_pem } => {
            tls::write_self_signed(&s.data, &cert_pem, &key_pem)
                .map_err(|e| ApiError::internal(format!("{e:#}")))?;
            Ok(Outcome::Done)
        }
        Op::Invites { hashes, now } => {
            accounts::add_invites(store, &hashes, now)?;
            Ok(Outcome::Done)
        }
        Op::Register {
            tenant,
            token_hash,
            invite,
            max,
        } => Ok(Outcome::Admitted(s.auth.admit(
            &s.galleries,
            max,
            &tenant,
            token_hash,
            invite,
        )?)),
        Op::Enrol {
            tenant,
            id,
            template: t,
            label,
        } => {
            let t = template(&t)?;
            s.galleries.enrol(&tenant, TemplateId(id), t, &label)?;
            Ok(Outcome::Done)
        }
        Op::Erase {
            tenant,
            id,
            negation,
        } => {
            let negation = template(&negation)?;
            s.galleries.erase(&tenant, TemplateId(id), &negation)?;
            Ok(Outcome::Done)
        }
        Op::Relocate {
            tenant,
            id,
            negation,
            fresh,
        } => {
            let negation = template(&negation)?;
            let fresh = template(&fresh)?;
            Ok(Outcome::Moved(s.galleries.relocate(
                &tenant,
                TemplateId(id),
                &negation,
                &fresh,
            )?))
        }
    }
}

/// Refuses, before it is appended to the log, an op that [`apply`] would refuse in the
/// state this node holds now (which the compare-and-set then guarantees is the state it
/// is applied in): a refused op never reaches the log.
pub fn precheck(s: &ServerState, op: &Op) -> Result<(), ApiError> {
    match op {
        Op::Enrol {
            tenant,
            id,
            template: t,
            label,
        } => Ok(s
            .galleries
            .check_enrolment_into(tenant, TemplateId(*id), &template(t)?, label)?),
        Op::Erase {
            tenant,
            id,
            negation,
        } => precheck_change(s, tenant, *id, &[negation]),
        Op::Relocate {
            tenant,
            id,
            negation,
            fresh,
        } => precheck_change(s, tenant, *id, &[negation, fresh]),
        Op::Register { max, .. } => s.auth.check_room(*max),
        _ => Ok(()),
    }
}

/// The precheck of a removal or a move of template `id`: it is in `tenant`'s gallery,
/// and the owner's ciphertexts are of the gallery's parameters. Only their headers are
/// read: the route parsed them whole already, and [`apply`] parses them again.
fn precheck_change(
    s: &ServerState,
    tenant: &str,
    id: u64,
    templates: &[&Vec<u8>],
) -> Result<(), ApiError> {
    s.galleries.check_known(tenant, TemplateId(id))?;
    for t in templates {
        let params = crate::he::wire::known_params(crate::he::wire::Kind::Template, t)?;
        s.galleries.check_params(tenant, &params)?;
    }
    Ok(())
}
