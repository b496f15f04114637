//! The `zosmf` provider: z/OSMF decides, as in Zowe. A POST with basic auth to its
//! authenticate endpoint: 2xx is a valid password, 401 a bad one, anything else (or no answer
//! within the timeout) means z/OSMF is unavailable, which is a 503, never a 401.
//!
//! A password change is z/OSMF's own service on the same endpoint, as Zowe's gateway and Zowe
//! CLI call it: a PUT of `{"userID","oldPwd","newPwd"}` without basic auth (the old password
//! is in the body, and it may have expired). See [`change_outcome`] for how answers are read.

use std::time::Duration;

use async_trait::async_trait;
use plexgate_config::{Config, ZosmfConfig, tls};
use reqwest::StatusCode;

use super::{AuthFailure, AuthProvider, ChangeFailure, check_new_password};

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

    async fn change_password(&self, user: &str, old: &str, new: &str) -> Result<(), ChangeFailure> {
        check_new_password(old, new)?;
        let body = serde_json::json!({"userID": user, "oldPwd": old, "newPwd": new});
        let resp = self.client.put(&self.url).header("X-CSRF-ZOSMF-HEADER", "true").json(&body).send().await;
        match resp {
            Ok(r) => {
                let status = r.status();
                // The body matters only for a 5xx; a failure to read it leaves it empty.
                let body = if status.is_server_error() { r.bytes().await.unwrap_or_default() } else { Default::default() };
                change_outcome(status, &body)
            }
            Err(e) if e.is_timeout() => Err(AuthFailure::Unavailable("z/OSMF did not answer in time".to_owned()).into()),
            // reqwest's errors name the URL, never the request body.
            Err(e) => Err(AuthFailure::Unavailable(format!("cannot reach z/OSMF: {e}")).into()),
        }
    }

    fn is_admin(&self, _user: &str) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "zosmf"
    }
}

/// What z/OSMF's answer to a password change means, as Zowe's gateway reads it: 2xx is done;
/// 401 is a wrong user or old password; 404 and 405 mean this z/OSMF has no such service
/// (unavailable, not the user's fault); any other 4xx is a refusal (the new password breaks a
/// rule of the security product); a 5xx is a refusal when its z/OSMF body carries a
/// `returnCode` other than 4 (z/OSMF reports some refusals so), and otherwise z/OSMF is broken.
fn change_outcome(status: StatusCode, body: &[u8]) -> Result<(), ChangeFailure> {
    let code = status.as_u16();
    match status {
        s if s.is_success() => Ok(()),
        StatusCode::UNAUTHORIZED => Err(AuthFailure::BadCredentials.into()),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
            Err(AuthFailure::Unavailable(format!("z/OSMF has no password change service (HTTP {code})")).into())
        }
        s if s.is_client_error() => Err(ChangeFailure::Refused(format!("z/OSMF refused the change with HTTP {code}"))),
        s if s.is_server_error() => {
            let return_code = serde_json::from_slice::<serde_json::Value>(body).ok().and_then(|v| v["returnCode"].as_i64());
            match return_code {
                Some(rc) if rc != 4 => Err(ChangeFailure::Refused(format!("z/OSMF refused the change with HTTP {code}, returnCode {rc}"))),
                _ => Err(AuthFailure::Unavailable(format!("z/OSMF answered HTTP {code}")).into()),
            }
        }
        _ => Err(AuthFailure::Unavailable(format!("z/OSMF answered HTTP {code}")).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_answers_are_read_as_zowe_reads_them() {
        let unavailable = |r: Result<(), ChangeFailure>| matches!(r, Err(ChangeFailure::Auth(AuthFailure::Unavailable(_))));
        let refused = |r: Result<(), ChangeFailure>| matches!(r, Err(ChangeFailure::Refused(_)));
        assert_eq!(change_outcome(StatusCode::OK, b""), Ok(()));
        assert_eq!(change_outcome(StatusCode::NO_CONTENT, b""), Ok(()));
        assert_eq!(change_outcome(StatusCode::UNAUTHORIZED, b""), Err(ChangeFailure::Auth(AuthFailure::BadCredentials)));
        assert!(refused(change_outcome(StatusCode::FORBIDDEN, b"")));
        assert!(refused(change_outcome(StatusCode::BAD_REQUEST, b"")));
        assert!(unavailable(change_outcome(StatusCode::NOT_FOUND, b"")));
        assert!(unavailable(change_outcome(StatusCode::METHOD_NOT_ALLOWED, b"")));
        assert!(refused(change_outcome(StatusCode::INTERNAL_SERVER_ERROR, br#"{"returnCode":8,"reasonCode":2}"#)));
        assert!(unavailable(change_outcome(StatusCode::INTERNAL_SERVER_ERROR, br#"{"returnCode":4,"reasonCode":0}"#)));
        assert!(unavailable(change_outcome(StatusCode::SERVICE_UNAVAILABLE, b"<html>proxy error</html>")));
        assert!(unavailable(change_outcome(StatusCode::FOUND, b"")));
    }
}
