//! Drill: takeover of the virtual address between two distributor hosts by keepalived, in
//! network namespaces (`plexgate_tests::vip`): hosts a and b each run `plexgate distributor
//! --ha-instance` and keepalived on the file `plexgate distributor keepalived-config` wrote;
//! host g runs the gateway and the caching service; the client in c opens a new TLS
//! connection to the virtual address every ~20 ms. With the address on a: (a) SIGKILL of a's
//! distributor, (b) SIGKILL of a's keepalived, (c) a's link down. Each time the address must
//! move to b and new connections succeed again within the bound; the figures are printed.
//!
//! Needs root (namespaces) and keepalived: under `CI=true` their absence fails the test.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use plexgate_tests::process::Proc;
use plexgate_tests::vip::{self, Lan, Prober};
use plexgate_tests::{Workspace, assert_eventually, plexgate_bin};

/// One drill at a time: each starts seven processes on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

/// VRRP advertisement interval of the drill.
const ADVERT: Duration = Duration::from_secs(1);
/// A backup declares the master dead after 3 advertisements plus its skew time.
fn master_down(priority: u32) -> Duration {
    ADVERT * 3 + ADVERT * (256 - priority) / 256
}

fn keepalived() -> Option<PathBuf> {
    let found = ["/usr/sbin/keepalived", "/sbin/keepalived", "/usr/local/sbin/keepalived"].iter().map(PathBuf::from).find(|p| p.is_file());
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "keepalived is required under CI (Debian package keepalived)");
        eprintln!("SKIPPED: keepalived not installed (Debian package keepalived)");
    }
    found
}

fn lan(tag: &str) -> Option<Lan> {
    match Lan::create(&format!("pgv{}{tag}", std::process::id())) {
        Ok(l) => Some(l),
        Err(why) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "network namespaces are required under CI: {why}");
            eprintln!("SKIPPED: network namespaces cannot be created here: {why}");
            None
        }
    }
}

/// The drill's topology: the LAN, the workspace and every process.
struct Drill {
    // Fields drop in order: the processes (printing their logs on a panic), then the
    // workspace, then the namespaces.
    distributors: [Option<Proc>; 2],
    keepaliveds: [Option<Proc>; 2],
    _gateway: Vec<Proc>,
    ws: Workspace,
    keepalived: PathBuf,
    generation: usize,
    lan: Lan,
}

const HOSTS: [&str; 2] = ["a", "b"];

impl Drill {
    fn start(lan: Lan, keepalived: PathBuf, auto_switch_back: bool) -> Drill {
        let ws = Workspace::new();
        let yaml = format!(
            "zowe:\n  externalDomains: [{vip}]\n  externalPort: 7554\n  workspaceDirectory: workspace\ncomponents:\n  gateway:\n    port: 7554\n    apiml: {{security: {{auth: {{provider: users-file}}}}}}\n    shutdown: {{grace: 1s, timeout: 5s}}\n  caching-service:\n    enabled: false\n    port: 7555\n    storage: {{mode: inMemory}}\n    changeFeed: {{heartbeat: 200ms}}\n  distributor:\n    healthCheck: {{interval: 100ms, timeout: 500ms, unhealthyThreshold: 2, healthyThreshold: 2}}\n    drainTimeout: 2s\n    virtualAddress:\n      address: {vip}/24\n      interface: eth0\n      virtualRouterId: 77\n      advertInterval: 1s\n      autoSwitchBack: {auto_switch_back}\n      check: {{interval: 1s, timeout: 1s, fall: 1, rise: 1}}\nhaInstances:\n  a:\n    hostname: {a}\n    components: {{gateway: {{enabled: false}}, distributor: {{enabled: true}}}}\n  b:\n    hostname: {b}\n    components: {{gateway: {{enabled: false}}, distributor: {{enabled: true}}}}\n  g:\n    hostname: {g}\n    components: {{caching-service: {{enabled: true}}}}\n",
            vip = vip::VIP,
            a = vip::A,
            b = vip::B,
            g = vip::G,
        );
        ws.write("zowe.yaml", &yaml);
        ws.run(&["init", "certificate", "-c", "zowe.yaml"], "").expect_code(0);
        let run_in = |ns: &str, name: &str, args: &[&str]| {
            let mut c = lan.ns(ns).command(&plexgate_bin());
            c.args(args).current_dir(ws.path());
            Proc::spawn(name, c, &ws.path().join(format!("{name}.log")))
        };
        let gateway = vec![
            run_in("g", "caching-service", &["caching-service", "-c", "zowe.yaml", "--ha-instance", "g"]),
            run_in("g", "gateway", &["gateway", "-c", "zowe.yaml", "--ha-instance", "g"]),
        ];
        let mut d = Drill { ws, keepalived, distributors: [None, None], keepaliveds: [None, None], generation: 0, _gateway: gateway, lan };
        for (i, h) in HOSTS.iter().enumerate() {
            let conf = d.ws.path().join(format!("keepalived-{h}.conf"));
            d.ws.run(
                &["distributor", "keepalived-config", "-c", "zowe.yaml", "--ha-instance", h, "--output", &conf.display().to_string()],
                "",
            )
            .expect_code(0);
            d.start_distributor(i);
        }
        // The preferred host's keepalived first, so it is the first master either way.
        d.start_keepalived(0);
        assert_eventually!(Duration::from_secs(60), d.lan.holds("a"), "a holds the virtual address");
        d.start_keepalived(1);
        assert_eventually!(Duration::from_secs(30), d.state("b").as_deref() == Some("BACKUP"), "b is BACKUP: {:?}", d.state("b"));
        d
    }

