//! Token forgery for the black-box suite: JWS compact tokens built byte by byte, so a test can
//! get exactly one property wrong (algorithm, `kid`, signature, a claim, the encoding) and keep
//! everything else as the gateway itself would have it.
//!
//! Signing uses the real key files of a test workspace (the gateway's `server.key` is its
//! default JWT signing key), so a forged token that only differs in the property under test
//! is otherwise indistinguishable from one the gateway issued. Nothing here talks to a gateway.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// `iss` of login tokens.
pub const LOGIN_ISSUER: &str = "APIML";
/// `iss` of Personal Access Tokens.
pub const PAT_ISSUER: &str = "APIML_PAT";

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// base64url without padding, the JWS encoding.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The signing input `b64(header).b64(claims)`.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header.to_string()), b64(claims.to_string()))
}

/// The bytes of base64url text; panics on anything else.
pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

/// A token with `header` and `claims`, signed with `key` by `alg` (whatever the header says).
pub fn sign(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    sign_raw(&header.to_string(), &claims.to_string(), key, alg)
}

/// Like [`sign`], with the header and claims as literal JSON text (for JSON a `Value` cannot
/// hold, such as duplicate keys).
pub fn sign_raw(header: &str, claims: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("sign");
    format!("{input}.{sig}")
}

/// A token with an empty signature (what `alg: none` looks like).
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.", signing_input(header, claims))
}

/// A decoded part of a token (0 header, 1 claims), without any verification.
pub fn part(token: &str, i: usize) -> Value {
    let p = token.split('.').nth(i).expect("token part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("base64url part")).expect("JSON part")
}

/// A fresh `jti`, unique within the test process.
pub fn jti() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("forged-{nanos:x}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// The claims of a login token as the gateway issues them: `sub`, `iat` now, `exp` in an hour,
/// `iss` APIML, `jti`, `dom`.
pub fn login_claims(user: &str) -> Value {
    let now = now();
    json!({"sub": user, "iat": now, "exp": now + 3600, "iss": LOGIN_ISSUER, "jti": jti(), "dom": "security-domain"})
}

/// The claims of a PAT as the gateway issues them, valid a day for `scopes`.
pub fn pat_claims(user: &str, scopes: &[&str]) -> Value {
    let now = now();
    json!({"sub": user, "iat": now, "exp": now + 86_400, "iss": PAT_ISSUER, "jti": jti(), "auth.prov": "APIML", "scopes": scopes})
}

/// The first certificate of a PEM file.
fn certificate(cert_pem: &Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(cert_pem).expect("read certificate").next().expect("a certificate").expect("certificate PEM")
}

/// The DER SubjectPublicKeyInfo of the first certificate in a PEM file.
pub fn spki_der(cert_pem: &Path) -> Vec<u8> {
    let cert = certificate(cert_pem);
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).expect("parse certificate");
    parsed.public_key().raw.to_vec()
}

/// The PKCS#1 `RSAPublicKey` DER (the bit string inside the SubjectPublicKeyInfo).
pub fn rsa_public_key_der(cert_pem: &Path) -> Vec<u8> {
    let cert = certificate(cert_pem);
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).expect("parse certificate");
    parsed.public_key().subject_public_key.data.to_vec()
}

/// The base64url `(n, e)` of the certificate's RSA key, as a JWK carries them.
pub fn rsa_components(cert_pem: &Path) -> (String, String) {
    let cert = certificate(cert_pem);
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).expect("parse certificate");
    match parsed.public_key().parsed().expect("public key") {
        x509_parser::public_key::PublicKey::RSA(rsa) => {
            let strip = |b: &[u8]| b[b.iter().position(|x| *x != 0).unwrap_or(b.len())..].to_vec();
            (b64(strip(rsa.modulus)), b64(strip(rsa.exponent)))
        }
        _ => panic!("{} does not hold an RSA key", cert_pem.display()),
    }
}

/// `-----BEGIN PUBLIC KEY-----` PEM of the certificate's key, as `openssl x509 -pubkey` prints it.
pub fn spki_pem(cert_pem: &Path) -> String {
    let body = STANDARD.encode(spki_der(cert_pem));
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

/// The certificates of a PEM file as a JWS `x5c` header carries them (standard base64 DER).
pub fn x5c(cert_pem: &Path) -> Vec<String> {
    CertificateDer::pem_file_iter(cert_pem).expect("read certificate").map(|c| STANDARD.encode(c.expect("certificate PEM"))).collect()
}

/// The `kid` plexgate documents for a key: base64url of the SHA-256 of its SubjectPublicKeyInfo.
pub fn kid_of(cert_pem: &Path) -> String {
    b64(Sha256::digest(spki_der(cert_pem)))
}

/// An RSA private key (PKCS#1 or PKCS#8 PEM) for signing.
pub fn rsa_key(key_pem: &Path) -> EncodingKey {
    EncodingKey::from_rsa_pem(&std::fs::read(key_pem).expect("read key")).expect("RSA key PEM")
}

/// Forges tokens with one RSA key under one `kid`.
pub struct Forger {
    key: EncodingKey,
    /// The `kid` put in headers.
    pub kid: String,
}

impl Forger {
    /// Signs with the key in `key_pem`, naming it `kid`.
    pub fn new(key_pem: &Path, kid: &str) -> Forger {
        Forger { key: rsa_key(key_pem), kid: kid.to_owned() }
    }

    /// The key.
    pub fn key(&self) -> &EncodingKey {
        &self.key
    }

    /// The header the gateway writes: RS256, JWT, this `kid`.
    pub fn header(&self) -> Value {
        json!({"alg": "RS256", "typ": "JWT", "kid": self.kid})
    }

    /// `claims` under [`Forger::header`], signed RS256.
    pub fn token(&self, claims: &Value) -> String {
        sign(&self.header(), claims, &self.key, Algorithm::RS256)
    }

    /// `claims` under any `header`, signed RS256 with this key.
    pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        sign(header, claims, &self.key, Algorithm::RS256)
    }
}
