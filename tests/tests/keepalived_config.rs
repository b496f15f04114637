//! `plexgate distributor keepalived-config` through the real binary: the file for each host,
//! the secret kept out of `config show`, the errors an operator meets; and `plexgate up
//! --ha-instance` refusing to run a distributor host without keepalived.

use plexgate_tests::Workspace;

const ZOWE: &str = "zowe:\n  externalDomains: [10.9.0.100]\n  workspaceDirectory: workspace\ncomponents:\n  gateway:\n    apiml: {security: {auth: {provider: users-file}}}\n  caching-service: {enabled: false, storage: {mode: inMemory}}\n  sample-service: {enabled: false}\n  distributor:\n    admin: {port: 7570}\n    virtualAddress:\n      address: 10.9.0.100/24\n      interface: eth0\n      virtualRouterId: 51\n      autoSwitchBack: false\n      unicastPeers: [10.9.0.11, 10.9.0.12]\n      authentication: {password: s3cr3t}\nhaInstances:\n  a:\n    hostname: 10.9.0.11\n    components: {gateway: {enabled: false}, distributor: {enabled: true}}\n  b:\n    hostname: 10.9.0.12\n    components: {gateway: {enabled: false}, distributor: {enabled: true, virtualAddress: {interface: ens3}}}\n  g:\n    hostname: 10.9.0.21\n    components: {caching-service: {enabled: true}}\n";

#[test]
fn keepalived_config_prints_each_hosts_file() {
    let ws = Workspace::new();
    ws.write("zowe.yaml", ZOWE);
    let a = ws.run(&["distributor", "keepalived-config", "-c", "zowe.yaml", "--ha-instance", "a"], "").expect_code(0).stdout();
    let l: Vec<&str> = a.lines().map(str::trim).collect();
    for want in [
        "state BACKUP",
        "nopreempt",
        "interface eth0",
        "virtual_router_id 51",
        "priority 250",
        "advert_int 1",
        "10.9.0.12",
        "auth_pass s3cr3t",
        "vrrp_version 2",
        "10.9.0.100/24 dev eth0",
    ] {
        assert!(l.contains(&want), "missing `{want}`:\n{a}");
    }
    assert!(!l.contains(&"10.9.0.11"), "a's own address is no peer:\n{a}");
    assert!(a.contains("distributor check --admin 127.0.0.1:7570"), "{a}");
    assert!(
        a.contains(&format!("--state-file {}", ws.path().canonicalize().unwrap().join("workspace/keepalived/a/state.json").display()))
            || a.contains("workspace/keepalived/a/state.json"),
        "{a}"
    );

    let out = ws.path().join("b.conf");
    ws.run(&["distributor", "keepalived-config", "-c", "zowe.yaml", "--ha-instance", "b", "--output", &out.display().to_string()], "")
        .expect_code(0);
    let b = std::fs::read_to_string(&out).unwrap();
    assert!(b.contains("interface ens3") && b.contains("priority 240") && b.contains("10.9.0.11"), "{b}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600, "the file holds the password");

    let show = ws.run(&["config", "show", "-c", "zowe.yaml", "--ha-instance", "a"], "").expect_code(0).stdout();
    assert!(show.contains("virtualAddress") && !show.contains("s3cr3t") && show.contains("********"), "{show}");

    let g = ws.run(&["distributor", "keepalived-config", "-c", "zowe.yaml", "--ha-instance", "g"], "");
    assert_ne!(g.code(), 0);
    assert!(g.stderr().contains("haInstance g is no distributor host") && g.stderr().contains("a, b"), "{}", g.stderr());

    let bad = ws.write("bad.yaml", &ZOWE.replace("virtualRouterId: 51", "virtualRouterId: 300"));
    let r = ws.run(&["distributor", "keepalived-config", "-c", &bad.display().to_string(), "--ha-instance", "a"], "").expect_code(2);
    assert!(
        r.stderr().contains("components.distributor.virtualAddress.virtualRouterId") && r.stderr().contains("1 to 255"),
        "{}",
        r.stderr()
    );
}

#[test]
fn check_fails_without_a_distributor_and_notify_writes_the_state_file() {
    let ws = Workspace::new();
    // Nothing listens on this port: the check must fail, fast.
    let port = plexgate_tests::free_port();
    let r = ws.run(&["distributor", "check", "--admin", &format!("127.0.0.1:{port}"), "--timeout", "300ms"], "");
    assert_eq!(r.code(), 1, "{}{}", r.stdout(), r.stderr());
    assert!(r.stdout().contains("cannot connect"), "{}", r.stdout());
    let state = ws.path().join("state.json");
    ws.run(
        &[
            "distributor",
            "keepalived-notify",
            "--ha-instance",
            "a",
            "--state-file",
            &state.display().to_string(),
            "INSTANCE",
            "plexgate_vip_51",
            "MASTER",
            "250",
        ],
        "",
    )
    .expect_code(0);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!((v["haInstance"].as_str(), v["state"].as_str(), v["priority"].as_u64()), (Some("a"), Some("MASTER"), Some(250)));
}

#[test]
fn up_on_a_distributor_host_without_keepalived_names_the_package() {
    let ws = Workspace::new();
    ws.write("zowe.yaml", ZOWE);
    let r = ws.run(&["up", "-c", "zowe.yaml"], "");
    assert_ne!(r.code(), 0);
    assert!(r.stderr().contains("run `plexgate up --ha-instance ID` on each host"), "{}", r.stderr());
    let mut c = ws.plexgate(&["up", "-c", "zowe.yaml", "--ha-instance", "a"]);
    let out = c.env("PLEXGATE_KEEPALIVED", ws.path().join("no-keepalived-here")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("Debian package `keepalived`"), "{err}");
}
