//! `plexgate up`: the whole HA system from one command, as an operator runs it.

use std::process::Command;
use std::time::{Duration, Instant};

use plexgate_tests::{Workspace, assert_eventually, free_port};

/// The example configuration with every port moved to a free one.
fn config(ws: &Workspace) -> (u16, String) {
    let d = free_port();
    let text = include_str!("../../examples/zowe.yaml")
        .replace("externalPort: 7554", &format!("externalPort: {d}"))
        .replace("port: 7560", &format!("port: {}", free_port()))
        .replace("port: 17554", &format!("port: {}", free_port()))
        .replace("port: 27554", &format!("port: {}", free_port()))
        .replace("port: 7555", &format!("port: {}", free_port()))
        .replace("port: 27555", &format!("port: {}", free_port()))
        .replace("port: 37555", &format!("port: {}", free_port()))
        .replace("port: 7553", &format!("port: {}", free_port()))
        .replace("port: 27553", &format!("port: {}", free_port()))
        .replace("ports: [17601, 17602]", &format!("ports: [{}, {}]", free_port(), free_port()))
        // Quick stops, so the test does not wait for production drain times.
        .replace("    method: hotStandby\n", "    method: hotStandby\n    drainTimeout: 2s\n")
        .replace("  gateway:\n    enabled: true\n", "  gateway:\n    enabled: true\n    shutdown: {grace: 300ms, timeout: 5s}\n");
    ws.write("zowe.yaml", &text);
    (d, text)
}

