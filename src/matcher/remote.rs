//! The remote matcher: the [`Matcher`] interface over HTTPS (or loopback HTTP) to
//! `blindface serve` (blocking `ureq` client with connect and overall timeouts, bounded
//! response sizes). An [`Endpoint`] is one server URL with its certificate pin
//! ([`super::tls`]); plain HTTP beyond loopback is refused unless explicitly allowed.
//! Request and reply bodies are [`super::api`]'s, the types the server uses too. Server
//! errors are mapped by their machine-readable `code`, never by their text; 429 and 503
//! become [`MatcherError::Busy`] with the server's `Retry-After`.
//!
//! Credentials (tenant and bearer token) are kept in one place, the [`TokenStore`]: the
//! file `<key>.matcher.json` (mode 0600) beside the key, one entry per (server URL, key
//! fingerprint), so a new or imported key never reuses another key's gallery. The same
//! file holds each HTTPS server's pinned certificate fingerprint.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{Connector, TcpConnector};
use ureq::Agent;

use super::api::{
    paths, BlockReply, Credentials, EnrolRequest, EraseRequest, ErrorBody, InviteReply,
    InviteRequest, ListReply, MoveReply, MoveRequest, RegisterRequest,
};
use super::tls::{Fingerprint, Pin, PinnedTlsConnector};
use super::{
    codes, BlockSink, Enrolled, Matcher, MatcherError, Relocated, RemovalBlock, Reply, Streamed,
    Traffic,
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
/// Pooled connections are dropped before the server's shortest default idle timeout.
const MAX_IDLE: Duration = Duration::from_secs(5);

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
    /// HTTPS server URL -> pinned certificate fingerprint (`AB:CD:...`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pins: std::collections::BTreeMap<String, String>,
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

    /// The certificate fingerprint pinned for `url`, if any.
    pub fn pin(&self, url: &str) -> Result<Option<Fingerprint>, MatcherError> {
        match self.read()?.pins.get(&normalise(url)) {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|e| self.error(format!("pin for {url}: {e}"))),
        }
    }

    /// Pins `fingerprint` for `url` (replacing any earlier pin).
    pub fn set_pin(&self, url: &str, fingerprint: Fingerprint) -> Result<(), MatcherError> {
        let mut file = self.read()?;
        file.pins.insert(normalise(url), fingerprint.to_string());
        self.write(&file)
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

/// One server: its URL, the agent that reaches it and, for `https://`, the certificate
/// pin every connection is checked against. Clones share the pin.
///
/// A cluster's endpoint has several node URLs (`https://a:7878,https://b:7878`): one
/// identity (`url`, the list as given: what tokens and the pin are saved under), one pin
/// (every node presents the cluster's certificate), and requests go to the node last
/// reached, moving to the next when one cannot be reached or says it is not serving
/// (`api::RETRY_ELSEWHERE`): in both cases the request was not carried out.
#[derive(Clone)]
pub struct Endpoint {
    url: String,
    nodes: std::sync::Arc<[String]>,
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pin: Option<Pin>,
    agent: Agent,
}

/// Whether a request failed before it reached the server (so another node may take it).
fn never_arrived(e: &ureq::Error) -> bool {
    use std::io::ErrorKind;
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => true,
        ureq::Error::Timeout(t) => matches!(t, ureq::Timeout::Connect | ureq::Timeout::Resolve),
        ureq::Error::Io(io) => matches!(
            io.kind(),
            ErrorKind::ConnectionRefused | ErrorKind::AddrNotAvailable | ErrorKind::NotConnected
        ),
        _ => false,
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("pin", &self.fingerprint())
            .finish()
    }
}

