//! The remote matcher: the [`Matcher`] interface over HTTP to `blindface serve`
//! (blocking `ureq` client with connect and overall timeouts, bounded response sizes).
//! Server errors are mapped by their machine-readable `code`, never by their text.
//!
//! Credentials (tenant and bearer token) are kept in one place, the [`TokenStore`]: the
//! file `<key>.matcher.json` (mode 0600) beside the key, one entry per (server URL, key
//! fingerprint), so a new or imported key never reuses another key's gallery.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use ureq::Agent;

use super::{
    codes, BlockSink, Enrolled, Matcher, MatcherError, RemovalBlock, Reply, Streamed, Traffic,
};
use crate::he::{
    BlockCiphertext, EncryptedProbe, EncryptedTemplate, Location, MatchResult, Params,
    ResultReader, TemplateId,
};

/// Largest gallery whose results this client will read (bounds the response size; the
/// result is streamed, so this bounds time, not memory).
pub const CLIENT_MAX_TEMPLATES: usize = 2_000_000;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const SMALL_BODY_LIMIT: u64 = 64 << 20;

/// A tenant's access to one server. `Debug` never shows the token.
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

#[derive(Clone, Serialize, Deserialize)]
struct TokenEntry {
    url: String,
    /// Fingerprint of the key that owns the gallery.
    owner: String,
    #[serde(flatten)]
    credentials: Credentials,
}

#[derive(Default, Serialize, Deserialize)]
struct TokenFile {
    #[serde(default)]
    galleries: Vec<TokenEntry>,
    /// The first format: one token per URL, whatever the key (kept until adopted).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    servers: std::collections::BTreeMap<String, Credentials>,
}

/// The one place remote tokens are kept.
#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    /// `<key>.matcher.json`.
    pub fn beside_key(key_path: &Path) -> Self {
        let mut s = key_path.as_os_str().to_owned();
        s.push(".matcher.json");
        TokenStore {
            path: PathBuf::from(s),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, detail: String) -> MatcherError {
        MatcherError::TokenFile {
            path: self.path.display().to_string(),
            detail,
        }
    }

    fn read(&self) -> Result<TokenFile, MatcherError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| self.error(format!("unreadable ({e}); delete it to register again"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
            Err(e) => Err(self.error(e.to_string())),
        }
    }

    fn write(&self, file: &TokenFile) -> Result<(), MatcherError> {
        let bytes = serde_json::to_vec_pretty(file).expect("token file serializes");
        crate::fsutil::write_private(&self.path, &bytes, true)
            .map_err(|e| self.error(format!("cannot save the token: {e}")))
    }

    /// The credentials of `owner`'s gallery on `url`.
    pub fn get(&self, url: &str, owner: &str) -> Result<Option<Credentials>, MatcherError> {
        let url = normalise(url);
        Ok(self
            .read()?
            .galleries
            .into_iter()
            .find(|e| e.url == url && e.owner == owner)
            .map(|e| e.credentials))
    }

    /// A token saved for `url` by a version that did not record its owner.
    pub fn legacy(&self, url: &str) -> Result<Option<Credentials>, MatcherError> {
        Ok(self.read()?.servers.get(&normalise(url)).cloned())
    }

    /// Saves (or replaces) the credentials of `owner`'s gallery on `url`; a legacy entry
    /// with the same token is dropped (it has been adopted).
    pub fn put(&self, url: &str, owner: &str, creds: &Credentials) -> Result<(), MatcherError> {
        let url = normalise(url);
        let mut file = self.read()?;
        file.galleries
            .retain(|e| !(e.url == url && e.owner == owner));
        file.galleries.push(TokenEntry {
            url: url.clone(),
            owner: owner.to_string(),
            credentials: creds.clone(),
        });
        if file
            .servers
            .get(&url)
            .is_some_and(|c| c.token == creds.token)
        {
            file.servers.remove(&url);
        }
        self.write(&file)
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    id: Option<TemplateId>,
    #[serde(default)]
    max: Option<usize>,
}

#[derive(Serialize)]
struct EnrolBody<'a> {
    id: TemplateId,
    template: &'a str,
    label: &'a str,
}