fn children(pid: u32) -> Vec<u32> {
    let out = Command::new("pgrep").args(["-P", &pid.to_string()]).output().expect("pgrep");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

#[test]
fn up_runs_everything_serves_logins_and_routes_through_the_distributor_and_stops_cleanly() {
    let ws = Workspace::new();
    let (port, _) = config(&ws);
    let start = Instant::now();
    let mut up = ws.spawn("up", &["up", "-c", "zowe.yaml"]);
    // The password line comes first; wait for the banner that follows it, so both are in the log.
    assert_eventually!(Duration::from_secs(30), up.logs().contains("northbound URL: "), "demo user created, banner printed\n{}", up.logs());
    let logs = up.logs();
    let password = logs.split("with password: ").nth(1).unwrap().lines().next().unwrap().trim().to_owned();
    assert!(logs.contains(&format!("northbound URL: https://127.0.0.1:{port}")), "{logs}");
    let http = plexgate_tests::https::client(&ws.ca(), None);
    // Both discovery endpoints are announced and answer.
    let discovery: Vec<String> = logs
        .lines()
        .filter_map(|l| l.split("discovery (Eureka): ").nth(1))
        .map(|u| u.trim().trim_end_matches("eureka/").to_owned())
        .collect();
    assert_eq!(discovery.len(), 2, "one discovery URL per enabled haInstance\n{logs}");
    for base in &discovery {
        assert_eventually!(
            Duration::from_secs(30),
            http.get(format!("{base}application/health")).send().is_ok_and(|r| r.status() == 200),
            "discovery {base} UP\n{}",
            up.logs()
        );
    }
    let login = format!("https://127.0.0.1:{port}/gateway/api/v1/auth/login");
    let mut token: Option<String>;
    assert_eventually!(
        Duration::from_secs(60),
        {
            token = http
                .post(&login)
                .basic_auth("demo", Some(&password))
                .send()
                .ok()
                .filter(|r| r.status() == 204)
                .and_then(|r| plexgate_tests::cluster::token_from(&r));
            token.is_some()
        },
        "login through the distributor\n{}",
        up.logs()
    );
    let ready = start.elapsed();
    println!("plexgate up (debug build): first successful login through the distributor after {ready:?}");
    let token = token.unwrap();
    // The sample instances and the gateways' revocation views may still be starting.
    let mut hello: serde_json::Value;
    assert_eventually!(
        Duration::from_secs(30),
        {
            hello = http
                .get(format!("https://127.0.0.1:{port}/sample/api/v1/hello"))
                .bearer_auth(&token)
                .send()
                .ok()
                .filter(|r| r.status() == 200)
                .and_then(|r| r.json().ok())
                .unwrap_or_default();
            hello["user"] == "demo"
        },
        "hello through the distributor\n{}",
        up.logs()
    );
    assert!(hello["instance"].as_str().unwrap().starts_with("sample-"), "{hello}");
    // Zowe CLI, as the banner tells: `zowe auth login apiml` through the distributor, and a
    // routed request with the token it printed.
    if let Some(zowe) = plexgate_tests::zowe_cli::bin() {
        let cli_token = plexgate_tests::zowe_cli::login(&zowe, &ws.path().join("zowe-home"), port, "demo", &password);
        let r = http.get(format!("https://127.0.0.1:{port}/sample/api/v1/hello")).bearer_auth(&cli_token).send().unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<serde_json::Value>().unwrap()["user"], "demo");
    }
    // The child processes, each with its name in front of its log lines.
    let names = [
        "[caching-service-lpar1]",
        "[caching-service-lpar2]",
        "[caching-service-lpar3]",
        "[gateway-lpar1]",
        "[gateway-lpar2]",
        "[sample-1]",
        "[discovery-lpar1]",
        "[discovery-lpar2]",
        "[distributor]",
    ];
    assert_eventually!(
        Duration::from_secs(20),
        children(up.pid()).len() == 10 && names.iter().all(|n| up.logs().contains(n)),
        "3 caching-service replicas, 2 sample instances, 2 gateways, 2 discovery endpoints, distributor, each named in the log: {:?}\n{}",
        children(up.pid()),
        up.logs()
    );
    let kids = children(up.pid());
    // A crashed child is restarted.
    let gateway = kids
        .iter()
        .copied()
        .find(|k| {
            // Caching service lpar2 names lpar2 too: the gateway's command line says `gateway`.
            let cmd = std::fs::read_to_string(format!("/proc/{k}/cmdline")).unwrap_or_default();
            cmd.contains("gateway") && cmd.contains("lpar2")
        })
        .expect("gateway lpar2");
    Command::new("kill").args(["-KILL", &gateway.to_string()]).status().unwrap();
    assert_eventually!(
        Duration::from_secs(20),
        up.logs().contains("[gateway-lpar2] exited") && children(up.pid()).len() == 10,
        "gateway restarted\n{}",
        up.logs()
    );
    // kill -9 of any one caching service: the README's login and a routed call keep working
    // at once, and a logout is still recorded (by the two replicas left).
    for victim in ["lpar1", "lpar3"] {
        let cs = children(up.pid())
            .into_iter()
            .find(|k| {
                let cmd = std::fs::read_to_string(format!("/proc/{k}/cmdline")).unwrap_or_default();
                cmd.contains("caching-service") && cmd.contains(victim)
            })
            .expect("caching service");
        Command::new("kill").args(["-KILL", &cs.to_string()]).status().unwrap();
        let r = http.post(&login).basic_auth("demo", Some(&password)).send().unwrap();
        assert_eq!(r.status(), 204, "login right after kill -9 of caching service {victim}");
        let t = plexgate_tests::cluster::token_from(&r).unwrap();
        let hello = http.get(format!("https://127.0.0.1:{port}/sample/api/v1/hello")).bearer_auth(&t).send().unwrap();
        assert_eq!(hello.status(), 200, "routed call right after kill -9 of caching service {victim}\n{}", up.logs());
        let logout = format!("https://127.0.0.1:{port}/gateway/api/v1/auth/logout");
        let out = http.post(&logout).header("Cookie", format!("apimlAuthenticationToken={t}")).send().unwrap();
        assert_eq!(out.status(), 204, "logout with one caching service down\n{}", up.logs());
        assert_eventually!(
            Duration::from_secs(30),
            up.logs().contains(&format!("[caching-service-{victim}] exited")) && children(up.pid()).len() == 10,
            "caching service {victim} restarted\n{}",
            up.logs()
        );
    }
    // Ctrl-C (SIGINT) stops everything, and no child survives.
    let kids = children(up.pid());
    let stopping = Instant::now();
    up.signal("INT");
    assert_eq!(up.wait_exit(Duration::from_secs(60)), Some(0), "{}", up.logs());
    for k in kids {
        assert!(!alive(k), "child {k} survived");
    }
    assert!(up.logs().contains("[up] all processes stopped"));
    // In order: the distributor first (no new connections), then the gateways, the sample
    // service, and the caching service last (the gateways need it while they drain).
    let logs = up.logs();
    let at = |name: &str| logs.find(&format!("[up] {name} stopped")).unwrap_or_else(|| panic!("{name} stopped\n{logs}"));
    let order = ["distributor", "gateway-lpar1", "sample-1", "caching-service-lpar1"].map(at);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "stop order {order:?}\n{logs}");
    assert!(at("distributor") < at("gateway-lpar2") && at("gateway-lpar2") < at("caching-service-lpar1"), "{logs}");
    println!("plexgate up stopped everything in {:?}", stopping.elapsed());
    // A second start reuses the workspace: no new user, the same password works.
    let mut again = ws.spawn("up-again", &["up", "-c", "zowe.yaml"]);
    assert_eventually!(
        Duration::from_secs(60),
        http.post(&login).basic_auth("demo", Some(&password)).send().is_ok_and(|r| r.status() == 204),
        "login after restart\n{}",
        again.logs()
    );
    assert!(!again.logs().contains("with password"), "no second demo user");
    again.signal("TERM");
    assert_eq!(again.wait_exit(Duration::from_secs(60)), Some(0));
}
