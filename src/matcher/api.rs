//! The wire protocol between `blindface serve` and its client, written once: the route
//! paths and every JSON request, reply and error body, each one type with Serialize and
//! Deserialize that both ends use (the server's handlers parse and return them,
//! `remote` sends and parses them), so renaming a field breaks both ends or neither.
//! Probes and results travel as binary bodies (`crate::he::wire`), not here.
//!
//! Byte compatibility with earlier versions: request fields are in the order the client
//! has always sent them; reply fields are in alphabetical order, the order the server's
//! untyped replies used to have (serde_json sorts an untyped object's keys). The tests
//! pin every body's exact JSON.

use serde::{Deserialize, Serialize};

use crate::he::{Location, TemplateId};

/// A response header a cluster node sets on a 503 given before it did anything (it is
/// catching up with its cluster's log, or cannot reach it): the client sends the same
/// request to the cluster's next node.
pub const RETRY_ELSEWHERE: &str = "x-blindface-retry-elsewhere";

/// Route paths (axum patterns; fill `{id}` with [`paths::with_id`] on the client).
pub mod paths {
    use crate::he::TemplateId;

    pub const HEALTH: &str = "/v1/health";
    pub const VERSION: &str = "/v1/version";
    pub const METRICS: &str = "/metrics";
    pub const TENANTS: &str = "/v1/tenants";
    pub const INVITES: &str = "/v1/admin/invites";
    pub const TEMPLATES: &str = "/v1/templates";
    pub const TEMPLATE: &str = "/v1/templates/{id}";
    pub const TEMPLATE_BLOCK: &str = "/v1/templates/{id}/block";
    pub const TEMPLATE_ERASE: &str = "/v1/templates/{id}/erase";
    pub const TEMPLATE_MOVE: &str = "/v1/templates/{id}/move";
    pub const VERIFY: &str = "/v1/verify/{id}";
    pub const IDENTIFY: &str = "/v1/identify";

    /// `pattern` with its `{id}` filled in.
    pub fn with_id(pattern: &str, id: TemplateId) -> String {
        pattern.replace("{id}", &id.to_string())
    }
}

/// `GET /v1/health` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

impl Health {
    pub fn ok() -> Self {
        Health {
            status: "ok".into(),
        }
    }
}

/// `GET /v1/version` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// `"v1"`.
    pub api: String,
    /// `"blindface"`.
    pub name: String,
    pub params_version: u16,
    /// The server's crate version.
    pub version: String,
    pub wire_version: u16,
}

/// `POST /v1/tenants` request (an empty body means no code).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The one-time invitation code (not needed under open registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invite: Option<String>,
}

/// A tenant's access to one server: the `POST /v1/tenants` reply, and what
/// [`super::TokenStore`] keeps. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub tenant: String,
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tenant", &self.tenant)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// `POST /v1/admin/invites` request (an empty body means one code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    #[serde(default = "one")]
    pub count: usize,
}

fn one() -> usize {
    1
}

impl Default for InviteRequest {
    fn default() -> Self {
        InviteRequest { count: one() }
    }
}

/// `POST /v1/admin/invites` reply: the one-time codes, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteReply {
    pub codes: Vec<String>,
}

/// `POST /v1/templates` request; `template` and `label` are base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    pub id: TemplateId,
    /// The seeded template ciphertext.
    pub template: String,
    /// The app-encrypted label.
    pub label: String,
}

/// `POST /v1/templates` reply (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolReply {
    pub id: TemplateId,
}

/// `GET /v1/templates` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListReply {
    /// `templates.len()` (clients need not rely on it).
    #[serde(default)]
    pub count: usize,
    pub templates: Vec<ListEntry>,
}

/// One enrolled template in a [`ListReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    pub block_no: usize,
    pub id: TemplateId,
    /// The encrypted label, base64.
    pub label: String,
    pub slot: usize,
}

/// `GET /v1/templates/{id}/block` reply: the first step of removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockReply {
    /// The block's full ciphertext, base64.
    pub block: String,
    pub block_no: usize,
    pub slot: usize,
}

/// `POST /v1/templates/{id}/erase` request (reply: 204, no body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// The owner's cancelling ciphertext, base64.
    pub negation: String,
}

/// `POST /v1/templates/{id}/move` request; both fields base64 seeded ciphertexts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    pub negation: String,
    pub template: String,
}

/// `POST /v1/templates/{id}/move` reply: where the template now sits (`{"moved": false}`
/// alone when no lower block had room and nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveReply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_no: Option<usize>,
    pub moved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<usize>,
}

impl From<Option<Location>> for MoveReply {
    fn from(to: Option<Location>) -> Self {
        MoveReply {
            block_no: to.map(|l| l.block),
            moved: to.is_some(),
            slot: to.map(|l| l.slot),
        }
    }
}

