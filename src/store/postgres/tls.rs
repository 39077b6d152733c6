//! TLS to PostgreSQL: libpq's `sslmode` and `sslrootcert`, read from the store URL, and the
//! rustls connector that carries them out.
//!
//! tokio-postgres itself knows only `disable`, `prefer` and `require`, and no `sslrootcert`:
//! both parameters are taken out of the URL here, the verification they ask for becomes a
//! rustls certificate verifier, and tokio-postgres is told only whether to insist on TLS.
//! The connector is `tokio-postgres-rustls` with the `ring` provider, the rustls that reqwest
//! already brings.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::StoreError;

/// libpq's `sslmode`, all five of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked.
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless `sslrootcert` is given:
    /// then, as libpq does, like `verify-ca`).
    Require,
    /// TLS, and the certificate chains to `sslrootcert`; the host name is not checked.
    VerifyCa,
    /// TLS, the certificate chains to `sslrootcert` and names the host connected to.
    VerifyFull,
}

impl SslMode {
    pub(super) const NAMES: &'static str = "disable, prefer, require, verify-ca or verify-full";

    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// What tokio-postgres must do: try TLS and fall back, insist on it, or never try.
    pub(super) fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Driver;
        match self {
            SslMode::Disable => Driver::Disable,
            SslMode::Prefer => Driver::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Driver::Require,
        }
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RootCert {
    /// A PEM file of one or more certificates.
    File(PathBuf),
    /// `sslrootcert=system`: the public web roots (Mozilla's list, built in).
    System,
}

/// The TLS parameters of a store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TlsSettings {
    pub(super) mode: SslMode,
    pub(super) root_cert: Option<RootCert>,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL's query: the URL without them
/// (for tokio-postgres) and what they ask for. `prefer` when `sslmode` is absent, as in libpq.
pub(super) fn split_tls_parameters(url: &str) -> Result<(String, TlsSettings), StoreError> {
    let mut settings = TlsSettings {
        mode: SslMode::Prefer,
        root_cert: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), settings));
    };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                let value = percent_decode(value);
                settings.mode = SslMode::parse(&value).ok_or_else(|| {
                    // The value is not a secret, and naming it helps.
                    StoreError::internal(format!(
                        "store.url: sslmode={value} is not one of {}",
                        SslMode::NAMES
                    ))
                })?;
            }
            "sslrootcert" => {
                let value = percent_decode(value);
                settings.root_cert = Some(if value == "system" {
                    RootCert::System
                } else {
                    RootCert::File(PathBuf::from(value))
                });
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, settings))
}

