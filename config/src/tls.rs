//! TLS material from the checked configuration: one place that turns PEM files and TLS
//! versions into rustls configurations, so every process speaks TLS the same way.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::checked::{Certificates, TlsVersion, TlsVersions, VerifyCertificates};

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{what} {path}: {message}")]
    Pem {
        /// What the file was supposed to hold.
        what: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// The crypto provider every plexgate process uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Pem { what: "certificates", path: path.display().to_string(), message };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".to_owned()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        what: "private key",
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// A root store of the configured CA certificates.
pub fn load_roots(c: &Certificates) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for path in &c.certificate_authorities {
        for cert in load_certs(path)? {
            roots.add(cert).map_err(|e| TlsError::Pem {
                what: "CA certificate",
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        }
    }
    Ok(roots)
}

/// The protocol versions allowed by the configuration.
pub fn versions(v: TlsVersions) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut out = Vec::new();
    if v.min <= TlsVersion::Tls13 && v.max >= TlsVersion::Tls13 {
        out.push(&rustls::version::TLS13);
    }
    if v.min <= TlsVersion::Tls12 && v.max >= TlsVersion::Tls12 {
        out.push(&rustls::version::TLS12);
    }
    out
}

/// A server configuration with the server certificate, the given client-certificate
/// verifier, and ALPN `alpn`.
pub fn server_config(
    c: &Certificates,
    v: TlsVersions,
    client_auth: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&versions(v))?
        .with_client_cert_verifier(client_auth)
        .with_single_cert(load_certs(&c.certificate)?, load_key(&c.key)?)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client configuration that trusts the configured CAs (per `verify`) and presents the
/// configured client certificate.
pub fn client_config(c: &Certificates, v: TlsVersions, verify: VerifyCertificates) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider()).with_protocol_versions(&versions(v))?;
    let builder = match verify {
        VerifyCertificates::Strict => builder.with_root_certificates(load_roots(c)?),
        VerifyCertificates::Nonstrict | VerifyCertificates::Disabled => builder.dangerous().with_custom_certificate_verifier(Arc::new(
            crate::tls_verify::Relaxed::new(load_roots(c)?, verify == VerifyCertificates::Disabled)?,
        )),
    };
    Ok(builder.with_client_auth_cert(load_certs(&c.client_certificate)?, load_key(&c.client_key)?)?)
}

/// The subject DN of a certificate, most specific attribute first (`CN=..., O=...`, as
/// Java's `X500Principal` prints it), with attribute values escaped as RFC 4514 says, so that
/// no two different names print alike (see [`crate::dn`]).
pub fn subject_dn(cert: &CertificateDer<'_>) -> Option<String> {
    crate::dn::Dn::of_certificate(cert.as_ref()).map(|dn| dn.to_string())
}

/// The subject's common name of a certificate.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    Some(cn)
}