/// Every error reply's body. Clients map `code` (see [`super::codes`]), never `error`
/// (English, for people); `code` may be missing from what a proxy in front sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: String,
    pub error: String,
    /// The template the error is about (`unknown_template`, `duplicate_id`, `bad_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<TemplateId>,
    /// The limit that was hit (`gallery_full`: templates; `tenant_quota`,
    /// `memory_budget`: bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    /// Seconds to wait (also sent as `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// `gallery_params`: the gallery's parameter version...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gallery_params: Option<u16>,
    /// ...and the request's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_params: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;

    /// `value` serializes to exactly `json` and parses back to itself.
    fn pinned<T>(value: T, json: &str)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        assert_eq!(serde_json::to_string(&value).unwrap(), json);
        assert_eq!(serde_json::from_str::<T>(json).unwrap(), value);
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn every_body_keeps_its_wire_form() {
        pinned(Health::ok(), r#"{"status":"ok"}"#);
        pinned(
            Version {
                api: s("v1"),
                name: s("blindface"),
                params_version: 1,
                version: s("0.1.0"),
                wire_version: 1,
            },
            r#"{"api":"v1","name":"blindface","params_version":1,"version":"0.1.0","wire_version":1}"#,
        );
        pinned(RegisterRequest { invite: None }, r#"{}"#);
        pinned(
            RegisterRequest {
                invite: Some(s("c0de")),
            },
            r#"{"invite":"c0de"}"#,
        );
        pinned(
            Credentials {
                tenant: s("t"),
                token: s("k"),
            },
            r#"{"tenant":"t","token":"k"}"#,
        );
        pinned(InviteRequest { count: 3 }, r#"{"count":3}"#);
        pinned(
            InviteReply {
                codes: vec![s("a"), s("b")],
            },
            r#"{"codes":["a","b"]}"#,
        );
        pinned(
            EnrolRequest {
                id: TemplateId(7),
                template: s("VA=="),
                label: s("TA=="),
            },
            r#"{"id":7,"template":"VA==","label":"TA=="}"#,
        );
        pinned(EnrolReply { id: TemplateId(7) }, r#"{"id":7}"#);
        pinned(
            ListReply {
                count: 1,
                templates: vec![ListEntry {
                    block_no: 2,
                    id: TemplateId(7),
                    label: s("TA=="),
                    slot: 3,
                }],
            },
            r#"{"count":1,"templates":[{"block_no":2,"id":7,"label":"TA==","slot":3}]}"#,
        );
        pinned(
            BlockReply {
                block: s("Qg=="),
                block_no: 2,
                slot: 3,
            },
            r#"{"block":"Qg==","block_no":2,"slot":3}"#,
        );
        pinned(
            EraseRequest {
                negation: s("Tg=="),
            },
            r#"{"negation":"Tg=="}"#,
        );
        pinned(
            MoveRequest {
                negation: s("Tg=="),
                template: s("VA=="),
            },
            r#"{"negation":"Tg==","template":"VA=="}"#,
        );
        pinned(
            MoveReply::from(Some(Location { block: 0, slot: 5 })),
            r#"{"block_no":0,"moved":true,"slot":5}"#,
        );
        pinned(MoveReply::from(None), r#"{"moved":false}"#);
        pinned(
            ErrorBody {
                code: s("gallery_full"),
                error: s("full"),
                id: None,
                max: Some(4),
                retry_after: None,
                gallery_params: None,
                given_params: None,
            },
            r#"{"code":"gallery_full","error":"full","max":4}"#,
        );
        pinned(
            ErrorBody {
                code: s("unknown_template"),
                error: s("no"),
                id: Some(TemplateId(7)),
                max: None,
                retry_after: None,
                gallery_params: None,
                given_params: None,
            },
            r#"{"code":"unknown_template","error":"no","id":7}"#,
        );
        pinned(
            ErrorBody {
                code: s("gallery_params"),
                error: s("v1 and v2"),
                id: None,
                max: None,
                retry_after: None,
                gallery_params: Some(1),
                given_params: Some(2),
            },
            r#"{"code":"gallery_params","error":"v1 and v2","gallery_params":1,"given_params":2}"#,
        );
        pinned(
            ErrorBody {
                code: s("busy"),
                error: s("wait"),
                id: None,
                max: None,
                retry_after: Some(2),
                gallery_params: None,
                given_params: None,
            },
            r#"{"code":"busy","error":"wait","retry_after":2}"#,
        );
    }

    #[test]
    fn optional_fields_stay_optional() {
        // What the server accepts without them.
        assert_eq!(
            serde_json::from_str::<InviteRequest>("{}").unwrap(),
            InviteRequest::default()
        );
        assert_eq!(InviteRequest::default().count, 1);
        // What the client accepts without them (a proxy's error has no code).
        let e: ErrorBody = serde_json::from_str(r#"{"error":"bad gateway"}"#).unwrap();
        assert_eq!(e.code, "");
        let l: ListReply = serde_json::from_str(r#"{"templates":[]}"#).unwrap();
        assert_eq!(l.count, 0);
        // Requests refuse fields they do not know; replies ignore them.
        assert!(serde_json::from_str::<RegisterRequest>(r#"{"invite":"c","x":1}"#).is_err());
        assert!(serde_json::from_str::<InviteRequest>(r#"{"count":1,"x":1}"#).is_err());
        assert!(
            serde_json::from_str::<EnrolRequest>(r#"{"id":1,"template":"","label":"","x":1}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<EraseRequest>(r#"{"negation":"","x":1}"#).is_err());
        assert!(
            serde_json::from_str::<MoveRequest>(r#"{"negation":"","template":"","x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<InviteReply>(r#"{"codes":[],"x":1}"#).is_ok());
    }

    #[test]
    fn paths_fill_their_id() {
        assert_eq!(
            paths::with_id(paths::TEMPLATE_BLOCK, TemplateId(42)),
            "/v1/templates/42/block"
        );
        assert_eq!(paths::with_id(paths::VERIFY, TemplateId(1)), "/v1/verify/1");
    }
}