/// `%XX` escapes decoded (as tokio-postgres decodes the other parameters); a malformed escape is
/// kept as it is.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The connector for `settings`, with its trusted roots loaded: a missing or unreadable
/// `sslrootcert`, or a verifying mode without one, is an error before any connection is tried.
pub(super) fn connector(settings: &TlsSettings) -> Result<MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &settings.root_cert {
        Some(root_cert) => Some(Arc::new(load_roots(root_cert)?)),
        None => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (settings.mode, roots) {
        (SslMode::Disable | SslMode::Prefer | SslMode::Require, None) => {
            Arc::new(AnyCertificate(provider.signature_verification_algorithms))
        }
        // libpq: with a root certificate, `require` verifies the chain like `verify-ca`;
        // `prefer` never checks (it would fall back to plain text anyway).
        (SslMode::Disable | SslMode::Prefer, Some(_)) => {
            Arc::new(AnyCertificate(provider.signature_verification_algorithms))
        }
        (SslMode::Require | SslMode::VerifyCa, Some(roots)) => {
            Arc::new(ChainOnly(webpki_verifier(roots, &provider)?))
        }
        (SslMode::VerifyFull, Some(roots)) => webpki_verifier(roots, &provider)?,
        (mode @ (SslMode::VerifyCa | SslMode::VerifyFull), None) => {
            let mode = if mode == SslMode::VerifyCa {
                "verify-ca"
            } else {
                "verify-full"
            };
            return Err(StoreError::internal(format!(
                "store.url: sslmode={mode} needs sslrootcert: the PEM file of the CA that signed \
                 the server's certificate (or sslrootcert=system for the public web roots)"
            )));
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::internal(format!("TLS set-up: {e}")).caused_by(e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn load_roots(root_cert: &RootCert) -> Result<RootCertStore, StoreError> {
    let path = match root_cert {
        RootCert::System => {
            return Ok(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            });
        }
        RootCert::File(path) => path,
    };
    let shown = path.display();
    let unreadable = |e: rustls::pki_types::pem::Error| {
        StoreError::internal(format!(
            "store.url: sslrootcert {shown}: cannot read a PEM certificate: {e}"
        ))
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(unreadable)? {
        roots.add(cert.map_err(unreadable)?).map_err(|e| {
            StoreError::internal(format!(
                "store.url: sslrootcert {shown}: not a usable CA certificate: {e}"
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(StoreError::internal(format!(
            "store.url: sslrootcert {shown} holds no certificate"
        )));
    }
    Ok(roots)
}

fn webpki_verifier(
    roots: Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, StoreError> {
    WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(provider))
        .build()
        .map_err(|e| StoreError::internal(format!("TLS set-up: {e}")).caused_by(e))
}

/// `prefer` and `require` without a root certificate: encrypted, but any certificate is taken
/// (libpq's behaviour; it protects against eavesdropping, not against an active attacker). The
/// handshake's own signatures are still checked, so the key exchange is bound to that certificate.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root, whatever host name the certificate names.
/// rustls checks the chain before the name, so a name mismatch means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Why a connection could not get the TLS it asked for, in words an operator can act on; None
/// when `error` is not about TLS.
pub(super) fn explain(error: &tokio_postgres::Error) -> Option<String> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        // tokio-postgres's own words when the server answers the TLS request with "no".
        if cause.to_string() == "server does not support TLS" {
            return Some(
                "PostgreSQL refused TLS: the server does not accept encrypted connections \
                 (sslmode asks for TLS; set ssl = on on the server, or sslmode=prefer)"
                    .to_owned(),
            );
        }
        let rustls_error = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .or_else(|| cause.downcast_ref::<rustls::Error>());
        if let Some(tls) = rustls_error {
            return Some(describe(tls));
        }
        source = cause.source();
    }
    None
}

fn describe(error: &rustls::Error) -> String {
    let reason = match error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server's certificate is not signed by sslrootcert"
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => {
            "the server's certificate does not name the host in store.url \
             (sslmode=verify-full checks the name, verify-ca does not)"
        }
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired",
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "the server's certificate is not valid yet (check the clocks)",
        _ => "",
    };
    if reason.is_empty() {
        format!("TLS to PostgreSQL failed: {error}")
    } else {
        format!("TLS to PostgreSQL failed: {reason} ({error})")
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn split(url: &str) -> (String, TlsSettings) {
        split_tls_parameters(url).expect("valid")
    }

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let (url, settings) = split("postgres://u@db/x");
        assert_eq!(url, "postgres://u@db/x");
        assert_eq!(settings.mode, SslMode::Prefer, "libpq's default");
        assert_eq!(settings.root_cert, None);

        let (url, settings) = split(
            "postgres://u:p@db/x?application_name=a&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=2",
        );
        assert_eq!(
            url,
            "postgres://u:p@db/x?application_name=a&connect_timeout=2"
        );
        assert_eq!(settings.mode, SslMode::VerifyFull);
        assert_eq!(
            settings.root_cert,
            Some(RootCert::File(PathBuf::from("/etc/ca.pem")))
        );

        let (url, settings) = split("postgres://u@db/x?sslmode=require&sslrootcert=system");
        assert_eq!(url, "postgres://u@db/x");
        assert_eq!(settings.mode, SslMode::Require);
        assert_eq!(settings.root_cert, Some(RootCert::System));

        for (name, mode) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("verify-ca", SslMode::VerifyCa),
        ] {
            assert_eq!(
                split(&format!("postgres://db/x?sslmode={name}")).1.mode,
                mode
            );
        }
    }

    #[test]
    fn a_bad_mode_or_root_is_refused_with_the_key_and_the_reason() {
        let error = split_tls_parameters("postgres://u:hunter2@db/x?sslmode=verify")
            .expect_err("unknown mode");
        let message = error.to_string();
        assert!(
            message.contains("store.url: sslmode=verify is not one of"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message}");

        let needs_root = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: None,
        };
        let message = connector(&needs_root).err().expect("no root").to_string();
        assert!(
            message.contains("verify-full needs sslrootcert"),
            "{message}"
        );

        let missing = TlsSettings {
            mode: SslMode::VerifyCa,
            root_cert: Some(RootCert::File(PathBuf::from("/nonexistent/ca.pem"))),
        };
        let message = connector(&missing).err().expect("missing file").to_string();
        assert!(
            message.contains("sslrootcert /nonexistent/ca.pem"),
            "{message}"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let not_pem = TlsSettings {
            mode: SslMode::VerifyCa,
            root_cert: Some(RootCert::File(empty)),
        };
        let message = connector(&not_pem)
            .err()
            .expect("no certificate")
            .to_string();
        assert!(message.contains("holds no certificate"), "{message}");
    }

    #[test]
    fn every_mode_with_a_root_builds_a_connector() {
        let root = test_ca_path();
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            let settings = TlsSettings {
                mode,
                root_cert: Some(RootCert::File(root.clone())),
            };
            assert!(connector(&settings).is_ok(), "{mode:?}");
        }
        let system = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some(RootCert::System),
        };
        assert!(connector(&system).is_ok());
    }

    /// A CA made for the tests (`tests/fixtures/unrelated-ca.pem`) that signed nothing the test
    /// server uses.
    pub(in crate::store) fn test_ca_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unrelated-ca.pem")
    }
}