#[derive(Deserialize)]
struct ListEntry {
    id: TemplateId,
    label: String,
}

#[derive(Deserialize)]
struct BlockReply {
    block_no: usize,
    slot: usize,
    block: String,
}

#[derive(Serialize)]
struct EraseBody<'a> {
    negation: &'a str,
}

#[derive(Deserialize)]
struct ListReply {
    templates: Vec<ListEntry>,
}

/// HTTP client of a `blindface serve` matcher.
pub struct RemoteMatcher {
    url: String,
    credentials: Credentials,
    token_file: String,
    agent: Agent,
    params: Params,
}

fn agent() -> Agent {
    Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

fn normalise(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

impl RemoteMatcher {
    /// A client with known credentials; `token_file` is named in messages.
    pub fn new(url: &str, params: &Params, credentials: Credentials, token_file: &Path) -> Self {
        RemoteMatcher {
            url: normalise(url),
            credentials,
            token_file: token_file.display().to_string(),
            agent: agent(),
            params: *params,
        }
    }

    /// Registers a new tenant on the server and returns its credentials.
    pub fn register(url: &str) -> Result<Credentials, MatcherError> {
        let url = normalise(url);
        let agent = agent();
        let resp = agent
            .post(format!("{url}/v1/tenants"))
            .send_empty()
            .map_err(|e| unreachable(&url, e))?;
        let body = read_ok(&url, "the token file", resp, SMALL_BODY_LIMIT)?;
        serde_json::from_slice(&body).map_err(|e| bad_reply(&url, e))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.credentials.token)
    }

    fn max_blocks(&self) -> usize {
        CLIENT_MAX_TEMPLATES.div_ceil(self.params.slots_per_block())
    }

    fn read(
        &self,
        resp: ureq::http::Response<ureq::Body>,
        limit: u64,
    ) -> Result<Vec<u8>, MatcherError> {
        read_ok(&self.url, &self.token_file, resp, limit)
    }

    fn post_probe(
        &self,
        path: &str,
        probe: &EncryptedProbe,
    ) -> Result<(usize, ureq::http::Response<ureq::Body>), MatcherError> {
        let bytes = probe.to_bytes();
        let resp = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("authorization", self.auth())
            .content_type("application/octet-stream")
            .send(&bytes[..])
            .map_err(|e| unreachable(&self.url, e))?;
        Ok((bytes.len(), resp))
    }
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: usize,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n;
        Ok(n)
    }
}

fn unreachable(url: &str, e: ureq::Error) -> MatcherError {
    MatcherError::Unreachable {
        url: url.to_string(),
        detail: e.to_string(),
    }
}

fn read_ok(
    url: &str,
    token_file: &str,
    mut resp: ureq::http::Response<ureq::Body>,
    limit: u64,
) -> Result<Vec<u8>, MatcherError> {
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| MatcherError::Unreachable {
            url: url.to_string(),
            detail: format!("reading the reply: {e}"),
        })?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    Err(map_error(url, token_file, status, &body))
}

/// A server error reply to the matching [`MatcherError`], by its code.
fn map_error(url: &str, token_file: &str, status: u16, body: &[u8]) -> MatcherError {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    let message = parsed
        .as_ref()
        .map(|b| b.error.clone())
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    let code = parsed.as_ref().map(|b| b.code.as_str()).unwrap_or("");
    let id = parsed.as_ref().and_then(|b| b.id);
    match (code, id) {
        (codes::UNAUTHORIZED, _) => MatcherError::Unauthorized {
            url: url.to_string(),
            token_file: token_file.to_string(),
            message,
        },
        (codes::UNKNOWN_TEMPLATE, Some(id)) => MatcherError::UnknownId(id),
        (codes::DUPLICATE_ID, Some(id)) => MatcherError::DuplicateId(id),
        (codes::BAD_ID, Some(id)) => MatcherError::BadId(id),
        (codes::GALLERY_FULL, _) => MatcherError::GalleryFull {
            max: parsed.and_then(|b| b.max).unwrap_or(0),
        },
        (codes::BUSY, _) => MatcherError::Busy {
            url: url.to_string(),
            message,
        },
        _ if status == 401 => MatcherError::Unauthorized {
            url: url.to_string(),
            token_file: token_file.to_string(),
            message,
        },
        _ => MatcherError::Remote {
            url: url.to_string(),
            status,
            message,
        },
    }
}

