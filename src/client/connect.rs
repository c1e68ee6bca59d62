//! Connecting a key to its gallery: opens the matcher a [`MatcherSpec`] names and adopts
//! a gallery enrolled before galleries were bound to keys when, and only when, this key
//! opens every one of its labels. Built-in: the key's own tenant. Remote: the certificate
//! pin (given, saved, or first seen) and the token (given, saved for this key and URL, a
//! legacy one this key's labels prove its own, or a new registration).

use std::path::PathBuf;

use super::{Client, ClientError, ConnectError};
use crate::he::SecretKey;
use crate::labels::LabelKey;
use crate::matcher::tls::Fingerprint;
use crate::matcher::{
    BuiltinMatcher, Credentials, Endpoint, Enrolled, Matcher, MatcherError, MatcherSpec,
    RemoteMatcher, TokenStore,
};

/// Where the client keeps things: the built-in store and the remote tokens.
#[derive(Debug, Clone)]
pub struct Locations {
    pub data_dir: PathBuf,
    pub tokens: TokenStore,
}

/// How to reach a remote matcher beyond its URL: what the user typed or passed.
/// `Debug` shows neither the token nor the invitation code.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// A token (saved for this key and URL once it has worked).
    pub token: Option<String>,
    /// A one-time invitation code, to register a new gallery on an invite-only server.
    pub invite: Option<String>,
    /// The certificate fingerprint to require (replaces the saved pin once it works).
    pub fingerprint: Option<Fingerprint>,
    /// Allow plain HTTP to a host beyond loopback.
    pub insecure_http: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("invite", &self.invite.as_ref().map(|_| "<redacted>"))
            .field("fingerprint", &self.fingerprint)
            .field("insecure_http", &self.insecure_http)
            .finish()
    }
}

/// Opens the matcher `spec` names for the gallery `key` owns. Built-in: the key's own
/// tenant in `at.data_dir` (adopting a gallery enrolled before galleries were bound to keys
/// if, and only if, this key reads every one of its labels). Remote: the server's
/// certificate must match `access.fingerprint`, else the pin saved for the URL, else the
/// first one seen is pinned (trust on first use: [`Client::new_pin`] says so, to show the
/// user); the gallery is `access.token` if given (saved for this key), else the token
/// saved for this key and URL, else a legacy token this key's labels prove to be its own,
/// else a new registration (with `access.invite` on an invite-only server).
pub fn connect(
    key: SecretKey,
    spec: &MatcherSpec,
    at: &Locations,
    access: &Access,
) -> Result<Client, Box<ConnectError>> {
    let (matcher, given, endpoint) = match open_matcher(&key, spec, at, access) {
        Ok(m) => m,
        Err(error) => return Err(Box::new(ConnectError { error, key })),
    };
    let mut client = Client::new(key, matcher)?;
    // A typed token, and a new pin, are kept only once they have proved to work.
    if let (MatcherSpec::Remote { url }, Some(endpoint)) = (spec, endpoint) {
        let url = url.as_str();
        let saved = (|| {
            if let Some(creds) = given {
                at.tokens.put(url, &client.fingerprint(), &creds)?;
            }
            client.new_pin = remember_pin(&at.tokens, &endpoint)?;
            Ok::<_, MatcherError>(())
        })();
        if let Err(e) = saved {
            return Err(Box::new(ConnectError {
                error: e.into(),
                key: client.into_key(),
            }));
        }
    }
    Ok(client)
}

/// Saves the certificate `endpoint` pinned (after a request that worked) if it is not the
/// saved pin yet; returns it then, for the user to compare.
pub fn remember_pin(
    tokens: &TokenStore,
    endpoint: &Endpoint,
) -> Result<Option<Fingerprint>, MatcherError> {
    match endpoint.fingerprint() {
        Some(f) if tokens.pin(endpoint.url())? != Some(f) => {
            tokens.set_pin(endpoint.url(), f)?;
            Ok(Some(f))
        }
        _ => Ok(None),
    }
}

/// The endpoint of a remote `url`: pinned to `access.fingerprint`, else to the pin saved
/// for it, else to the first certificate seen. Also what the admin commands use.
pub fn endpoint(url: &str, tokens: &TokenStore, access: &Access) -> Result<Endpoint, MatcherError> {
    let pin = match access.fingerprint {
        Some(f) => Some(f),
        None => tokens.pin(url)?,
    };
    Endpoint::new(url, pin, access.insecure_http)
}

/// The matcher, the typed-in credentials to save once they work, and the remote endpoint.
type Opened = (Box<dyn Matcher>, Option<Credentials>, Option<Endpoint>);

fn open_matcher(
    key: &SecretKey,
    spec: &MatcherSpec,
    at: &Locations,
    access: &Access,
) -> Result<Opened, ClientError> {
    let params = *key.params();
    let owner = key.fingerprint();
    let labels = LabelKey::from_secret(key);
    Ok(match spec {
        MatcherSpec::Builtin => {
            let m = BuiltinMatcher::open(&at.data_dir, &params, &owner)?;
            if m.is_empty() {
                let legacy = m.legacy_gallery()?;
                if !legacy.is_empty() && all_open(&labels, &legacy) {
                    m.adopt_legacy_gallery()?;
                }
            }
            (Box::new(m), None, None)
        }
        MatcherSpec::Remote { url } => {
            let store = &at.tokens;
            let endpoint = endpoint(url, store, access)?;
            let mut given = None;
            let creds = match access
                .token
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
            {
                Some(t) => {
                    let c = Credentials {
                        tenant: "(given token)".into(),
                        token: t.to_string(),
                    };
                    given = Some(c.clone());
                    c
                }
                None => match store.get(url, &owner)? {
                    Some(c) => c,
                    None => {
                        let adopted = match store.legacy(url)? {
                            Some(c) => {
                                let m =
                                    RemoteMatcher::new(&endpoint, &params, c.clone(), store.path());
                                let list = m.list()?;
                                (!list.is_empty() && all_open(&labels, &list)).then_some(c)
                            }
                            None => None,
                        };
                        let c = match adopted {
                            Some(c) => c,
                            None => RemoteMatcher::register(&endpoint, access.invite.as_deref())?,
                        };
                        store.put(url, &owner, &c)?;
                        c
                    }
                },
            };
            (
                Box::new(RemoteMatcher::new(&endpoint, &params, creds, store.path())),
                given,
                Some(endpoint),
            )
        }
    })
}

fn all_open(labels: &LabelKey, list: &[Enrolled]) -> bool {
    list.iter().all(|e| labels.open(&e.label, e.id).is_ok())
}
