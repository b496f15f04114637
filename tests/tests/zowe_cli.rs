//! Zowe CLI, unchanged, against plexgate's gateways: `zowe auth login apiml` on one gateway
//! prints a token the other accepts, `zowe auth logout apiml` on the other revokes it.
//!
//! The CLI comes from npm (`@zowe/cli`); see `plexgate_tests::zowe_cli`. `plexgate up` with
//! Zowe CLI through the distributor is in `up.rs`.

use std::time::Duration;

use plexgate_tests::assert_eventually;
use plexgate_tests::cluster::{Cluster, ClusterSetup, PASSWORD};
use plexgate_tests::zowe_cli::{bin as zowe_bin, login, run as zowe};

#[test]
fn zowe_cli_logs_in_and_out_through_plexgate() {
    let Some(bin) = zowe_bin() else { return };
    let c = Cluster::start(ClusterSetup::default());
    let home = c.ws.path().join("zowe-home");
    let token = login(&bin, &home, c.ports[0], "alice", PASSWORD);
    let p2 = c.ports[1].to_string();
    assert_eq!(c.query(1, &token).status(), 200, "the CLI's token works on the other gateway");
    let (code, out, err) = zowe(
        &bin,
        &home,
        &[
            "auth",
            "logout",
            "apiml",
            "--host",
            "127.0.0.1",
            "--port",
            &p2,
            "--token-type",
            "apimlAuthenticationToken",
            "--token-value",
            &token,
            "--reject-unauthorized",
            "false",
        ],
    );
    assert_eq!(code, 0, "logout\n{out}\n{err}");
    assert!(out.contains("Logout successful"), "{out}");
    assert_eventually!(Duration::from_secs(1), c.query(0, &token).status() == 401, "the token is rejected after the CLI's logout");
}