fn bad_reply(url: &str, e: impl std::fmt::Display) -> MatcherError {
    MatcherError::Remote {
        url: url.to_string(),
        status: 200,
        message: format!("unexpected reply: {e}"),
    }
}

impl Matcher for RemoteMatcher {
    fn enrol(
        &self,
        id: TemplateId,
        template: &EncryptedTemplate,
        label: &[u8],
    ) -> Result<Traffic, MatcherError> {
        let t = B64.encode(template.to_bytes());
        let l = B64.encode(label);
        let body = serde_json::to_vec(&EnrolBody {
            id,
            template: &t,
            label: &l,
        })
        .expect("enrol body serializes");
        let resp = self
            .agent
            .post(format!("{}/v1/templates", self.url))
            .header("authorization", self.auth())
            .content_type("application/json")
            .send(&body[..])
            .map_err(|e| unreachable(&self.url, e))?;
        let reply = self.read(resp, SMALL_BODY_LIMIT)?;
        Ok(Traffic {
            sent: body.len(),
            received: reply.len(),
        })
    }

    fn removal_block(&self, id: TemplateId) -> Result<RemovalBlock, MatcherError> {
        let resp = self
            .agent
            .get(format!("{}/v1/templates/{id}/block", self.url))
            .header("authorization", self.auth())
            .call()
            .map_err(|e| unreachable(&self.url, e))?;
        let body = self.read(resp, SMALL_BODY_LIMIT)?;
        let reply: BlockReply =
            serde_json::from_slice(&body).map_err(|e| bad_reply(&self.url, e))?;
        let bytes = B64
            .decode(reply.block)
            .map_err(|e| bad_reply(&self.url, e))?;
        let block = BlockCiphertext::from_bytes(&bytes, &self.params)?;
        if reply.slot >= self.params.slots_per_block() || block.slots[reply.slot] != Some(id) {
            return Err(bad_reply(
                &self.url,
                format!(
                    "the block does not hold template {id} in slot {}",
                    reply.slot
                ),
            ));
        }
        Ok(RemovalBlock {
            location: Location {
                block: reply.block_no,
                slot: reply.slot,
            },
            block,
            traffic: Traffic {
                sent: 0,
                received: body.len(),
            },
        })
    }

    fn erase(&self, id: TemplateId, negation: &EncryptedTemplate) -> Result<Traffic, MatcherError> {
        let n = B64.encode(negation.to_bytes());
        let body = serde_json::to_vec(&EraseBody { negation: &n }).expect("erase body serializes");
        let resp = self
            .agent
            .post(format!("{}/v1/templates/{id}/erase", self.url))
            .header("authorization", self.auth())
            .content_type("application/json")
            .send(&body[..])
            .map_err(|e| unreachable(&self.url, e))?;
        let reply = self.read(resp, SMALL_BODY_LIMIT)?;
        Ok(Traffic {
            sent: body.len(),
            received: reply.len(),
        })
    }

    fn list(&self) -> Result<Vec<Enrolled>, MatcherError> {
        let resp = self
            .agent
            .get(format!("{}/v1/templates", self.url))
            .header("authorization", self.auth())
            .call()
            .map_err(|e| unreachable(&self.url, e))?;
        let body = self.read(resp, SMALL_BODY_LIMIT)?;
        let reply: ListReply =
            serde_json::from_slice(&body).map_err(|e| bad_reply(&self.url, e))?;
        reply
            .templates
            .into_iter()
            .map(|e| {
                Ok(Enrolled {
                    id: e.id,
                    label: B64.decode(e.label).map_err(|e| bad_reply(&self.url, e))?,
                })
            })
            .collect()
    }

