//! Zowe's Node.js onboarding enabler (`@zowe/apiml-onboarding-enabler-nodejs` from npm,
//! unchanged) and the small service of `tests/node/` built on it: `.ci/run` installs the
//! enabler into `.ci/node`; elsewhere tests find it there or at `$APIML_ENABLER_NODEJS` (its
//! `src/index.js`), and `node` on the PATH or at `$NODE_BIN`. Missing: a failure under
//! `CI=true`, a skip with a line saying so elsewhere (as for Zowe CLI).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Workspace;
use crate::process::Proc;

/// `(node, the enabler's src/index.js)`; `None` (and a line saying so) when either is
/// missing outside CI. Under `CI=true` their absence fails the test.
pub fn enabler() -> Option<(PathBuf, PathBuf)> {
    let node = std::env::var_os("NODE_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("node"));
    let node_ok = Command::new(&node).arg("--version").output().is_ok_and(|o| o.status.success());
    let index = std::env::var_os("APIML_ENABLER_NODEJS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ci/node/node_modules/@zowe/apiml-onboarding-enabler-nodejs/src/index.js")
    });
    let ci = std::env::var("CI").as_deref() == Ok("true");
    if !node_ok {
        assert!(!ci, "node ({}) not found and CI=true: .ci/run installs Node.js", node.display());
        eprintln!("SKIPPED: node not found (install Node.js, or set NODE_BIN)");
        return None;
    }
    if !index.exists() {
        assert!(!ci, "the Node.js enabler is not at {} and CI=true: .ci/run installs it", index.display());
        eprintln!("SKIPPED: the Node.js enabler is not at {} (run .ci/run, or set APIML_ENABLER_NODEJS)", index.display());
        return None;
    }
    Some((node, index))
}

/// The test service's script (`tests/node/hello-service.mjs`).
pub fn hello_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node/hello-service.mjs")
}

/// How one instance of the Node.js service is configured.
pub struct NodeService {
    /// Its service id (the Eureka app, lower case).
    pub service_id: String,
    /// Its HTTPS port.
    pub port: u16,
    /// Discovery URLs (`https://127.0.0.1:<port>/eureka/apps/`), the first used first.
    pub eureka_urls: Vec<String>,
    /// Heartbeat interval in milliseconds.
    pub heartbeat_ms: u64,
    /// `leaseInfo.renewalIntervalInSecs`.
    pub renewal_secs: u32,
    /// `leaseInfo.durationInSecs`.
    pub lease_secs: u32,
    /// Certificate, key and CA (PEM files).
    pub cert: PathBuf,
    /// See `cert`.
    pub key: PathBuf,
    /// See `cert`.
    pub ca: PathBuf,
}

impl NodeService {
    /// The service's working directory in `ws` (its `config/service-configuration.yml` is there).
    pub fn dir(&self, ws: &Workspace) -> PathBuf {
        ws.path().join(format!("node-{}-{}", self.service_id, self.port))
    }

    /// Writes `config/service-configuration.yml` from `tests/node/service-configuration.yml`.
    pub fn write_config(&self, ws: &Workspace) -> PathBuf {
        let template = include_str!("../node/service-configuration.yml");
        let urls: String = self.eureka_urls.iter().map(|u| format!("      - {u}\n")).collect();
        let text = template
            .replace("{{EUREKA_URLS}}\n", &urls)
            .replace("{{SERVICE_ID}}", &self.service_id)
            .replace("{{PORT}}", &self.port.to_string())
            .replace("{{HEARTBEAT_MS}}", &self.heartbeat_ms.to_string())
            .replace("{{RENEWAL_SECS}}", &self.renewal_secs.to_string())
            .replace("{{LEASE_SECS}}", &self.lease_secs.to_string())
            .replace("{{CERT}}", &self.cert.display().to_string())
            .replace("{{KEY}}", &self.key.display().to_string())
            .replace("{{CA}}", &self.ca.display().to_string());
        assert!(!text.contains("{{"), "a placeholder left:\n{text}");
        let path = self.dir(ws).join("config/service-configuration.yml");
        std::fs::create_dir_all(path.parent().expect("config dir")).expect("mkdir config");
        std::fs::write(&path, text).expect("write service-configuration.yml");
        path
    }

    /// Writes its configuration and starts `node hello-service.mjs <port>` in its directory,
    /// logging to `<name>.log` in the workspace.
    pub fn spawn(&self, ws: &Workspace, node: &Path, enabler: &Path, name: &str) -> Proc {
        self.write_config(ws);
        let mut cmd = Command::new(node);
        cmd.arg(hello_script())
            .arg(self.port.to_string())
            .current_dir(self.dir(ws))
            .env("APIML_ENABLER", enabler)
            .env("SERVICE_ID", &self.service_id)
            .env_remove("NODE_OPTIONS");
        Proc::spawn(name, cmd, &ws.path().join(format!("{name}.log")))
    }
}
