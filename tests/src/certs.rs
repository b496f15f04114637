//! Certificates made on the spot: client certificates signed by a workspace's development CA,
//! for tests of how the processes read subject names (a CN holding `, O=...`, multi-valued
//! RDNs); an API service's own certificate (server and client, as an onboarded service
//! presents it to the discovery service); and one from a CA nobody trusts.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::Workspace;

/// Issues a client certificate whose subject is `subject` (attributes in DER order, least
/// specific first, as rcgen takes them), signed by the workspace's CA; written as
/// `<name>.pem` / `<name>.key` beside the development certificates.
pub fn issue_client(ws: &Workspace, name: &str, subject: &[(DnType, &str)]) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    for (ty, value) in subject {
        dn.push(ty.clone(), *value);
    }
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    signed_by_workspace_ca(ws, name, params)
}

/// Issues an API service's certificate for `127.0.0.1` and `localhost` (server and client
/// authentication, as Zowe's services use one keystore for both), subject `CN=<cn>, O=plexgate
/// tests`, signed by the workspace's CA; written as `<name>.pem` / `<name>.key`.
pub fn issue_service(ws: &Workspace, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "plexgate tests");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    signed_by_workspace_ca(ws, name, params)
}

/// Signs `params` with the workspace's CA and writes `<name>.pem` / `<name>.key` beside it.
fn signed_by_workspace_ca(ws: &Workspace, name: &str, params: CertificateParams) -> (PathBuf, PathBuf) {
    let dir = ws.certs_dir();
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).expect("read ca.key")).expect("CA key");
    let issuer = Issuer::from_ca_cert_pem(&std::fs::read_to_string(dir.join("ca.pem")).expect("read ca.pem"), ca_key).expect("CA");
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("sign");
    let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

/// A client certificate (subject `CN=<name>`) from a CA of its own that no workspace trusts;
/// written as `<name>.pem` / `<name>.key` beside the development certificates.
pub fn issue_untrusted(ws: &Workspace, name: &str) -> (PathBuf, PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut ca_dn = DistinguishedName::new();
    ca_dn.push(DnType::CommonName, "an untrusted CA");
    ca.distinguished_name = ca_dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca.self_signed(&ca_key).expect("self-signed CA");
    let issuer = Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).expect("CA");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("sign");
    let dir = ws.certs_dir();
    let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    // The chain as a client would send it: its certificate, then its CA's.
    std::fs::write(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem())).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}
