//! What the command line adds to a library error: the command or flag that deals with it.
//! Library errors say what happened; the hint is chosen here from the typed error (the
//! app adds its own, for its window, in `app::protocol`).

use std::error::Error;

use blindface::client::keys::KeyError;
use blindface::client::ClientError;
use blindface::he::HeError;
use blindface::matcher::MatcherError;

/// The text to print right after `e` (it starts with its own separator), when a
/// `blindface` command or flag deals with the error.
pub fn hint(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(hint_of)
}

fn hint_of(e: &(dyn Error + 'static)) -> Option<String> {
    if let Some(e) = e.downcast_ref::<MatcherError>() {
        return matcher(e);
    }
    if let Some(e) = e.downcast_ref::<ClientError>() {
        return match e {
            ClientError::Matcher(e) => matcher(e),
            ClientError::Crypto(e) => crypto(e),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<HeError>() {
        return crypto(e);
    }
    match e.downcast_ref::<KeyError>()? {
        KeyError::Missing { .. } => {
            Some("; run `blindface keygen` first (or pass --key PATH)".into())
        }
        _ => None,
    }
}

fn matcher(e: &MatcherError) -> Option<String> {
    let hint = match e {
        MatcherError::UnknownId(_) => "; `blindface list` shows what is enrolled",
        MatcherError::GalleryFull { .. } => {
            "; remove some with `blindface remove` or raise the matcher's --max-templates"
        }
        MatcherError::StoreLocked { .. } => {
            " (a running `blindface serve` or app?); stop it or use another --data directory"
        }
        MatcherError::Unreachable { .. } => "; is `blindface serve` running there?",
        MatcherError::TenantQuota { .. } => {
            "; remove some with `blindface remove` or ask the operator to raise --max-tenant-bytes"
        }
        MatcherError::MemoryBudget { .. } => ". Ask its operator to raise --memory-budget",
        MatcherError::GalleryParams { .. } => {
            ": use the key that made this gallery (--key), or let this key register a gallery of its own"
        }
        MatcherError::InviteRequired { .. } => {
            ": ask its operator for a code (`blindface admin invite`) and connect with --invite CODE"
        }
        MatcherError::AdminUnauthorized { .. } => {
            "; use the token `blindface serve` printed on its first start, or restart it with --new-admin-token"
        }
        MatcherError::InsecureHttp { .. } => {
            ". Use https://, an SSH tunnel to 127.0.0.1, or pass --insecure-http if you accept that"
        }
        MatcherError::CertificateChanged { presented, .. } => {
            return Some(format!(
                ". If its operator confirms the new fingerprint, connect with --fingerprint {presented}"
            ))
        }
        MatcherError::Crypto(e) => return crypto(e),
        _ => return None,
    };
    Some(hint.into())
}

fn crypto(e: &HeError) -> Option<String> {
    match e {
        HeError::KeyExists { .. } => {
            Some(" (use --force to replace it, after exporting it if you still need it)".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    fn printed(e: anyhow::Error) -> String {
        format!("{e:#}{}", hint(&e).unwrap_or_default())
    }

    #[test]
    fn the_command_or_flag_follows_the_error_wherever_it_is_wrapped() {
        let full = MatcherError::GalleryFull { max: 4 };
        let want = "the gallery is full (4 templates); remove some with `blindface remove` \
                    or raise the matcher's --max-templates";
        assert_eq!(printed(full.into()), want);
        let wrapped = Err::<(), _>(ClientError::from(MatcherError::GalleryFull { max: 4 }))
            .context("enrolling a.jpg")
            .unwrap_err();
        assert_eq!(printed(wrapped), format!("enrolling a.jpg: {want}"));

        let missing = KeyError::Missing {
            path: "k.key".into(),
        };
        assert_eq!(
            printed(missing.into()),
            "no secret key at k.key; run `blindface keygen` first (or pass --key PATH)"
        );
        let exists = ClientError::from(HeError::KeyExists {
            path: "k.key".into(),
        });
        assert!(printed(exists.into())
            .ends_with("(use --force to replace it, after exporting it if you still need it)"));
        let changed = MatcherError::CertificateChanged {
            url: "https://m".into(),
            pinned: "aa".into(),
            presented: "bb".into(),
        };
        assert!(printed(changed.into()).ends_with("Nothing was sent. If its operator confirms the new fingerprint, connect with --fingerprint bb"));
        // Errors no flag deals with get nothing.
        assert_eq!(hint(&MatcherError::Poisoned.into()), None);
        assert_eq!(hint(&anyhow::anyhow!("plain")), None);
    }
}
