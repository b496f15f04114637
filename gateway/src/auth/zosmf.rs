//! The `zosmf` provider: z/OSMF decides, as in Zowe. A POST with basic auth to its
//! authenticate endpoint: 2xx is a valid password, 401 a bad one, anything else (or no answer
//! within the timeout) means z/OSMF is unavailable, which is a 503, never a 401.

use std::time::Duration;

use async_trait::async_trait;
use plexgate_config::{Config, ZosmfConfig, tls};

use super::{AuthFailure, AuthProvider};

/// The z/OSMF provider.
pub struct ZosmfProvider {
    client: reqwest::Client,
    url: String,
}

impl ZosmfProvider {
    /// A provider for the configured z/OSMF.
    pub fn new(config: &Config, z: &ZosmfConfig) -> Result<ZosmfProvider, String> {
        let mut tls =
            tls::client_config(&config.gateway.certificates, config.tls, config.verify_certificates).map_err(|e| e.to_string())?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(z.timeout)
            .connect_timeout(z.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| e.to_string())?;
        let host = if z.host.contains(':') { format!("[{}]", z.host) } else { z.host.clone() };
        Ok(ZosmfProvider { client, url: format!("https://{host}:{}{}", z.port, z.auth_path) })
    }
}

#[async_trait]
impl AuthProvider for ZosmfProvider {
    async fn authenticate(&self, user: &str, password: &str) -> Result<(), AuthFailure> {
        let resp = self.client.post(&self.url).basic_auth(user, Some(password)).header("X-CSRF-ZOSMF-HEADER", "true").send().await;
        match resp {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => Err(AuthFailure::BadCredentials),
            Ok(r) => Err(AuthFailure::Unavailable(format!("z/OSMF answered HTTP {}", r.status()))),
            Err(e) if e.is_timeout() => Err(AuthFailure::Unavailable("z/OSMF did not answer in time".to_owned())),
            Err(e) => Err(AuthFailure::Unavailable(format!("cannot reach z/OSMF: {e}"))),
        }
    }

    fn is_admin(&self, _user: &str) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "zosmf"
    }
}
