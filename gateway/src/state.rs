//! What every request handler shares: the heart of a gateway process.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::{AuthFailure, AuthProvider, LoginLimiter};
use crate::error::GatewayError;
use crate::metrics as m;
use crate::revocation::Revocations;
use crate::tokens::{Claims, Kind, Rejection, TokenService, Verified, VerifiedCache};

/// Cookie carrying a login token.
pub const AUTH_COOKIE: &str = "apimlAuthenticationToken";
/// Cookie carrying a PAT.
pub const PAT_COOKIE: &str = "personalAccessToken";
/// Header carrying a PAT.
pub const PAT_HEADER: &str = "private-token";

/// The client's address, added to every request of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// The client certificate of a connection, verified against the truststore at the handshake.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// Subject DN.
    pub dn: String,
    /// Subject common name.
    pub cn: String,
    /// The certificate, base64 DER.
    pub der_base64: String,
}

/// The shared state of one gateway.
pub struct Gateway {
    /// The haInstance it runs as.
    pub instance: String,
    /// Issues and verifies tokens.
    pub tokens: TokenService,
    /// Verified tokens.
    pub cache: Arc<VerifiedCache>,
    /// Revocation state.
    pub revocations: Arc<Revocations>,
    /// Checks passwords.
    pub provider: Arc<dyn AuthProvider>,
    /// Failed-login limits.
    pub limiter: LoginLimiter,
    /// Lower-case names of configured admins.
    pub admins: Vec<String>,
    /// Set on SIGTERM: health reports DRAINING.
    pub draining: AtomicBool,
    /// Prometheus rendering, when this process owns the recorder.
    pub metrics: Option<PrometheusHandle>,
    /// Routes to API services.
    pub routes: Arc<crate::routing::Routes>,
    /// User-to-instance choices shared by every gateway.
    pub sticky: Arc<crate::routing::sticky::StickyRoutes>,
}

impl Gateway {
    /// Whether the gateway is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Verifies `token` as `kind` and checks it is not revoked; returns its claims and revocation hash.
    pub async fn verify(&self, token: &str, kind: Kind, path: &str) -> Result<(Claims, String), GatewayError> {
        let reject = |r: Rejection| match r {
            Rejection::Expired => GatewayError::ExpiredToken(path.to_owned()),
            Rejection::Invalid(why) => {
                tracing::debug!(why, "token refused");
                GatewayError::InvalidToken(path.to_owned())
            }
        };
        if token.len() > crate::tokens::MAX_TOKEN_BYTES {
            return Err(GatewayError::InvalidToken(path.to_owned()));
        }
        // Signature first: a forged or expired token is a 401 even while revocation state is unknown.
        let cached_salt = self.revocations.salt_if_known();
        let (verified, hash, salt, cached) = match cached_salt {
            Some(salt) => {
                let hash = Revocations::hash(&salt, token);
                match self.cache.get(&hash, kind) {
                    Some(v) => {
                        m::handles::TOKEN_CACHE_HIT.increment(1);
                        (v, hash, salt, true)
                    }
                    None => {
                        m::handles::TOKEN_VERIFIED.increment(1);
                        let claims = self.tokens.verify(token, kind).map_err(reject)?;
                        (Verified { user_hash: Revocations::rule_key(&salt, &claims.sub), claims }, hash, salt, false)
                    }
                }
            }
            None => {
                let claims = self.tokens.verify(token, kind).map_err(reject)?;
                let salt = self.revocations.salt().await?;
                (Verified { user_hash: Revocations::rule_key(&salt, &claims.sub), claims }, Revocations::hash(&salt, token), salt, false)
            }
        };
        if self.revocations.check(&hash, &verified, kind, &salt).await? {
            return Err(GatewayError::InvalidToken(path.to_owned()));
        }
        let claims = if cached {
            verified.claims
        } else {
            let claims = verified.claims.clone();
            self.cache.insert(hash.clone(), kind, verified);
            claims
        };
        Ok((claims, hash))
    }

    /// Checks a password through the provider, behind the failed-login limits.
    pub async fn check_password(&self, user: &str, password: &str, addr: IpAddr, path: &str) -> Result<(), GatewayError> {
        if let Err(wait) = self.limiter.check(user, addr) {
            metrics::counter!(m::LOGINS_TOTAL, "result" => "rate_limited").increment(1);
            return Err(GatewayError::TooManyAttempts(wait));
        }
        match self.provider.authenticate(user, password).await {
            Ok(()) => {
                self.limiter.succeeded(user, addr);
                metrics::counter!(m::LOGINS_TOTAL, "result" => "success").increment(1);
                Ok(())
            }
            Err(AuthFailure::BadCredentials) => {
                self.limiter.failed(user, addr);
                metrics::counter!(m::LOGINS_TOTAL, "result" => "bad_credentials").increment(1);
                tracing::info!(user, client = %addr, "login failed: bad credentials");
                Err(GatewayError::InvalidCredentials(path.to_owned()))
            }
            Err(AuthFailure::Unavailable(reason)) => {
                metrics::counter!(m::LOGINS_TOTAL, "result" => "provider_unavailable").increment(1);
                Err(GatewayError::AuthServiceUnavailable { url: path.to_owned(), reason })
            }
        }
    }

    /// The authenticated caller: basic auth, or a login token in the cookie or as Bearer.
    pub async fn caller(&self, headers: &HeaderMap, addr: IpAddr, path: &str) -> Result<String, GatewayError> {
        if let Some((user, password)) = basic_credentials(headers) {
            self.check_password(&user, &password, addr, path).await?;
            return Ok(user);
        }
        match login_token(headers) {
            Some(token) => Ok(self.verify(&token, Kind::Login, path).await?.0.sub),
            None => Err(GatewayError::TokenNotProvided(path.to_owned())),
        }
    }

    /// Whether `user` is an admin (configured, or by the provider's records).
    pub fn is_admin(&self, user: &str) -> bool {
        self.admins.contains(&user.to_lowercase()) || self.provider.is_admin(user)
    }
}

/// `Authorization: Basic` credentials, if well-formed.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    (!user.is_empty()).then(|| (user.to_owned(), password.to_owned()))
}

/// A cookie's value.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(axum::http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.trim_matches('"').to_owned())
    })
}

/// `Authorization: Bearer` token.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !rest.trim().is_empty()).then(|| rest.trim().to_owned())
}

/// A login token: the cookie first, then Bearer (Zowe's order).
pub fn login_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, AUTH_COOKIE).or_else(|| bearer(headers))
}
