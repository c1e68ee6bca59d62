//! The server's certificate: the operator's own (`--tls-cert`/`--tls-key`, PEM), or a
//! self-signed one created on first start in the data directory (`tls-cert.pem`, and
//! `tls-key.pem` with mode 0600) and reused after, so clients' pins stay valid across
//! restarts. Either way its SHA-256 fingerprint is what clients pin.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::matcher::tls::{provider, Fingerprint};

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// Self-signed, created once in the data directory.
    SelfSigned,
    /// The operator's PEM files (certificate chain, private key).
    Files { cert: PathBuf, key: PathBuf },
}

/// File names of the self-signed certificate in the data directory.
pub const SELF_SIGNED_CERT: &str = "tls-cert.pem";
pub const SELF_SIGNED_KEY: &str = "tls-key.pem";

/// A ready TLS configuration and what to tell the operator about it.
pub struct Loaded {
    pub config: Arc<rustls::ServerConfig>,
    pub fingerprint: Fingerprint,
    /// Where the certificate is, and whether it was created just now.
    pub cert_path: PathBuf,
    pub created: bool,
}

/// Loads (or first creates) the certificate and builds the rustls configuration.
pub fn load(source: &TlsSource, data: &Path, names: &[String]) -> Result<Loaded> {
    let (cert_path, key_path, created) = match source {
        TlsSource::Files { cert, key } => (cert.clone(), key.clone(), false),
        TlsSource::SelfSigned => {
            let cert = data.join(SELF_SIGNED_CERT);
            let key = data.join(SELF_SIGNED_KEY);
            let created = !cert.exists() || !key.exists();
            if created {
                create_self_signed(&cert, &key, names)?;
            }
            (cert, key, created)
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .with_context(|| format!("reading the TLS certificate {}", cert_path.display()))?;
    let first = chain
        .first()
        .with_context(|| format!("no certificate in {} (expected PEM)", cert_path.display()))?;
    let fingerprint = Fingerprint::of(first.as_ref());
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading the TLS key {}", key_path.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "the key {} does not fit the certificate {}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        fingerprint,
        cert_path,
        created,
    })
}

/// A self-signed certificate for `names` (plus localhost), the key written 0600.
fn create_self_signed(cert: &Path, key: &Path, names: &[String]) -> Result<()> {
    let (cert_pem, key_pem) = self_signed_pems(names)?;
    write_pems(cert, key, &cert_pem, &key_pem)
}

/// A new self-signed certificate for `names` (plus localhost): (certificate, key), PEM.
pub fn self_signed_pems(names: &[String]) -> Result<(String, String)> {
    let mut sans = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    sans.extend(
        names
            .iter()
            .filter(|n| !sans.contains(n))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let certified = rcgen::generate_simple_self_signed(sans).context("creating a certificate")?;
    Ok((certified.cert.pem(), certified.key_pair.serialize_pem()))
}

/// Puts a cluster's shared self-signed certificate where [`load`] finds it in `data`.
pub fn write_self_signed(data: &Path, cert_pem: &str, key_pem: &str) -> Result<()> {
    write_pems(
        &data.join(SELF_SIGNED_CERT),
        &data.join(SELF_SIGNED_KEY),
        cert_pem,
        key_pem,
    )
}

fn write_pems(cert: &Path, key: &Path, cert_pem: &str, key_pem: &str) -> Result<()> {
    crate::fsutil::write_private(key, key_pem.as_bytes(), true)
        .with_context(|| format!("writing {}", key.display()))?;
    crate::fsutil::write_private(cert, cert_pem.as_bytes(), true)
        .with_context(|| format!("writing {}", cert.display()))?;
    Ok(())
}
