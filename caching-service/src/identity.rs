//! Who is calling: the subject DN of the caller's TLS client certificate.
//!
//! The TLS layer accepts any client certificate whose signature proves possession of its key
//! (and connections without one), so that an untrusted or missing certificate can be answered
//! with a Zowe 403 body rather than a bare handshake failure. Trust is decided once per
//! connection with the webpki verifier over the configured CAs ([`PeerIdentity`]); every API
//! request then derives its namespace from it ([`namespace`]).

use std::sync::Arc;

use axum::http::HeaderMap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use plexgate_config::dn::Dn;

use crate::error::CacheError;

/// Header by which a trusted gateway names the end caller.
pub const DN_HEADER: &str = "x-certificate-distinguishedname";
/// Header selecting a service namespace within the caller's.
pub const SERVICE_ID_HEADER: &str = "x-cs-service-id";

/// The identity of one TLS connection, decided after its handshake.
#[derive(Debug, Clone)]
pub enum PeerIdentity {
    /// No client certificate.
    Anonymous,
    /// A certificate that does not chain to a trusted CA.
    Untrusted,
    /// A trusted certificate with this subject DN.
    Trusted {
        /// RFC 4514 subject DN.
        dn: String,
        /// Whether this DN may pass other callers' identities.
        gateway: bool,
    },
}

/// Decides [`PeerIdentity`] for connections.
pub struct Identities {
    verifier: Arc<dyn ClientCertVerifier>,
    gateways: Vec<String>,
}

impl Identities {
    /// Trusts `roots`; `gateways` are the DNs allowed to pass identities.
    pub fn new(verifier: Arc<dyn ClientCertVerifier>, gateways: Vec<String>) -> Identities {
        let gateways = gateways.iter().filter_map(|g| normalize(g)).collect();
        Identities { verifier, gateways }
    }

