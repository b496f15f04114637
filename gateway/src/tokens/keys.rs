//! The signing key and the keys tokens are verified with, by `kid`.
//!
//! Every gateway reads the same key files (the shared keystore, as in Zowe), so a token issued
//! by one verifies on all. The `kid` is derived from the public key (base64url of the SHA-256
//! of its SubjectPublicKeyInfo), so gateways agree on it without coordination; a former key
//! listed in `jwt.verificationCertificates` keeps its tokens valid through a rotation.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use plexgate_config::JwtConfig;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::GatewayError;

/// One RSA public key with its `kid`.
#[derive(Clone)]
pub struct PublicKey {
    /// Key id.
    pub kid: String,
    /// base64url modulus.
    n: String,
    /// base64url exponent.
    e: String,
    /// For verification.
    pub decoding: DecodingKey,
}

impl PublicKey {
    /// The JWK of this key.
    pub fn jwk(&self) -> Value {
        json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256", "n": self.n, "e": self.e})
    }
}

/// The signing key and every accepted verification key.
pub struct Keys {
    /// Signs new tokens.
    pub signing: EncodingKey,
    /// Its public half.
    pub current: PublicKey,
    /// Every accepted key by `kid` (the current one included).
    pub by_kid: HashMap<String, PublicKey>,
}

impl Keys {
    /// Loads the configured key files.
    pub fn load(c: &JwtConfig) -> Result<Keys, GatewayError> {
        let pem = std::fs::read(&c.signing_key)
            .map_err(|e| GatewayError::Internal(format!("cannot read the JWT signing key {}: {e}", c.signing_key.display())))?;
        let signing = EncodingKey::from_rsa_pem(&pem)
            .map_err(|e| GatewayError::Internal(format!("the JWT signing key {} is not an RSA key: {e}", c.signing_key.display())))?;
        let current = public_key(&c.signing_certificate)?;
        let mut by_kid = HashMap::new();
        by_kid.insert(current.kid.clone(), current.clone());
        for path in &c.verification_certificates {
            let k = public_key(path)?;
            by_kid.insert(k.kid.clone(), k);
        }
        Ok(Keys { signing, current, by_kid })
    }

    /// `{"keys": [...]}` of every accepted key (`all`) or only the signing one.
    pub fn jwk_set(&self, all: bool) -> Value {
        let keys: Vec<Value> = if all {
            let mut ks: Vec<&PublicKey> = self.by_kid.values().collect();
            ks.sort_by_key(|k| (k.kid != self.current.kid, k.kid.clone()));
            ks.into_iter().map(PublicKey::jwk).collect()
        } else {
            vec![self.current.jwk()]
        };
        json!({ "keys": keys })
    }
}

/// The RSA public key of the first certificate in a PEM file.
fn public_key(path: &Path) -> Result<PublicKey, GatewayError> {
    let bad = |m: String| GatewayError::Internal(format!("JWT certificate {}: {m}", path.display()));
    let certs = plexgate_config::tls::load_certs(path).map_err(|e| bad(e.to_string()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(certs[0].as_ref()).map_err(|e| bad(e.to_string()))?;
    let spki = cert.public_key();
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(spki.raw));
    match spki.parsed().map_err(|e| bad(e.to_string()))? {
        x509_parser::public_key::PublicKey::RSA(rsa) => {
            let n = URL_SAFE_NO_PAD.encode(strip_zeros(rsa.modulus));
            let e = URL_SAFE_NO_PAD.encode(strip_zeros(rsa.exponent));
            let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|e| bad(e.to_string()))?;
            Ok(PublicKey { kid, n, e, decoding })
        }
        _ => Err(bad("not an RSA key (RS256 needs one)".to_owned())),
    }
}

/// DER integers carry a leading zero when the top bit is set; JWK wants the bare magnitude.
fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[i..]
}
