//! TLS for the remote matcher, both ends: the one crypto provider (rustls with ring), the
//! certificate fingerprint (SHA-256 of the DER end-entity certificate, printed like
//! `openssl x509 -fingerprint -sha256`), and the client's pinning: a rustls
//! `ServerCertVerifier` that accepts exactly one certificate (still checking the handshake
//! signature with the provider's algorithms) and the ureq connector that uses it.
//!
//! Pinning replaces CA validation: the server's certificate is self-signed by default, and
//! what matters is that the answer comes from the matcher the user first trusted. A
//! [`Pin`] starts either known (saved, or `--fingerprint`) or empty (trust on first use:
//! the first certificate seen is adopted and every later connection must present it).

use std::fmt;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use sha2::{Digest, Sha256};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

/// The crypto provider both the server and the client use (ring: builds without cmake).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of a DER certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }
}

impl fmt::Display for Fingerprint {
    /// `AB:CD:...`, as `openssl x509 -noout -fingerprint -sha256` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: Vec<String> = self.0.iter().map(|b| format!("{b:02X}")).collect();
        f.write_str(&hex.join(":"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = String;

    /// 64 hex digits, with or without colons, any case, optionally `sha256:`-prefixed.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let s = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("SHA256:"))
            .unwrap_or(s);
        let hex: String = s.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(&hex).map_err(|_| {
            format!("`{s}` is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
        })?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            format!("`{s}` is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
        })?;
        Ok(Fingerprint(arr))
    }
}

/// The certificate a server must present: known, or adopted on first use.
#[derive(Clone)]
pub struct Pin {
    inner: Arc<Mutex<PinState>>,
}

#[derive(Default)]
struct PinState {
    pinned: Option<Fingerprint>,
    /// A certificate that was refused (for the error message).
    refused: Option<Fingerprint>,
}

impl Pin {
    /// A pin that must match `fingerprint`.
    pub fn known(fingerprint: Fingerprint) -> Pin {
        Pin {
            inner: Arc::new(Mutex::new(PinState {
                pinned: Some(fingerprint),
                refused: None,
            })),
        }
    }

    /// Trust on first use: the first certificate seen becomes the pin.
    pub fn first_use() -> Pin {
        Pin {
            inner: Arc::new(Mutex::new(PinState::default())),
        }
    }

    /// The pinned fingerprint, once known.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.inner.lock().ok().and_then(|s| s.pinned)
    }

    /// The certificate last refused for not matching the pin.
    pub fn refused(&self) -> Option<Fingerprint> {
        self.inner.lock().ok().and_then(|s| s.refused)
    }

    fn check(&self, presented: Fingerprint) -> bool {
        let Ok(mut s) = self.inner.lock() else {
            return false;
        };
        match s.pinned {
            Some(p) if p == presented => true,
            Some(_) => {
                s.refused = Some(presented);
                false
            }
            None => {
                s.pinned = Some(presented);
                true
            }
        }
    }
}

/// Accepts the pinned certificate only; handshake signatures are verified as usual.
struct PinVerifier {
    pin: Pin,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for PinVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinVerifier")
            .field("pinned", &self.pin.fingerprint())
            .finish()
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pin.check(Fingerprint::of(end_entity)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate does not match the pinned fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The client configuration that trusts `pin` only.
fn client_config(pin: &Pin) -> Arc<ClientConfig> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier {
            pin: pin.clone(),
            provider,
        }))
        .with_no_client_auth();
    Arc::new(config)
}

/// A ureq connector that wraps `https` connections in TLS checked against a [`Pin`].
pub struct PinnedTlsConnector {
    config: Arc<ClientConfig>,
}

impl PinnedTlsConnector {
    pub fn new(pin: &Pin) -> Self {
        PinnedTlsConnector {
            config: client_config(pin),
        }
    }
}

impl fmt::Debug for PinnedTlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinnedTlsConnector")
    }
}

impl<In: Transport> Connector<In> for PinnedTlsConnector {
    type Out = Either<In, PinnedTlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let name = ServerName::try_from(host)
            .map_err(|_| ureq::Error::Tls("invalid server name for TLS"))?;
        let mut conn = ClientConnection::new(self.config.clone(), name)
            .map_err(|e| ureq::Error::Io(std::io::Error::other(e)))?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(PinnedTlsTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        })))
    }
}

/// An established pinned TLS connection.
pub struct PinnedTlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for PinnedTlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinnedTlsTransport")
    }
}

impl Transport for PinnedTlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_every_usual_spelling() {
        let f = Fingerprint::of(b"certificate");
        let shown = f.to_string();
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert_eq!(shown.parse::<Fingerprint>(), Ok(f));
        let plain = hex::encode(f.0);
        assert_eq!(plain.parse::<Fingerprint>(), Ok(f));
        assert_eq!(format!("sha256:{plain}").parse::<Fingerprint>(), Ok(f));
        assert!("abcd".parse::<Fingerprint>().is_err());
    }

    #[test]
    fn a_first_use_pin_adopts_one_certificate_then_refuses_others() {
        let (a, b) = (Fingerprint::of(b"a"), Fingerprint::of(b"b"));
        let pin = Pin::first_use();
        assert!(pin.check(a));
        assert!(pin.check(a));
        assert!(!pin.check(b));
        assert_eq!((pin.fingerprint(), pin.refused()), (Some(a), Some(b)));
        assert!(!Pin::known(a).check(b));
    }
}
