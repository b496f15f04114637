//! Zowe CLI, unchanged, against plexgate's gateways: `zowe auth login apiml` on one gateway
//! prints a token the other accepts, `zowe auth logout apiml` on the other revokes it.
//!
//! The CLI comes from npm (`@zowe/cli`); `.ci/run` installs it into `.ci/node`. Elsewhere the
//! test runs when it finds it there or at `$ZOWE_CLI_BIN`, and says so when it skips.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use plexgate_tests::assert_eventually;
use plexgate_tests::cluster::{Cluster, ClusterSetup, PASSWORD};

fn zowe_bin() -> Option<PathBuf> {
    let candidate = std::env::var_os("ZOWE_CLI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ci/node/node_modules/.bin/zowe"));
    if candidate.exists() {
        return Some(candidate);
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "Zowe CLI not found at {} and CI=true: .ci/run installs it", candidate.display());
    eprintln!("SKIPPED: Zowe CLI not found at {} (run .ci/run, or set ZOWE_CLI_BIN)", candidate.display());
    None
}

fn zowe(bin: &PathBuf, home: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out =
        Command::new(bin).args(args).env("ZOWE_CLI_HOME", home).env("FORCE_COLOR", "0").stdin(Stdio::null()).output().expect("run zowe");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn zowe_cli_logs_in_and_out_through_plexgate() {
    let Some(bin) = zowe_bin() else { return };
    let c = Cluster::start(ClusterSetup::default());
    let home = c.ws.path().join("zowe-home");
    std::fs::create_dir_all(&home).unwrap();
    let (p1, p2) = (c.ports[0].to_string(), c.ports[1].to_string());
    let (code, out, err) = zowe(
        &bin,
        &home,
        &[
            "auth",
            "login",
            "apiml",
            "--host",
            "127.0.0.1",
            "--port",
            &p1,
            "--user",
            "alice",
            "--password",
            PASSWORD,
            "--reject-unauthorized",
            "false",
            "--show-token",
        ],
    );
    assert_eq!(code, 0, "login\n{out}\n{err}");
    assert!(out.contains("Login successful"), "{out}");
    let token = out.lines().map(str::trim).find(|l| l.starts_with("eyJ")).expect("the token is printed").to_owned();
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
