//! Zowe CLI (`@zowe/cli` from npm), the real client: `.ci/run` installs it into `.ci/node`;
//! elsewhere tests find it there or at `$ZOWE_CLI_BIN`, and say so when they skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The `zowe` executable; `None` (and a line saying so) when absent outside CI. Under
/// `CI=true` its absence fails the test.
pub fn bin() -> Option<PathBuf> {
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

/// Runs `zowe args...` with its own home directory: (exit code, stdout, stderr).
pub fn run(bin: &Path, home: &Path, args: &[&str]) -> (i32, String, String) {
    std::fs::create_dir_all(home).expect("Zowe CLI home");
    let out =
        Command::new(bin).args(args).env("ZOWE_CLI_HOME", home).env("FORCE_COLOR", "0").stdin(Stdio::null()).output().expect("run zowe");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `zowe auth login apiml --show-token` against `127.0.0.1:port`: the token it printed.
pub fn login(bin: &Path, home: &Path, port: u16, user: &str, password: &str) -> String {
    let port = port.to_string();
    let (code, out, err) = run(
        bin,
        home,
        &[
            "auth",
            "login",
            "apiml",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--user",
            user,
            "--password",
            password,
            "--reject-unauthorized",
            "false",
            "--show-token",
        ],
    );
    assert_eq!(code, 0, "zowe auth login apiml\n{out}\n{err}");
    assert!(out.contains("Login successful"), "{out}");
    out.lines().map(str::trim).find(|l| l.starts_with("eyJ")).expect("the token is printed").to_owned()
}
