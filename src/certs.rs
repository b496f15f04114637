//! Development certificates: a CA, a server certificate and a gateway client certificate.
//!
//! `plexgate init certificate` (and `plexgate up`) write them into `<workspace>/certificates`
//! when the configuration names no certificate files of its own. The server key is RSA because
//! the gateways also sign RS256 login tokens with it, as Zowe signs with its keystore key.

use std::path::Path;

use anyhow::Context;
use plexgate_config::Config;
use plexgate_config::users::write_private;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// How long the development certificates are valid.
const VALIDITY_DAYS: i64 = 825;
/// Subject CN of the client certificate gateways present to the caching service.
pub const CLIENT_COMMON_NAME: &str = "plexgate-gateway";

/// Makes sure the development certificates exist; with `force`, makes them anew.
pub fn ensure(config: &Config, force: bool) -> anyhow::Result<()> {
    let c = &config.certificates;
    if !c.generated {
        println!("the configuration names its own certificate files ({}); nothing to generate", c.certificate.display());
        return Ok(());
    }
    let dir = c.key.parent().context("certificate path has no directory")?;
    crate::commands::create_dir(dir)?;
    let ca_pem = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    let all = [&ca_pem, &ca_key, &c.certificate, &c.key, &c.client_certificate, &c.client_key];
    if !force && all.iter().all(|p| p.exists()) {
        println!("development certificates exist in {}; kept (use --force to replace them)", dir.display());
        return Ok(());
    }

    let issuer = if !force && ca_pem.exists() && ca_key.exists() {
        let key = KeyPair::from_pem(&read(&ca_key)?).context("cannot read the CA key")?;
        Issuer::from_ca_cert_pem(&read(&ca_pem)?, key).context("cannot read the CA certificate")?
    } else {
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn("plexgate development CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut params);
        let cert = params.self_signed(&key)?;
        write_private(&ca_key, key.serialize_pem().as_bytes()).with_context(|| format!("cannot write {}", ca_key.display()))?;
        write_public(&ca_pem, &cert.pem())?;
        Issuer::new(params, key)
    };

    if force || !c.certificate.exists() || !c.key.exists() {
        let mut params = CertificateParams::new(server_names(config))?;
        params.distinguished_name = dn("plexgate");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        validity(&mut params);
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
        let cert = params.signed_by(&key, &issuer)?;
        write_private(&c.key, key.serialize_pem().as_bytes()).with_context(|| format!("cannot write {}", c.key.display()))?;
        write_public(&c.certificate, &cert.pem())?;
    }
    if force || !c.client_certificate.exists() || !c.client_key.exists() {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(CLIENT_COMMON_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write_private(&c.client_key, key.serialize_pem().as_bytes()).with_context(|| format!("cannot write {}", c.client_key.display()))?;
        write_public(&c.client_certificate, &cert.pem())?;
    }
    println!("development certificates written to {}", dir.display());
    Ok(())
}

/// Every name a client may use to reach a plexgate process.
fn server_names(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    names.extend(config.external_domains.iter().cloned());
    names.extend(config.instances.iter().map(|i| i.hostname.clone()));
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.to_ascii_lowercase()));
    names
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "plexgate");
    dn.push(DnType::CommonName, cn);
    dn
}

fn validity(params: &mut CertificateParams) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(VALIDITY_DAYS);
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write_public(path: &Path, pem: &str) -> anyhow::Result<()> {
    std::fs::write(path, pem).with_context(|| format!("cannot write {}", path.display()))
}
