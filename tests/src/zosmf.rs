//! The z/OSMF stand-in (`tests/fixtures/zosmf_upstream.py`, Python standard library only) as a
//! child process, and gateways of a [`Cluster`] pointed at it with the `zosmf` provider.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::assert_eventually;
use crate::cluster::Cluster;
use crate::process::Proc;

/// Whether `python3` runs; see [`crate::python3_available`].
pub fn python3_available() -> bool {
    crate::python3_available("the z/OSMF provider tests")
}

/// How to start the stand-in.
#[derive(Default)]
pub struct ZosmfSetup<'a> {
    /// Its port (0: any free one).
    pub port: u16,
    /// Accept connections and never answer.
    pub hang: bool,
    /// The one user and password it knows, instead of the fixture's default.
    pub user: Option<(&'a str, &'a str)>,
}

/// The stand-in z/OSMF as a child process.
pub struct Zosmf {
    /// The process.
    pub proc: Proc,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl Zosmf {
    /// Starts it with the cluster's server certificate and waits until it listens.
    pub fn start(c: &Cluster, name: &str, setup: ZosmfSetup<'_>) -> Zosmf {
        let (cert, key) = c.ws.server_identity();
        let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/zosmf_upstream.py");
        let mut cmd = Command::new("python3");
        cmd.arg("-u").arg(fixture).arg("--cert").arg(cert).arg("--key").arg(key).arg("--port").arg(setup.port.to_string());
        if setup.hang {
            cmd.arg("--hang");
        }
        if let Some((user, password)) = setup.user {
            cmd.arg("--user").arg(user).arg("--password").arg(password);
        }
        let proc = Proc::spawn(name, cmd, &c.ws.path().join(format!("{name}.log")));
        assert_eventually!(Duration::from_secs(10), proc.logs().contains("listening on 127.0.0.1:"), "{name} listening\n{}", proc.logs());
        let logs = proc.logs();
        let port =
            logs.split("listening on 127.0.0.1:").nth(1).and_then(|r| r.lines().next()).and_then(|p| p.trim().parse().ok()).expect("port");
        Zosmf { proc, port }
    }
}

/// Starts gateway `i` of `c` with the `zosmf` provider pointed at `port` (environment
/// overrides of the cluster's zowe.yaml) plus `env`, and waits until it is UP.
pub fn start_gateway(c: &mut Cluster, i: usize, port: u16, timeout: Duration, env: &[(&str, &str)]) {
    let (port, timeout) = (port.to_string(), format!("{}ms", timeout.as_millis()));
    let mut all = vec![
        ("PLEXGATE__COMPONENTS__GATEWAY__APIML__SECURITY__AUTH__PROVIDER", "zosmf"),
        ("PLEXGATE__ZOSMF__HOST", "127.0.0.1"),
        ("PLEXGATE__ZOSMF__PORT", port.as_str()),
        ("PLEXGATE__ZOSMF__TIMEOUT", timeout.as_str()),
    ];
    all.extend_from_slice(env);
    c.start_gateway_with(i, &all);
}
