//! `plexgate --help` lists every subcommand, each with help text.
//!
//! (This test also makes `cargo test --workspace` build the `plexgate` binary that the
//! black-box suite in `tests/` runs.)

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_plexgate")).args(args).arg("--help").output().expect("run plexgate");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 help")
}

#[test]
fn every_subcommand_is_listed_with_help() {
    let top = help(&[]);
    for sub in ["config", "init", "users", "caching-service", "gateway", "distributor", "status"] {
        assert!(top.contains(sub), "{sub} missing from:\n{top}");
    }
    assert!(help(&["config"]).contains("validate") && help(&["config"]).contains("show"));
    assert!(help(&["init"]).contains("certificate"));
    assert!(help(&["users"]).contains("add"));
    for leaf in
        [&["config", "validate"][..], &["config", "show"], &["init", "certificate"], &["users", "add"], &["distributor"], &["status"]]
    {
        assert!(help(leaf).contains("--config"), "{leaf:?}");
    }
}