    fn start_distributor(&mut self, i: usize) {
        self.generation += 1;
        let name = format!("distributor-{}.{}", HOSTS[i], self.generation);
        let mut c = self.lan.ns(HOSTS[i]).command(&plexgate_bin());
        c.args(["distributor", "-c", "zowe.yaml", "--ha-instance", HOSTS[i]]).current_dir(self.ws.path());
        self.distributors[i] = Some(Proc::spawn(&name, c, &self.ws.path().join(format!("{name}.log"))));
    }

    fn start_keepalived(&mut self, i: usize) {
        self.generation += 1;
        let h = HOSTS[i];
        let name = format!("keepalived-{h}.{}", self.generation);
        let dir = self.ws.path().join("workspace/keepalived").join(h);
        std::fs::create_dir_all(&dir).expect("keepalived dir");
        let mut c = self.lan.ns(h).command(&self.keepalived);
        c.args(["--dont-fork", "--log-console", "--no-syslog", "--vrrp", "--use-file"])
            .arg(self.ws.path().join(format!("keepalived-{h}.conf")))
            .arg("--pid")
            .arg(dir.join("keepalived.pid"))
            .arg("--vrrp_pid")
            .arg(dir.join("vrrp.pid"))
            .current_dir(self.ws.path());
        self.keepaliveds[i] = Some(Proc::spawn(&name, c, &self.ws.path().join(format!("{name}.log"))));
    }

    /// SIGKILL of keepalived's parent and its VRRP child at once (a clean stop would hand the
    /// address over; a crash does not).
    fn kill_keepalived(&mut self, i: usize) {
        let vrrp = std::fs::read_to_string(self.ws.path().join("workspace/keepalived").join(HOSTS[i]).join("vrrp.pid")).unwrap_or_default();
        let parent = self.keepaliveds[i].as_ref().map(|p| p.pid().to_string()).unwrap_or_default();
        let _ = Command::new("kill").args(["-KILL", vrrp.trim(), &parent]).status();
        if let Some(mut p) = self.keepaliveds[i].take() {
            p.kill();
        }
    }

    /// The VRRP state `h`'s notify command last recorded.
    fn state(&self, h: &str) -> Option<String> {
        plexgate_tests_state(&self.ws.path().join("workspace/keepalived").join(h).join("state.json"))
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for e in std::fs::read_dir(self.ws.path()).expect("workspace").flatten() {
            if e.file_name().to_string_lossy().ends_with(".log") {
                out.push_str(&format!(
                    "--- {}\n{}\n",
                    e.file_name().to_string_lossy(),
                    std::fs::read_to_string(e.path()).unwrap_or_default()
                ));
            }
        }
        out
    }
}

fn plexgate_tests_state(path: &std::path::Path) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["state"].as_str().map(str::to_owned)
}

/// One fault's figures.
struct Takeover {
    case: &'static str,
    moved: Duration,
    recovered: Duration,
    failed: usize,
    total: usize,
}

/// Injects `fault` with the address on a; waits until b holds it and new connections work.
fn takeover(d: &mut Drill, p: &Prober, case: &'static str, fault: impl FnOnce(&mut Drill)) -> Takeover {
    assert!(d.lan.holds("a") && !d.lan.holds("b"), "{case}: the address is on a before the fault");
    let before = p.now();
    assert_eventually!(
        Duration::from_secs(30),
        p.healthy_since(before, 10),
        "{case}: the client is served before the fault: {:?}",
        p.since(Duration::ZERO).last()
    );
    let t0 = p.now();
    fault(d);
    assert_eventually!(Duration::from_secs(15), d.lan.holds("b"), "{case}: the address moves to b\n{}", d.logs());
    let moved = p.now() - t0;
    assert_eventually!(Duration::from_secs(15), p.healthy_since(t0, 10), "{case}: new connections succeed again on b");
    let probes = p.since(t0);
    // Recovered at the first success after the last failure.
    let last_fail = probes.iter().rposition(|x| !x.ok);
    let recovered = match last_fail {
        Some(i) => probes.get(i + 1).map(|x| x.at - t0).unwrap_or_default(),
        None => Duration::ZERO,
    };
    let failed = probes.iter().filter(|x| !x.ok).count();
    if let Some(e) = probes.iter().find_map(|x| x.error.clone()) {
        eprintln!("{case}: first client error: {e}");
    }
    Takeover { case, moved, recovered, failed, total: probes.len() }
}

