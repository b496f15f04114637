//! `drills`: runs the HA drills (`tests/drills.rs`) and renders their figures as Markdown.
//!
//! ```sh
//! cargo run --release -p plexgate-tests --bin drills -- --report [FILTER...]
//! ```
//!
//! It builds the `plexgate` binary with the same profile as itself, runs `cargo test --test
//! drills` with `PLEXGATE_DRILL_REPORT` naming a scratch file (each drill appends one JSON line
//! to it before asserting its bound), and prints the tables; with `--report` it also writes them
//! to `docs/ha-drills.md`, with the machine, the build and the commit noted. It exits with the
//! test run's status, after writing the report either way (a failed drill shows as FAILED).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use serde_json::Value;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: drills [--report] [FILTER...]\n  runs the HA drills; --report writes docs/ha-drills.md");
        return ExitCode::SUCCESS;
    }
    let write = args.iter().any(|a| a == "--report");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let release = !cfg!(debug_assertions);
    let profile: &[&str] = if release { &["--release"] } else { &[] };

    let loadavg_start = loadavg();
    let status = Command::new(&cargo).current_dir(&root).args(["build", "-p", "plexgate", "--bin", "plexgate"]).args(profile).status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("drills: building plexgate failed");
        return ExitCode::FAILURE;
    }
    let jsonl = std::env::temp_dir().join(format!("plexgate-drills-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&jsonl);
    let mut test = Command::new(&cargo);
    test.current_dir(&root).args(["test", "-p", "plexgate-tests", "--test", "drills"]).args(profile).arg("--");
    test.args(&filters).env("PLEXGATE_DRILL_REPORT", &jsonl).stdout(Stdio::piped());
    let mut child = match test.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("drills: cannot run cargo test: {e}");
            return ExitCode::FAILURE;
        }
    };
    // libtest's own lines tell which drills passed; everything is passed through.
    let mut results = BTreeMap::new();
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines().map_while(Result::ok) {
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test ")
            && let Some((name, result)) = rest.split_once(" ... ")
        {
            results.insert(drill_id(name), result.trim().to_owned());
        }
    }
    let passed = child.wait().is_ok_and(|s| s.success());
    let reports: Vec<Value> =
        std::fs::read_to_string(&jsonl).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let _ = std::fs::remove_file(&jsonl);
    let md = render(&reports, &results, release, &loadavg_start, &root);
    println!("\n{md}");
    if write {
        let path = root.join("docs/ha-drills.md");
        if let Err(e) = std::fs::create_dir_all(root.join("docs")).and_then(|_| std::fs::write(&path, &md)) {
            eprintln!("drills: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("drills: wrote {}", path.display());
    }
    if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// `drill_1_rolling_restart...` -> `drill_1`.
fn drill_id(test: &str) -> String {
    test.split('_').take(2).collect::<Vec<_>>().join("_")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn output(cmd: &mut Command) -> String {
    cmd.output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
}

/// CPUs, model, memory and kernel of this machine.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).and_then(|l| l.split_once(':')).map(|(_, m)| m.trim()).unwrap_or("?");
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs ({model}), {:.1} GiB RAM, Linux {}", mem_kib as f64 / 1024.0 / 1024.0, kernel.trim())
}

fn ms(v: &Value) -> String {
    v.as_f64().map(|m| if m >= 1000.0 { format!("{:.2} s", m / 1000.0) } else { format!("{m:.1} ms") }).unwrap_or_else(|| "-".to_owned())
}

fn latency(v: &Value) -> String {
    if v["n"].as_u64().unwrap_or(0) == 0 {
        return "-".to_owned();
    }
    format!("{} / {} / {}", ms(&v["p50_ms"]), ms(&v["p99_ms"]), ms(&v["max_ms"]))
}

fn causes(v: &Value) -> String {
    let m = v.as_object().map(|o| o.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>()).unwrap_or_default();
    if m.is_empty() { "-".to_owned() } else { m.join("; ") }
}

/// Markdown cells must not break the table.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn render(reports: &[Value], results: &BTreeMap<String, String>, release: bool, loadavg_start: &str, root: &Path) -> String {
    let mut md = String::from("# HA drills\n\n");
    let commit = output(Command::new("git").current_dir(root).args(["rev-parse", "--short", "HEAD"]));
    let dirty = !output(Command::new("git").current_dir(root).args(["status", "--porcelain"])).is_empty();
    let date = output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]));
    let _ = writeln!(
        md,
        "Figures of the latest run of `cargo run --release -p plexgate-tests --bin drills -- --report` (the drills are \
         `tests/tests/drills.rs`; README, \"HA drills\", says how to run them).\n"
    );
    let _ = writeln!(md, "- run: {date}, commit {commit}{}", if dirty { " with uncommitted changes" } else { "" });
    let _ = writeln!(md, "- build: {}", if release { "release" } else { "debug" });
    let _ = writeln!(md, "- machine: {}", machine());
    let _ = writeln!(md, "- load average (1/5/15 min) when the run started: {loadavg_start}");
    md.push_str(
        "- every process is real (distributor, gateways, caching service, sample services, Redis) on loopback or in test \
         network namespaces; the load is open-model (a request every 1/rate s whatever the earlier ones do; latency counted \
         from the intended send time), GETs of `/sample/api/v1/hello` through the distributor with a login token; \
         before / during / after split the run at the fault and at the drill's recovery mark.\n\n",
    );

    md.push_str("## Result\n\n| Drill | What | Bound | Result |\n|---|---|---|---|\n");
    let mut ids: Vec<String> = reports.iter().filter_map(|r| r["test"].as_str().map(str::to_owned)).collect();
    for id in results.keys() {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    ids.sort();
    ids.dedup();
    let find = |id: &str| reports.iter().find(|r| r["test"] == id);
    for id in &ids {
        let r = find(id);
        let result = match (results.get(id).map(String::as_str), r.and_then(|r| r["skipped"].as_str())) {
            (_, Some(why)) => format!("skipped: {why}"),
            (Some("ok"), _) => "passed".to_owned(),
            (Some(other), _) => other.to_owned(),
            (None, _) => "not run".to_owned(),
        };
        let what = r.and_then(|r| r["drill"].as_str()).unwrap_or("(no figures: see the test output)");
        let bound = r.and_then(|r| r["bound"].as_str()).unwrap_or("");
        let _ = writeln!(md, "| {id} | {} | {} | {} |", cell(what), cell(bound), cell(&result));
    }

    md.push_str(
        "\n## Load\n\nLatency p50 / p99 / max. \"Sent twice\": requests the keep-alive client sent once more on a new \
         connection because their pooled connection closed before any answer (what HTTP clients with a connection pool do \
         for idempotent requests; the fresh-connection streams never retry).\n\n\
         | Drill | Stream | Rate | Sent | OK | Failed (by cause) | Sent twice | Before | During | After | Last failed request sent |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for id in &ids {
        let Some(r) = find(id) else { continue };
        for s in r["streams"].as_array().into_iter().flatten() {
            let _ = writeln!(
                md,
                "| {id} | {} ({}) | {}/s | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(s["name"].as_str().unwrap_or("")),
                cell(s["connections"].as_str().unwrap_or("")),
                s["rate"],
                s["sent"],
                s["succeeded"],
                cell(&causes(&s["failed"])),
                cell(&causes(&s["retried"])),
                latency(&s["before"]),
                latency(&s["during"]),
                latency(&s["after"]),
                match s["errors_stopped_after_ms"].as_f64() {
                    None => "no failure".to_owned(),
                    Some(0.0) => "before the fault".to_owned(),
                    Some(_) => format!("{} after the fault", ms(&s["errors_stopped_after_ms"])),
                },
            );
        }
    }

    md.push_str("\n## Figures\n\n| Drill | Figure | Value |\n|---|---|---|\n");
    for id in &ids {
        let Some(r) = find(id) else { continue };
        for f in r["figures"].as_array().into_iter().flatten() {
            let _ = writeln!(md, "| {id} | {} | {} |", cell(f[0].as_str().unwrap_or("")), cell(f[1].as_str().unwrap_or("")));
        }
    }
    md
}
