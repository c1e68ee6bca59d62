//! Which matcher to use, parsed once: `builtin` (in-process, local store) or
//! `https://HOST:PORT` / `http://HOST:PORT` (a `blindface serve`; a cluster's nodes as
//! several such URLs separated by commas; whether plain HTTP may be used is the
//! endpoint's rule, `super::Endpoint`). `--matcher` and the app's saved settings both
//! hold this type, so the rules live here only.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A matcher choice.
/// Where `blindface serve` listens by default (loopback only), and so where the app looks
/// for a remote matcher first.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7878";

/// The URL of a default `blindface serve` (it speaks HTTPS unless told otherwise).
pub fn default_remote_url() -> String {
    format!("https://{DEFAULT_ADDR}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatcherSpec {
    /// In-process matcher with its store in the data directory.
    Builtin,
    /// `blindface serve` at `url` (`https://` or `http://`, normalised: no trailing slash),
    /// or a cluster's node URLs joined by commas: one identity (token, pin).
    Remote { url: String },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("the matcher must be `builtin`, `https://HOST:PORT` or `http://HOST:PORT` (a cluster: several, separated by commas), not `{0}`")]
    Invalid(String),
}

impl FromStr for MatcherSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, SpecError> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("builtin") {
            return Ok(MatcherSpec::Builtin);
        }
        // One URL, or a cluster's node URLs separated by commas (one identity: one
        // token, one pin; the client moves between them).
        let nodes = s
            .split(',')
            .map(|node| {
                let node = node.trim();
                match node
                    .strip_prefix("https://")
                    .or_else(|| node.strip_prefix("http://"))
                {
                    Some(rest) if !rest.trim_end_matches('/').is_empty() && !rest.contains(' ') => {
                        Ok(node.trim_end_matches('/').to_string())
                    }
                    _ => Err(SpecError::Invalid(s.to_string())),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MatcherSpec::Remote {
            url: nodes.join(","),
        })
    }
}

impl fmt::Display for MatcherSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatcherSpec::Builtin => f.write_str("builtin"),
            MatcherSpec::Remote { url } => f.write_str(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_once_with_one_set_of_rules() {
        assert_eq!("builtin".parse(), Ok(MatcherSpec::Builtin));
        assert_eq!(" Builtin ".parse(), Ok(MatcherSpec::Builtin));
        assert_eq!(
            "http://127.0.0.1:7878/".parse(),
            Ok(MatcherSpec::Remote {
                url: "http://127.0.0.1:7878".into()
            })
        );
        assert_eq!(
            "https://x:1/".parse(),
            Ok(MatcherSpec::Remote {
                url: "https://x:1".into()
            })
        );
        for bad in [
            "",
            "http://",
            "https://",
            "ftp://x",
            "127.0.0.1:7878",
            "http://a b",
        ] {
            assert!(
                matches!(bad.parse::<MatcherSpec>(), Err(SpecError::Invalid(_))),
                "{bad:?}"
            );
        }
        let s = MatcherSpec::Remote {
            url: "http://h:1".into(),
        };
        assert_eq!(s.to_string().parse(), Ok(s));
        // A cluster: its nodes' URLs, one identity.
        assert_eq!(
            " https://a:1/, https://b:2 ".parse(),
            Ok(MatcherSpec::Remote {
                url: "https://a:1,https://b:2".into()
            })
        );
        for bad in ["https://a:1,", "https://a:1,b:2", ",https://a:1"] {
            assert!(bad.parse::<MatcherSpec>().is_err(), "{bad:?}");
        }
    }
}
