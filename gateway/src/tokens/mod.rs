//! Login tokens and Personal Access Tokens: issuing, and verifying with every check the
//! contract and its hostile inputs call for.

mod cache;
mod keys;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

pub use cache::{Verified, VerifiedCache};
pub use keys::{Keys, PublicKey};

/// `iss` of login tokens.
pub const LOGIN_ISSUER: &str = "APIML";
/// `iss` of Personal Access Tokens.
pub const PAT_ISSUER: &str = "APIML_PAT";
/// `auth.prov` of Personal Access Tokens.
pub const PAT_PROVIDER: &str = "APIML";
/// Tokens longer than this are refused unread.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest PAT validity, in days; 0 or less means this.
pub const MAX_PAT_DAYS: i64 = 90;

/// The claims of both kinds of token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: String,
    /// Issued at, epoch seconds.
    pub iat: u64,
    /// Expires at, epoch seconds.
    pub exp: u64,
    /// `APIML` or `APIML_PAT`.
    pub iss: String,
    /// Unique id.
    pub jti: String,
    /// Login tokens: the security domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dom: Option<String>,
    /// PATs: the authentication provider.
    #[serde(default, rename = "auth.prov", skip_serializing_if = "Option::is_none")]
    pub auth_prov: Option<String>,
    /// PATs: the services it is valid for, lower-case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Not before, if present (we never set it; others may).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Which kind of token a place wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A login token (`iss` APIML).
    Login,
    /// A Personal Access Token (`iss` APIML_PAT).
    Pat,
}

impl Kind {
    fn issuer(self) -> &'static str {
        match self {
            Kind::Login => LOGIN_ISSUER,
            Kind::Pat => PAT_ISSUER,
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Past its `exp` (beyond the leeway).
    Expired,
    /// Anything else: malformed, bad signature, wrong algorithm or key, wrong issuer or kind, from the future.
    Invalid(&'static str),
}

/// Seconds since the epoch, now.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Issues and verifies tokens with one set of keys.
pub struct TokenService {
    keys: Keys,
    lifetime: Duration,
    leeway: Duration,
    domain: String,
}

impl TokenService {
    /// With `keys`, login tokens living `lifetime`, clocks allowed to differ by `leeway`.
    pub fn new(keys: Keys, lifetime: Duration, leeway: Duration, domain: String) -> TokenService {
        TokenService { keys, lifetime, leeway, domain }
    }

    /// The keys (for the JWK set endpoints).
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A login token for `user`.
    pub fn issue_login(&self, user: &str) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        let iat = now_secs();
        let claims = Claims {
            sub: user.to_owned(),
            iat,
            exp: iat + self.lifetime.as_secs(),
            iss: LOGIN_ISSUER.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            dom: Some(self.domain.clone()),
            auth_prov: None,
            scopes: None,
            nbf: None,
        };
        Ok((self.sign(&claims)?, claims))
    }

    /// A PAT for `user`, valid `days` (capped at 90; 0 or less means 90) for `scopes`.
    pub fn issue_pat(&self, user: &str, days: i64, scopes: &[String]) -> Result<(String, Claims), jsonwebtoken::errors::Error> {
        let days = if days <= 0 || days > MAX_PAT_DAYS { MAX_PAT_DAYS } else { days } as u64;
        let iat = now_secs();
        let mut scopes: Vec<String> = scopes.iter().map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty()).collect();
        scopes.dedup();
        let claims = Claims {
            sub: user.to_owned(),
            iat,
            exp: iat + days * 86_400,
            iss: PAT_ISSUER.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            dom: None,
            auth_prov: Some(PAT_PROVIDER.to_owned()),
            scopes: Some(scopes),
            nbf: None,
        };
        Ok((self.sign(&claims)?, claims))
    }

    fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.keys.current.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.keys.signing)
    }

    /// Verifies `token` as a token of `kind`: size, algorithm (RS256 only: no `none`, no HMAC
    /// with the public key), a known `kid`, the signature, `iss`, `exp` and `nbf` with the
    /// leeway, and `iat` not in the future.
    pub fn verify(&self, token: &str, kind: Kind) -> Result<Claims, Rejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::Invalid("token too long"));
        }
        if token.bytes().filter(|b| *b == b'.').count() != 2 {
            return Err(Rejection::Invalid("not a JWS compact token"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Invalid("unreadable header"))?;
        if header.alg != Algorithm::RS256 {
            return Err(Rejection::Invalid("algorithm other than RS256"));
        }
        // RFC 7515 4.1.11: extensions we do not understand must not be ignored.
        if header.crit.is_some() {
            return Err(Rejection::Invalid("critical header extension"));
        }
        let kid = header.kid.ok_or(Rejection::Invalid("no kid"))?;
        let key = self.keys.by_kid.get(&kid).ok_or(Rejection::Invalid("unknown kid"))?;
        let mut v = Validation::new(Algorithm::RS256);
        v.leeway = self.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = false;
        v.set_issuer(&[kind.issuer()]);
        v.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &v).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => Rejection::Expired,
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => Rejection::Invalid("wrong issuer or kind of token"),
            jsonwebtoken::errors::ErrorKind::ImmatureSignature => Rejection::Invalid("not valid yet"),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => Rejection::Invalid("bad signature"),
            _ => Rejection::Invalid("malformed token"),
        })?;
        let c = data.claims;
        let now = now_secs();
        if c.iat > now + self.leeway.as_secs() {
            return Err(Rejection::Invalid("issued in the future"));
        }
        // Nothing we issue lives longer; a larger exp is forged or broken (and would overflow
        // the millisecond arithmetic downstream).
        let longest = self.lifetime.as_secs().max(MAX_PAT_DAYS as u64 * 86_400);
        if c.exp > now.saturating_add(longest + self.leeway.as_secs()) {
            return Err(Rejection::Invalid("expiry beyond the longest lifetime"));
        }
        if c.sub.is_empty() {
            return Err(Rejection::Invalid("no subject"));
        }
        Ok(c)
    }
}