fn print(results: &[Takeover]) {
    println!("VIP takeover (advertInterval {ADVERT:?}, check interval 1s fall 1, priorities a 250 / b 240):");
    for r in results {
        println!(
            "  {:<28} address on b after {:>5} ms; new connections succeed again after {:>5} ms; client-visible failures {} of {} probes",
            r.case,
            r.moved.as_millis(),
            r.recovered.as_millis(),
            r.failed,
            r.total
        );
    }
}

#[test]
fn vip_moves_to_the_backup_and_back_with_auto_switch_back() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (Some(k), Some(lan)) = (keepalived(), lan("t")) else { return };
    let mut d = Drill::start(lan, k, true);
    let p = Prober::start(&d.lan.ns("c").path(), &d.ws.path().join("workspace/certificates/ca.pem"), 7554);
    let mut results = Vec::new();
    let back = |d: &mut Drill, case: &str| {
        assert_eventually!(
            Duration::from_secs(20),
            d.lan.holds("a") && !d.lan.holds("b"),
            "{case}: autoSwitchBack returns the address to a\n{}",
            d.logs()
        );
    };

    results.push(takeover(&mut d, &p, "(a) SIGKILL a's distributor", |d| d.distributors[0].take().expect("a's distributor").kill()));
    d.start_distributor(0);
    back(&mut d, "(a)");

    results.push(takeover(&mut d, &p, "(b) SIGKILL a's keepalived", |d| d.kill_keepalived(0)));
    d.start_keepalived(0);
    back(&mut d, "(b)");

    results.push(takeover(&mut d, &p, "(c) a's link down", |d| d.lan.ns("a").ip(&["link", "set", "eth0", "down"]).expect("link down")));
    d.lan.ns("a").ip(&["link", "set", "eth0", "up"]).expect("link up");
    back(&mut d, "(c)");
    let end = p.now();
    assert_eventually!(Duration::from_secs(15), p.healthy_since(end, 10), "served by a again");
    print(&results);

    // (a) is given up by a's check (a priority-0 advertisement: b takes over at once); (b)
    // and (c) are noticed by b only after three missed advertisements and its skew.
    let bound_check = Duration::from_secs(1) + Duration::from_secs(1) + Duration::from_millis(1500);
    let bound_silent = master_down(240) + Duration::from_millis(1500);
    for (r, bound) in results.iter().zip([bound_check, bound_silent, bound_silent]) {
        assert!(r.recovered <= bound, "{}: new connections failed for {:?} (bound {bound:?})", r.case, r.recovered);
        assert!(r.moved <= bound, "{}: the address moved after {:?} (bound {bound:?})", r.case, r.moved);
    }
}

#[test]
fn vip_stays_on_the_backup_without_auto_switch_back() {
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (Some(k), Some(lan)) = (keepalived(), lan("n")) else { return };
    let mut d = Drill::start(lan, k, false);
    let p = Prober::start(&d.lan.ns("c").path(), &d.ws.path().join("workspace/certificates/ca.pem"), 7554);
    let r = takeover(&mut d, &p, "(a) SIGKILL a's distributor", |d| d.distributors[0].take().expect("a's distributor").kill());
    d.start_distributor(0);
    // a's check passes again (rise 1, every second) and a is BACKUP: nopreempt keeps b master.
    assert_eventually!(Duration::from_secs(20), d.state("a").as_deref() == Some("BACKUP"), "a healthy again as BACKUP: {:?}", d.state("a"));
    let settled = p.now();
    assert_eventually!(Duration::from_secs(10), p.since(settled).len() >= 150, "probing while a is healthy");
    assert!(d.lan.holds("b") && !d.lan.holds("a"), "NOAUTOSWITCHBACK: the address stays on b");
    assert!(p.since(settled).iter().all(|x| x.ok), "no failure while the address stays on b");
    let status = d
        .lan
        .ns("b")
        .command(&plexgate_bin())
        .args(["status", "-c", "zowe.yaml", "--ha-instance", "b"])
        .current_dir(d.ws.path())
        .output()
        .expect("status");
    let (out, err) = (String::from_utf8_lossy(&status.stdout), String::from_utf8_lossy(&status.stderr));
    println!("{out}");
    assert!(
        status.status.success() && out.contains("holder: b") && out.contains("b     240"),
        "status shows b holding the address:\n{out}\n{err}"
    );
    print(&[r]);
}
