//! The remote matcher: the [`Matcher`] interface over HTTP to `blindface serve`
//! (blocking `ureq` client with connect and overall timeouts, bounded response sizes).
//!
//! Credentials (tenant and bearer token) live beside the key file in
//! `<key>.matcher.json` (mode 0600), one entry per server URL; the first use of a server
//! registers a new tenant and saves its token there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use ureq::Agent;

use super::{Enrolled, Matcher, MatcherError};
use crate::he::{EncryptedProbe, EncryptedTemplate, MatchResult, Params, TemplateId};

/// Largest gallery whose results this client will read (bounds the response size).
pub const CLIENT_MAX_TEMPLATES: usize = 100_000;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const SMALL_BODY_LIMIT: u64 = 64 << 20;

/// A tenant's access to one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub tenant: String,
    pub token: String,
}

#[derive(Default, Serialize, Deserialize)]
struct TokenFile {
    servers: BTreeMap<String, Credentials>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

#[derive(Serialize)]
struct EnrolBody<'a> {
    template: &'a str,
    label: &'a str,
}

#[derive(Deserialize)]
struct EnrolReply {
    id: TemplateId,
}

#[derive(Deserialize)]
struct ListEntry {
    id: TemplateId,
    label: String,
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
    url.trim_end_matches('/').to_string()
}

/// `<key>.matcher.json`, where the tokens for that key's galleries are kept.
pub fn token_file_for(key_path: &Path) -> PathBuf {
    let mut s = key_path.as_os_str().to_owned();
    s.push(".matcher.json");
    PathBuf::from(s)
}

impl RemoteMatcher {
    /// A client with known credentials.
    pub fn new(url: &str, credentials: Credentials) -> Self {
        RemoteMatcher {
            url: normalise(url),
            credentials,
            token_file: "the token file".into(),
            agent: agent(),
            params: Params::v1(),
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
        serde_json::from_slice(&body).map_err(|e| MatcherError::Remote {
            url: url.clone(),
            status: 200,
            message: format!("unexpected registration reply: {e}"),
        })
    }

    /// The client for `url` using the credentials stored beside `key_path`, registering
    /// (and saving the new token) on first use.
    pub fn for_key_file(url: &str, key_path: &Path) -> Result<Self, MatcherError> {
        let url = normalise(url);
        let path = token_file_for(key_path);
        let tf_err = |detail: String| MatcherError::TokenFile {
            path: path.display().to_string(),
            detail,
        };
        let mut file: TokenFile = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| tf_err(format!("unreadable ({e}); delete it to register again")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenFile::default(),
            Err(e) => return Err(tf_err(e.to_string())),
        };
        let credentials = match file.servers.get(&url) {
            Some(c) => c.clone(),
            None => {
                let c = Self::register(&url)?;
                file.servers.insert(url.clone(), c.clone());
                let bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
                crate::fsutil::write_private(&path, &bytes, true)
                    .map_err(|e| tf_err(format!("cannot save the new token: {e}")))?;
                c
            }
        };
        let mut m = Self::new(&url, credentials);
        m.token_file = path.display().to_string();
        Ok(m)
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

    fn max_result_bytes(&self) -> u64 {
        let p = &self.params;
        let blocks = CLIENT_MAX_TEMPLATES.div_ceil(p.slots_per_block());
        (blocks * (p.polynomial_size * 8 + p.slots_per_block() * 17 + 24) + 4096) as u64
    }

    fn read(
        &self,
        resp: ureq::http::Response<ureq::Body>,
        limit: u64,
    ) -> Result<Vec<u8>, MatcherError> {
        read_ok(&self.url, &self.token_file, resp, limit)
    }

    fn post_probe(&self, path: &str, probe: &EncryptedProbe) -> Result<MatchResult, MatcherError> {
        let bytes = probe.to_bytes();
        let resp = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("authorization", self.auth())
            .content_type("application/octet-stream")
            .send(&bytes[..])
            .map_err(|e| unreachable(&self.url, e))?;
        let body = self.read(resp, self.max_result_bytes())?;
        let max_blocks = CLIENT_MAX_TEMPLATES.div_ceil(self.params.slots_per_block());
        Ok(MatchResult::from_bytes(&body, &self.params, max_blocks)?)
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
    let message = serde_json::from_slice::<ErrorBody>(&body)
        .map(|b| b.error)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    if status == 401 {
        return Err(MatcherError::Unauthorized {
            url: url.to_string(),
            token_file: token_file.to_string(),
            message,
        });
    }
    if status == 404 {
        if let Some(id) = message
            .strip_prefix("no template with id ")
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
        {
            return Err(MatcherError::UnknownId(id));
        }
    }
    Err(MatcherError::Remote {
        url: url.to_string(),
        status,
        message,
    })
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
        template: &EncryptedTemplate,
        label: &[u8],
    ) -> Result<TemplateId, MatcherError> {
        let t = B64.encode(template.to_bytes());
        let l = B64.encode(label);
        let resp = self
            .agent
            .post(format!("{}/v1/templates", self.url))
            .header("authorization", self.auth())
            .send_json(EnrolBody {
                template: &t,
                label: &l,
            })
            .map_err(|e| unreachable(&self.url, e))?;
        let body = self.read(resp, SMALL_BODY_LIMIT)?;
        let reply: EnrolReply =
            serde_json::from_slice(&body).map_err(|e| bad_reply(&self.url, e))?;
        Ok(reply.id)
    }

    fn remove(&self, id: TemplateId) -> Result<(), MatcherError> {
        let resp = self
            .agent
            .delete(format!("{}/v1/templates/{id}", self.url))
            .header("authorization", self.auth())
            .call()
            .map_err(|e| unreachable(&self.url, e))?;
        self.read(resp, SMALL_BODY_LIMIT)?;
        Ok(())
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

    fn verify(&self, probe: &EncryptedProbe, id: TemplateId) -> Result<MatchResult, MatcherError> {
        self.post_probe(&format!("/v1/verify/{id}"), probe)
    }

    fn identify(&self, probe: &EncryptedProbe) -> Result<MatchResult, MatcherError> {
        self.post_probe("/v1/identify", probe)
    }

    fn describe(&self) -> String {
        format!("remote matcher {}", self.url)
    }
}
