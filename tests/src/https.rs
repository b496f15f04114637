//! HTTPS clients with the workspace's certificates (real TLS, real client certificates).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls client configuration trusting `ca`, presenting `identity` (certificate, key) if given.
pub fn tls_config(ca: &Path, identity: Option<(&Path, &Path)>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(c.expect("CA PEM")).expect("add CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(cert).expect("read cert").map(|c| c.expect("cert PEM")).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).expect("read key")).expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// A blocking HTTPS client over `tls_config`.
pub fn client(ca: &Path, identity: Option<(&Path, &Path)>) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls_config(ca, identity))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("https client")
}

/// Percent-encodes one path segment.
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Sends `request` (raw HTTP/1.1 bytes, exactly as given: no client-side path normalisation)
/// over TLS to 127.0.0.1:`port`; returns the whole answer as text.
pub fn raw_request(ca: &Path, port: u16, request: &[u8]) -> String {
    raw_request_as(ca, None, port, request)
}

/// [`raw_request`], presenting the client certificate `identity` (certificate, key) if given.
pub fn raw_request_as(ca: &Path, identity: Option<(&Path, &Path)>, port: u16, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let config = std::sync::Arc::new({
        let mut c = tls_config(ca, identity);
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        c
    });
    let mut conn = rustls::ClientConnection::new(config, "127.0.0.1".try_into().expect("server name")).expect("TLS client");
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(request).expect("send");
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}