/// Whether `url` (`http://HOST[:PORT]...`) names a loopback host.
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Endpoint {
    /// `url` with `pin` (`https://` only: the fingerprint to require, or `None` to adopt
    /// the first certificate seen). Plain `http://` is refused beyond loopback unless
    /// `insecure_http`.
    pub fn new(
        url: &str,
        pin: Option<Fingerprint>,
        insecure_http: bool,
    ) -> Result<Endpoint, MatcherError> {
        let url = normalise(url);
        let nodes: Vec<String> = url.split(',').map(normalise).collect();
        let https = nodes.iter().all(|n| n.starts_with("https://"));
        for node in &nodes {
            if !(node.starts_with("https://") || is_loopback(node) || insecure_http) {
                return Err(MatcherError::InsecureHttp { url: node.clone() });
            }
        }
        let pin = if https {
            Some(pin.map(Pin::known).unwrap_or_else(Pin::first_use))
        } else if nodes.iter().any(|n| n.starts_with("https://")) {
            return Err(MatcherError::BadInput {
                what: "matcher URLs",
                detail: format!("{url}: a cluster's nodes all speak https:// or all http://"),
            });
        } else {
            None
        };
        let config = Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .max_idle_age(MAX_IDLE)
            .build();
        let tls = PinnedTlsConnector::new(pin.as_ref().unwrap_or(&Pin::first_use()));
        let connector = ().chain(TcpConnector::default()).chain(tls);
        Ok(Endpoint {
            url,
            nodes: nodes.into(),
            current: Default::default(),
            pin,
            agent: Agent::with_parts(config, connector, DefaultResolver::default()),
        })
    }

    /// Sends `request` (given a node's base URL) to the node in use, moving on to the
    /// next node while one cannot be reached or answers that it is not serving; the last
    /// node's answer or error otherwise.
    fn send(
        &self,
        request: impl Fn(&str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, MatcherError> {
        use std::sync::atomic::Ordering;
        let n = self.nodes.len();
        let start = self.current.load(Ordering::Relaxed);
        for k in 0..n {
            let i = (start + k) % n;
            let last = k + 1 == n;
            match request(&self.nodes[i]) {
                Ok(resp) if !last && resp.headers().contains_key(super::api::RETRY_ELSEWHERE) => {}
                Ok(resp) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e) if !last && never_arrived(&e) => {}
                Err(e) => return Err(self.unreachable_at(&self.nodes[i], e)),
            }
        }
        unreachable!("the last node always answers or fails")
    }

    /// The node requests go to now.
    pub fn node_url(&self) -> &str {
        &self.nodes[self.current.load(std::sync::atomic::Ordering::Relaxed) % self.nodes.len()]
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The pinned certificate (after the first connection, for a first-use pin); `None`
    /// for plain HTTP.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.pin.as_ref().and_then(Pin::fingerprint)
    }

    /// A transport error reaching `node`, or the refused certificate that caused it.
    fn unreachable_at(&self, node: &str, e: ureq::Error) -> MatcherError {
        if let (Some(pinned), Some(presented)) =
            (self.fingerprint(), self.pin.as_ref().and_then(Pin::refused))
        {
            return MatcherError::CertificateChanged {
                url: self.url.clone(),
                pinned: pinned.to_string(),
                presented: presented.to_string(),
            };
        }
        // A TLS server answers a plain HTTP request with a TLS alert, which reads as a
        // broken HTTP reply: say what to do instead.
        if let (ureq::Error::Protocol(_), Some(rest)) = (&e, node.strip_prefix("http://")) {
            return MatcherError::SpeaksHttps {
                url: node.to_string(),
                https_url: format!("https://{rest}"),
            };
        }
        MatcherError::Unreachable {
            url: node.to_string(),
            detail: e.to_string(),
        }
    }

    /// Asks for `count` one-time registration codes with the server's admin token.
    pub fn create_invites(
        &self,
        admin_token: &str,
        count: usize,
    ) -> Result<Vec<String>, MatcherError> {
        let body = serde_json::to_vec(&InviteRequest { count }).expect("request serializes");
        let resp = self.send(|base| {
            self.agent
                .post(format!("{base}{}", paths::INVITES))
                .header("authorization", format!("Bearer {}", admin_token.trim()))
                .content_type("application/json")
                .send(&body[..])
        })?;
        let body = read_ok(self, "the token file", resp, SMALL_BODY_LIMIT)?;
        let reply: InviteReply = serde_json::from_slice(&body).map_err(|e| bad_reply(self, e))?;
        Ok(reply.codes)
    }

    /// `GET /metrics` with the admin token: the Prometheus text.
    pub fn metrics(&self, admin_token: &str) -> Result<String, MatcherError> {
        let resp = self.send(|base| {
            self.agent
                .get(format!("{base}{}", paths::METRICS))
                .header("authorization", format!("Bearer {}", admin_token.trim()))
                .call()
        })?;
        let body = read_ok(self, "the token file", resp, SMALL_BODY_LIMIT)?;
        String::from_utf8(body).map_err(|e| bad_reply(self, e))
    }
}

/// HTTP client of a `blindface serve` matcher.
pub struct RemoteMatcher {
    endpoint: Endpoint,
    credentials: Credentials,
    token_file: String,
    params: Params,
}

fn normalise(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

impl RemoteMatcher {
    /// A client with known credentials; `token_file` is named in messages.
    pub fn new(
        endpoint: &Endpoint,
        params: &Params,
        credentials: Credentials,
        token_file: &Path,
    ) -> Self {
        RemoteMatcher {
            endpoint: endpoint.clone(),
            credentials,
            token_file: token_file.display().to_string(),
            params: *params,
        }
    }

    /// Registers a new tenant on the server (with an invitation code, unless the server
    /// has open registration) and returns its credentials.
    pub fn register(
        endpoint: &Endpoint,
        invite: Option<&str>,
    ) -> Result<Credentials, MatcherError> {
        let body = serde_json::to_vec(&RegisterRequest {
            invite: invite
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string),
        })
        .expect("registration serializes");
        let resp = endpoint.send(|base| {
            endpoint
                .agent
                .post(format!("{base}{}", paths::TENANTS))
                .content_type("application/json")
                .send(&body[..])
        })?;
        let body = read_ok(endpoint, "the token file", resp, SMALL_BODY_LIMIT)?;
        serde_json::from_slice(&body).map_err(|e| bad_reply(endpoint, e))
    }

    pub fn url(&self) -> &str {
        &self.endpoint.url
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
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
        read_ok(&self.endpoint, &self.token_file, resp, limit)
    }

    fn agent(&self) -> &Agent {
        &self.endpoint.agent
    }

    fn post_probe(
        &self,
        path: &str,
        probe: &EncryptedProbe,
    ) -> Result<(usize, ureq::http::Response<ureq::Body>), MatcherError> {
        let bytes = probe.to_bytes();
        let resp = self.endpoint.send(|base| {
            self.agent()
                .post(format!("{base}{path}"))
                .header("authorization", self.auth())
                .content_type("application/octet-stream")
                .send(&bytes[..])
        })?;
        Ok((bytes.len(), resp))
    }

    /// POSTs a small JSON body with the tenant's token; the bytes both ways.
    fn post_json(&self, path: &str, body: &[u8]) -> Result<Traffic, MatcherError> {
        self.post_json_reply(path, body).map(|(traffic, _)| traffic)
    }

    /// POSTs a JSON body; the reply's bytes, with the traffic.
    fn post_json_reply(&self, path: &str, body: &[u8]) -> Result<(Traffic, Vec<u8>), MatcherError> {
        let resp = self.endpoint.send(|base| {
            self.agent()
                .post(format!("{base}{path}"))
                .header("authorization", self.auth())
                .content_type("application/json")
                .send(body)
        })?;
        let reply = self.read(resp, SMALL_BODY_LIMIT)?;
        let traffic = Traffic {
            sent: body.len(),
            received: reply.len(),
        };
        Ok((traffic, reply))
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

fn read_ok(
    endpoint: &Endpoint,
    token_file: &str,
    mut resp: ureq::http::Response<ureq::Body>,
    limit: u64,
) -> Result<Vec<u8>, MatcherError> {
    let url = endpoint.url();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
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
    Err(map_error(url, token_file, status, retry_after, &body))
}

/// A server error reply to the matching [`MatcherError`], by its code (429 and 503 are
/// busy whatever their body: a proxy in front may send them too).
fn map_error(
    url: &str,
    token_file: &str,
    status: u16,
    retry_after: Option<u64>,
    body: &[u8],
) -> MatcherError {
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
            max: parsed.and_then(|b| b.max).unwrap_or(0) as usize,
        },
        (codes::GALLERY_PARAMS, _) => match parsed.map(|b| (b.gallery_params, b.given_params)) {
            Some((Some(gallery), Some(given))) => MatcherError::GalleryParams { gallery, given },
            _ => MatcherError::Remote {
                url: url.to_string(),
                status,
                message,
            },
        },
        (codes::TENANT_QUOTA, _) => MatcherError::TenantQuota {
            max_bytes: parsed.and_then(|b| b.max).unwrap_or(0),
        },
        (codes::MEMORY_BUDGET, _) => MatcherError::MemoryBudget {
            budget: parsed.and_then(|b| b.max).unwrap_or(0),
        },
        (codes::INVITE_REQUIRED, _) => MatcherError::InviteRequired {
            url: url.to_string(),
        },
        (codes::INVITE_INVALID, _) => MatcherError::InviteInvalid {
            url: url.to_string(),
        },
        (codes::ADMIN_UNAUTHORIZED, _) => MatcherError::AdminUnauthorized {
            url: url.to_string(),
            message,
        },
        (codes::BUSY | codes::RATE_LIMITED, _) => MatcherError::Busy {
            url: url.to_string(),
            message,
            retry_after,
        },
        _ if status == 429 || status == 503 => MatcherError::Busy {
            url: url.to_string(),
            message,
            retry_after,
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

fn bad_reply(endpoint: &Endpoint, e: impl std::fmt::Display) -> MatcherError {
    MatcherError::Remote {
        url: endpoint.url().to_string(),
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
        let body = serde_json::to_vec(&EnrolRequest {
            id,
            template: B64.encode(template.to_bytes()),
            label: B64.encode(label),
        })
        .expect("enrol body serializes");
        self.post_json(paths::TEMPLATES, &body)
    }

    fn removal_block(&self, id: TemplateId) -> Result<RemovalBlock, MatcherError> {
        let path = paths::with_id(paths::TEMPLATE_BLOCK, id);
        let resp = self.endpoint.send(|base| {
            self.agent()
                .get(format!("{base}{path}"))
                .header("authorization", self.auth())
                .call()
        })?;
        let body = self.read(resp, SMALL_BODY_LIMIT)?;
        let reply: BlockReply =
            serde_json::from_slice(&body).map_err(|e| bad_reply(&self.endpoint, e))?;
        let bytes = B64
            .decode(reply.block)
            .map_err(|e| bad_reply(&self.endpoint, e))?;
        // Whether the block holds `id` in that slot is checked by the client, for every
        // matcher alike.
        let block = BlockCiphertext::from_bytes(&bytes, &self.params)?;
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
        let body = serde_json::to_vec(&EraseRequest {
            negation: B64.encode(negation.to_bytes()),
        })
        .expect("erase body serializes");
        self.post_json(&paths::with_id(paths::TEMPLATE_ERASE, id), &body)
    }

    fn relocate(
        &self,
        id: TemplateId,
        negation: &EncryptedTemplate,
        fresh: &EncryptedTemplate,
    ) -> Result<Relocated, MatcherError> {
        let body = serde_json::to_vec(&MoveRequest {
            negation: B64.encode(negation.to_bytes()),
            template: B64.encode(fresh.to_bytes()),
        })
        .expect("move body serializes");
        let (traffic, reply) =
            self.post_json_reply(&paths::with_id(paths::TEMPLATE_MOVE, id), &body)?;
        let r: MoveReply =
            serde_json::from_slice(&reply).map_err(|e| bad_reply(&self.endpoint, e))?;
        let to = match (r.moved, r.block_no, r.slot) {
            (true, Some(block), Some(slot)) => Some(Location { block, slot }),
            (false, _, _) => None,
            _ => return Err(bad_reply(&self.endpoint, "a move reply without its slot")),
        };
        Ok(Relocated { to, traffic })
    }

    fn list(&self) -> Result<Vec<Enrolled>, MatcherError> {
        let resp = self.endpoint.send(|base| {
            self.agent()
                .get(format!("{base}{}", paths::TEMPLATES))
                .header("authorization", self.auth())
                .call()
        })?;
        let body = self.read(resp, SMALL_BODY_LIMIT)?;
        let reply: ListReply =
            serde_json::from_slice(&body).map_err(|e| bad_reply(&self.endpoint, e))?;
        reply
            .templates
            .into_iter()
            .map(|e| {
                Ok(Enrolled {
                    id: e.id,
                    label: B64
                        .decode(e.label)
                        .map_err(|e| bad_reply(&self.endpoint, e))?,
                    location: Location {
                        block: e.block_no,
                        slot: e.slot,
                    },
                })
            })
            .collect()
    }

    fn verify(&self, probe: &EncryptedProbe, id: TemplateId) -> Result<Reply, MatcherError> {
        let (sent, resp) = self.post_probe(&paths::with_id(paths::VERIFY, id), probe)?;
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
        let (sent, mut resp) = self.post_probe(paths::IDENTIFY, probe)?;
        if !resp.status().is_success() {
            return Err(match self.read(resp, SMALL_BODY_LIMIT) {
                Err(e) => e,
                Ok(_) => bad_reply(&self.endpoint, "a non-success status"),
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
        let node = self.endpoint.node_url().to_string();
        let mut reader = ResultReader::new(&mut counting, &self.params, self.max_blocks())
            .map_err(|e| cut(e, &node))?;
        let mut blocks = 0;
        while let Some(block) = reader.next_block().map_err(|e| cut(e, &node))? {
            blocks += 1;
            sink(block)?;
        }
        Ok(Streamed {
            blocks,
            traffic: Traffic {
                sent,
                received: counting.count,
            },
        })
    }

    fn health(&self) -> Result<(), MatcherError> {
        let resp = self
            .endpoint
            .send(|base| self.agent().get(format!("{base}{}", paths::HEALTH)).call())?;
        self.read(resp, SMALL_BODY_LIMIT).map(|_| ())
    }

    fn describe(&self) -> String {
        match self.endpoint.fingerprint() {
            Some(f) => format!("remote matcher {} (certificate SHA-256 {f})", self.url()),
            None => format!("remote matcher {}", self.url()),
        }
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
            None,
            br#"{"error": "anything at all", "code": "unknown_template", "id": 7}"#,
        );
        assert!(matches!(e, MatcherError::UnknownId(TemplateId(7))));
        // The old text-matching path is gone: English text alone maps to nothing special.
        let e = map_error(
            "u",
            "f",
            404,
            None,
            br#"{"error": "no template with id 7 in x"}"#,
        );
        assert!(matches!(e, MatcherError::Remote { status: 404, .. }));
        let e = map_error(
            "u",
            "f",
            409,
            None,
            br#"{"error": "x", "code": "gallery_full", "max": 4}"#,
        );
        assert!(matches!(e, MatcherError::GalleryFull { max: 4 }));
        let e = map_error("u", "f", 503, Some(3), br#"{"error": "x", "code": "busy"}"#);
        assert!(matches!(
            e,
            MatcherError::Busy {
                retry_after: Some(3),
                ..
            }
        ));
        let e = map_error("u", "f", 429, Some(1), b"from a proxy");
        assert!(matches!(
            e,
            MatcherError::Busy {
                retry_after: Some(1),
                ..
            }
        ));
        let e = map_error(
            "u",
            "f",
            507,
            None,
            br#"{"error": "x", "code": "memory_budget", "max": 9}"#,
        );
        assert!(matches!(e, MatcherError::MemoryBudget { budget: 9 }));
        let e = map_error("u", "f", 401, None, b"not json");
        assert!(matches!(e, MatcherError::Unauthorized { .. }));
    }

    #[test]
    fn plain_http_beyond_loopback_needs_consent() {
        for ok in [
            "http://127.0.0.1:1",
            "http://localhost:7878/",
            "http://[::1]:9",
            "https://example.org:1",
        ] {
            assert!(Endpoint::new(ok, None, false).is_ok(), "{ok}");
        }
        for far in [
            "http://192.168.1.5:7878",
            "http://example.org",
            "http://[2001:db8::1]:1",
        ] {
            assert!(
                matches!(
                    Endpoint::new(far, None, false),
                    Err(MatcherError::InsecureHttp { .. })
                ),
                "{far}"
            );
            assert!(Endpoint::new(far, None, true).is_ok());
        }
    }

    #[test]
    fn pins_live_beside_the_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::beside_key(&dir.path().join("k.key"));
        let f = Fingerprint::of(b"cert");
        assert_eq!(store.pin("https://h:1").unwrap(), None);
        store.set_pin("https://h:1/", f).unwrap();
        assert_eq!(store.pin("https://h:1").unwrap(), Some(f));
        store
            .put(
                "https://h:1",
                "fp",
                &Credentials {
                    tenant: "t".into(),
                    token: "x".into(),
                },
            )
            .unwrap();
        assert_eq!(store.pin("https://h:1").unwrap(), Some(f), "kept by put");
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
