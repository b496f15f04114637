//! `plexgate init certificate`: idempotent, private keys 0600, and certificates that a real
//! rustls handshake accepts for localhost and 127.0.0.1 (server) and for mutual TLS (client).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use plexgate_tests::Workspace;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path).unwrap().map(Result::unwrap).collect()
}

fn key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(ca: &Path) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca) {
        roots.add(c).unwrap();
    }
    Arc::new(roots)
}

/// One TLS handshake (plus one byte each way) over loopback; the server demands a client
/// certificate from the same CA. Returns the client side's error, if any.
fn handshake(dir: &Path, name: &str) -> Result<(), String> {
    let client_verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(&dir.join("ca.pem")), provider()).build().unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(certs(&dir.join("server.pem")), key(&dir.join("server.key")))
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut conn = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        let mut b = [0u8; 1];
        if tls.read_exact(&mut b).is_ok() {
            let _ = tls.write_all(&b);
        }
    });
    let client_config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(&dir.join("ca.pem")))
        .with_client_auth_cert(certs(&dir.join("client.pem")), key(&dir.join("client.key")))
        .unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(client_config), ServerName::try_from(name.to_owned()).unwrap()).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let result = tls.write_all(b"x").and_then(|_| {
        let mut b = [0u8; 1];
        tls.read_exact(&mut b)
    });
    drop(sock);
    let _ = server.join();
    result.map_err(|e| e.to_string())
}

#[test]
fn generated_certificates_verify_for_localhost_and_loopback_with_mutual_tls() {
    let ws = Workspace::new();
    let run = ws.run(&["init", "certificate"], "").expect_code(0);
    assert!(run.stdout().contains("development certificates written to"), "{}", run.stdout());
    let dir = ws.path().join("workspace/certificates");
    handshake(&dir, "localhost").expect("localhost verifies");
    handshake(&dir, "127.0.0.1").expect("127.0.0.1 verifies");
    let wrong = handshake(&dir, "not-covered.example");
    assert!(wrong.is_err(), "a name outside the SANs must not verify");
}

#[test]
fn init_certificate_is_idempotent_and_force_replaces() {
    let ws = Workspace::new();
    ws.run(&["init", "certificate"], "").expect_code(0);
    let dir = ws.path().join("workspace/certificates");
    let files = ["ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key"];
    let before: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(dir.join(f)).unwrap()).collect();
    for f in ["ca.key", "server.key", "client.key"] {
        assert_eq!(std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
    }
    let run = ws.run(&["init", "certificate"], "").expect_code(0);
    assert!(run.stdout().contains("kept"), "{}", run.stdout());
    let after: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(dir.join(f)).unwrap()).collect();
    assert_eq!(before, after, "a second run must keep every file");
    ws.run(&["init", "certificate", "--force"], "").expect_code(0);
    let forced: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(dir.join(f)).unwrap()).collect();
    assert!(files.iter().enumerate().all(|(i, _)| forced[i] != before[i]), "--force replaces every file");
    handshake(&dir, "localhost").expect("the replaced set verifies");
}

#[test]
fn a_missing_server_certificate_is_reissued_by_the_existing_ca() {
    let ws = Workspace::new();
    ws.run(&["init", "certificate"], "").expect_code(0);
    let dir = ws.path().join("workspace/certificates");
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    std::fs::remove_file(dir.join("server.pem")).unwrap();
    ws.run(&["init", "certificate"], "").expect_code(0);
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca, "the CA is kept");
    handshake(&dir, "127.0.0.1").expect("new server certificate verifies against the kept CA");
}

#[test]
fn sans_cover_external_domains_and_instance_hostnames() {
    let ws = Workspace::new();
    let yaml = include_str!("../../examples/zowe.yaml")
        .replace("    - 127.0.0.1\n", "    - vip.plexgate.test\n")
        .replace("  lpar2:\n    hostname: 127.0.0.1", "  lpar2:\n    hostname: lpar2.plexgate.test")
        // A distributor named by host name: the gateways are told whose PROXY headers to believe.
        .replacen("    proxyProtocol: true\n", "    proxyProtocol: true\n    proxyProtocolTrustedSources: [127.0.0.1]\n", 1);
    let file = ws.write("zowe.yaml", &yaml);
    ws.run(&["init", "certificate", "-c", file.to_str().unwrap()], "").expect_code(0);
    let dir = ws.path().join("workspace/certificates");
    handshake(&dir, "vip.plexgate.test").expect("external domain");
    handshake(&dir, "lpar2.plexgate.test").expect("instance hostname");
}
