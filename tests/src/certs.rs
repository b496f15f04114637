//! Client certificates made on the spot and signed by a workspace's development CA, for tests
//! of how the processes read subject names (a CN holding `, O=...`, multi-valued RDNs).

use std::path::PathBuf;

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose};

use crate::Workspace;

/// Issues a client certificate whose subject is `subject` (attributes in DER order, least
/// specific first, as rcgen takes them), signed by the workspace's CA; written as
/// `<name>.pem` / `<name>.key` beside the development certificates.
pub fn issue_client(ws: &Workspace, name: &str, subject: &[(DnType, &str)]) -> (PathBuf, PathBuf) {
    let dir = ws.certs_dir();
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).expect("read ca.key")).expect("CA key");
    let issuer = Issuer::from_ca_cert_pem(&std::fs::read_to_string(dir.join("ca.pem")).expect("read ca.pem"), ca_key).expect("CA");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    for (ty, value) in subject {
        dn.push(ty.clone(), *value);
    }
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("sign");
    let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}