    fn verify(&self, probe: &EncryptedProbe, id: TemplateId) -> Result<Reply, MatcherError> {
        let (sent, resp) = self.post_probe(&format!("/v1/verify/{id}"), probe)?;
        let body = self.read(resp, MatchResult::max_wire_len(&self.params, 1) as u64)?;
        let result = MatchResult::from_bytes(&body, &self.params, 1)?;
        Ok(Reply {
            result,
            traffic: Traffic {
                sent,
                received: body.len(),
            },
        })
    }

    fn identify_stream(
        &self,
        probe: &EncryptedProbe,
        sink: &mut BlockSink<'_>,
    ) -> Result<Streamed, MatcherError> {
        let (sent, mut resp) = self.post_probe("/v1/identify", probe)?;
        if !resp.status().is_success() {
            return Err(match self.read(resp, SMALL_BODY_LIMIT) {
                Err(e) => e,
                Ok(_) => bad_reply(&self.url, "a non-success status"),
            });
        }
        let limit = MatchResult::max_wire_len(&self.params, self.max_blocks()) as u64;
        let reader = resp.body_mut().with_config().limit(limit).reader();
        let mut counting = Counting {
            inner: reader,
            count: 0,
        };
        let cut = |e: crate::he::HeError, url: &str| match e {
            crate::he::HeError::Malformed { detail, .. } if detail.starts_with("read failed") => {
                MatcherError::Unreachable {
                    url: url.to_string(),
                    detail: format!("the result stream broke off: {detail}"),
                }
            }
            e => MatcherError::Crypto(e),
        };
        let mut reader = ResultReader::new(&mut counting, &self.params, self.max_blocks())
            .map_err(|e| cut(e, &self.url))?;
        let mut blocks = 0;
        while let Some(block) = reader.next_block().map_err(|e| cut(e, &self.url))? {
            blocks += 1;
            sink(block)?;
        }
        drop(reader);
        Ok(Streamed {
            blocks,
            traffic: Traffic {
                sent,
                received: counting.count,
            },
        })
    }

    fn describe(&self) -> String {
        format!("remote matcher {}", self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_by_code_not_text() {
        let e = map_error(
            "u",
            "f",
            404,
            br#"{"error": "anything at all", "code": "unknown_template", "id": 7}"#,
        );
        assert!(matches!(e, MatcherError::UnknownId(TemplateId(7))));
        // The old text-matching path is gone: English text alone maps to nothing special.
        let e = map_error("u", "f", 404, br#"{"error": "no template with id 7 in x"}"#);
        assert!(matches!(e, MatcherError::Remote { status: 404, .. }));
        let e = map_error(
            "u",
            "f",
            409,
            br#"{"error": "x", "code": "gallery_full", "max": 4}"#,
        );
        assert!(matches!(e, MatcherError::GalleryFull { max: 4 }));
        let e = map_error("u", "f", 503, br#"{"error": "x", "code": "busy"}"#);
        assert!(matches!(e, MatcherError::Busy { .. }));
        let e = map_error("u", "f", 401, b"not json");
        assert!(matches!(e, MatcherError::Unauthorized { .. }));
    }

    #[test]
    fn tokens_are_per_owner_and_never_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::beside_key(&dir.path().join("k.key"));
        let a = Credentials {
            tenant: "t1".into(),
            token: "secret-token-a".into(),
        };
        store.put("http://h:1/", "fp-a", &a).unwrap();
        assert_eq!(store.get("http://h:1", "fp-a").unwrap(), Some(a.clone()));
        assert_eq!(store.get("http://h:1", "fp-b").unwrap(), None);
        assert!(!format!("{a:?}").contains("secret-token-a"));
        // A legacy file (one token per URL) is read as legacy, not as anyone's.
        std::fs::write(
            store.path(),
            br#"{"servers": {"http://h:2": {"tenant": "t2", "token": "old"}}}"#,
        )
        .unwrap();
        assert_eq!(store.get("http://h:2", "fp-a").unwrap(), None);
        let legacy = store.legacy("http://h:2").unwrap().unwrap();
        store.put("http://h:2", "fp-a", &legacy).unwrap();
        assert_eq!(store.legacy("http://h:2").unwrap(), None, "adopted");
        assert_eq!(store.get("http://h:2", "fp-a").unwrap(), Some(legacy));
    }
}