    /// The identity of a connection whose client presented `chain` (possibly empty).
    pub fn of(&self, chain: Option<&[CertificateDer<'static>]>) -> PeerIdentity {
        let Some((end, intermediates)) = chain.and_then(|c| c.split_first()) else { return PeerIdentity::Anonymous };
        if self.verifier.verify_client_cert(end, intermediates, UnixTime::now()).is_err() {
            return PeerIdentity::Untrusted;
        }
        match subject_dn(end) {
            Some(dn) => {
                let gateway = self.gateways.contains(&dn);
                PeerIdentity::Trusted { dn, gateway }
            }
            None => PeerIdentity::Untrusted,
        }
    }
}

pub use plexgate_config::tls::subject_dn;

/// A DN string in the one form DNs are compared and namespaced in: parsed as RFC 4514 and
/// printed again with types upper-cased and values escaped; `None` when it is no DN.
pub fn normalize(dn: &str) -> Option<String> {
    Dn::parse(dn).ok().map(|d| d.to_string())
}

/// What separates the caller's DN from an `X-CS-Service-ID` in a namespace key. A printed
/// [`Dn`] escapes every control character, so no DN (whatever a certificate or a gateway
/// holds) can contain it, and `<dn><SEP><service>` can never equal another DN's namespace nor
/// another `(dn, service)` pair's.
pub const SERVICE_SEPARATOR: char = '\u{1f}';

/// The namespace of a request: the caller's DN (or the one a trusted gateway passes on), in
/// its normalized form, followed by [`SERVICE_SEPARATOR`] and the id when `X-CS-Service-ID`
/// is sent.
pub fn namespace(peer: &PeerIdentity, headers: &HeaderMap) -> Result<String, CacheError> {
    let (dn, gateway) = match peer {
        PeerIdentity::Anonymous => return Err(CacheError::Forbidden("a client certificate is required")),
        PeerIdentity::Untrusted => return Err(CacheError::Forbidden("the client certificate is not signed by a trusted CA")),
        PeerIdentity::Trusted { dn, gateway } => (dn, *gateway),
    };
    let passed = headers.get(DN_HEADER);
    let caller = match passed {
        None => dn.clone(),
        Some(_) if !gateway => {
            return Err(CacheError::Forbidden("only trusted gateway certificates may send X-Certificate-DistinguishedName"));
        }
        Some(v) => {
            let text = v.to_str().map_err(|_| CacheError::NoIdentity)?.trim();
            if text.is_empty() {
                return Err(CacheError::NoIdentity);
            }
            normalize(text).ok_or_else(|| {
                CacheError::BadPayload("X-Certificate-DistinguishedName must be an RFC 4514 distinguished name".to_owned())
            })?
        }
    };
    match headers.get(SERVICE_ID_HEADER).map(|v| v.to_str()) {
        None => Ok(caller),
        Some(Ok(id)) if !id.trim().is_empty() => Ok(format!("{caller}{SERVICE_SEPARATOR}{}", id.trim())),
        Some(_) => Err(CacheError::BadPayload("X-CS-Service-ID must be a non-empty visible ASCII string".to_owned())),
    }
}

/// Accepts any client certificate that proves possession of its key (or none); trust is
/// decided afterwards by [`Identities::of`], so the answer can be a proper 403.
#[derive(Debug)]
pub struct DeferredTrust {
    inner: Arc<dyn ClientCertVerifier>,
}

impl DeferredTrust {
    /// Wraps the real verifier (used for signatures and for the CA hints).
    pub fn new(inner: Arc<dyn ClientCertVerifier>) -> DeferredTrust {
        DeferredTrust { inner }
    }
}

impl ClientCertVerifier for DeferredTrust {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        _end: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, val) in v {
            h.insert(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), val.parse().unwrap());
        }
        h
    }

    #[test]
    fn namespaces_follow_the_contract() {
        let svc = PeerIdentity::Trusted { dn: "CN=svc, O=x".into(), gateway: false };
        let gw = PeerIdentity::Trusted { dn: "CN=gw, O=x".into(), gateway: true };
        assert_eq!(namespace(&svc, &headers(&[])).unwrap(), "CN=svc, O=x");
        assert_eq!(namespace(&svc, &headers(&[("x-cs-service-id", "gateway")])).unwrap(), "CN=svc, O=x\u{1f}gateway");
        assert_eq!(namespace(&gw, &headers(&[("x-certificate-distinguishedname", "CN=user")])).unwrap(), "CN=user");
        assert!(matches!(namespace(&svc, &headers(&[("x-certificate-distinguishedname", "CN=user")])), Err(CacheError::Forbidden(_))));
        assert!(matches!(namespace(&gw, &headers(&[("x-certificate-distinguishedname", " ")])), Err(CacheError::NoIdentity)));
        assert!(matches!(namespace(&PeerIdentity::Anonymous, &headers(&[])), Err(CacheError::Forbidden(_))));
        assert!(matches!(namespace(&PeerIdentity::Untrusted, &headers(&[])), Err(CacheError::Forbidden(_))));
    }

    #[test]
    fn dns_compare_ignoring_spacing_and_type_case() {
        assert_eq!(normalize("CN=a, O=b"), normalize("cn=a,O=b"));
        assert_ne!(normalize("CN=a, O=b"), normalize("O=b, CN=a"));
        assert_ne!(normalize("CN=a, O=b"), normalize(r"CN=a\, O=b"));
    }

    #[test]
    fn service_namespaces_never_equal_a_passed_dn() {
        let gw = PeerIdentity::Trusted { dn: "CN=gw, O=x".into(), gateway: true };
        let with_service = namespace(&gw, &headers(&[("x-certificate-distinguishedname", "CN=u"), ("x-cs-service-id", "s")])).unwrap();
        for dn in ["CN=u, SERVICE=s", "CN=u,SERVICE=s", r"CN=u\1Fs"] {
            assert_ne!(namespace(&gw, &headers(&[("x-certificate-distinguishedname", dn)])).unwrap(), with_service, "{dn}");
        }
    }
}
