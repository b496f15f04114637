//! The generated keepalived.conf, line by line where it matters.

use std::net::IpAddr;
use std::time::Duration;

use plexgate_config::model::Secret;
use plexgate_config::{VirtualAddressCheck, VirtualAddressConfig, VirtualAddressHost};

use super::*;

fn vip(auto_switch_back: bool) -> VirtualAddressConfig {
    VirtualAddressConfig {
        address: "10.9.0.100".parse().unwrap(),
        prefix: 24,
        interface: "eth0".to_owned(),
        virtual_router_id: 51,
        advert_interval: Duration::from_secs(1),
        auto_switch_back,
        unicast_peers: Vec::new(),
        password: None,
        check: VirtualAddressCheck { interval: Duration::from_secs(1), timeout: Duration::from_secs(1), fall: 1, rise: 1 },
        hosts: vec![
            VirtualAddressHost { instance: "a".to_owned(), priority: 250 },
            VirtualAddressHost { instance: "b".to_owned(), priority: 240 },
        ],
    }
}

fn inputs(instance: &str) -> Inputs {
    Inputs {
        instance: instance.to_owned(),
        source: "/etc/zowe/zowe.yaml".to_owned(),
        plexgate: "/usr/local/bin/plexgate".into(),
        admin: "127.0.0.1:7560".to_owned(),
        state_file: "/ws/keepalived/a/state.json".into(),
        script_security: true,
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().map(str::trim).collect()
}

#[test]
fn the_preferred_host_starts_master_and_preempts_with_auto_switch_back() {
    let a = generate(&vip(true), &inputs("a")).unwrap();
    let l = lines(&a);
    for want in [
        "global_defs {",
        "script_user root",
        "enable_script_security",
        "vrrp_version 3",
        "vrrp_script plexgate_distributor_a {",
        "script \"/usr/local/bin/plexgate distributor check --admin 127.0.0.1:7560 --timeout 800ms\"",
        "interval 1",
        "timeout 1",
        "fall 1",
        "rise 1",
        "vrrp_instance plexgate_vip_51 {",
        "state MASTER",
        "interface eth0",
        "virtual_router_id 51",
        "priority 250",
        "advert_int 1",
        "10.9.0.100/24 dev eth0",
        "plexgate_distributor_a",
        "notify \"/usr/local/bin/plexgate distributor keepalived-notify --ha-instance a --state-file /ws/keepalived/a/state.json\"",
    ] {
        assert!(l.contains(&want), "missing `{want}` in\n{a}");
    }
    assert!(!a.contains("nopreempt") && !a.contains("unicast_peer") && !a.contains("authentication"), "{a}");
    let b = generate(&vip(true), &inputs("b")).unwrap();
    assert!(lines(&b).contains(&"state BACKUP") && lines(&b).contains(&"priority 240"), "{b}");
    assert_eq!(a.matches('{').count(), a.matches('}').count(), "balanced braces");
}

#[test]
fn without_auto_switch_back_every_host_starts_backup_with_nopreempt() {
    for host in ["a", "b"] {
        let c = generate(&vip(false), &inputs(host)).unwrap();
        let l = lines(&c);
        assert!(l.contains(&"state BACKUP") && l.contains(&"nopreempt") && !l.contains(&"state MASTER"), "{c}");
    }
}

#[test]
fn unicast_peers_password_and_sub_second_adverts() {
    let mut v = vip(true);
    v.unicast_peers = vec!["10.9.0.12".parse::<IpAddr>().unwrap()];
    v.password = Some(Secret::new("s3cr3t"));
    let c = generate(&v, &inputs("a")).unwrap();
    let l = lines(&c);
    assert!(l.contains(&"unicast_peer {") && l.contains(&"10.9.0.12"), "{c}");
    assert!(l.contains(&"auth_type PASS") && l.contains(&"auth_pass s3cr3t"), "{c}");
    assert!(l.contains(&"vrrp_version 2"), "a password needs VRRPv2: {c}");
    let mut v = vip(true);
    v.advert_interval = Duration::from_millis(250);
    assert!(lines(&generate(&v, &inputs("a")).unwrap()).contains(&"advert_int 0.25"));
    v.advert_interval = Duration::from_millis(1500);
    assert!(lines(&generate(&v, &inputs("a")).unwrap()).contains(&"advert_int 1.5"));
}

#[test]
fn script_security_off_is_explained_and_bad_inputs_are_refused() {
    let mut i = inputs("a");
    i.script_security = false;
    let c = generate(&vip(true), &i).unwrap();
    assert!(!lines(&c).contains(&"enable_script_security") && c.contains("enable_script_security is off"), "{c}");
    let e = generate(&vip(true), &inputs("g")).unwrap_err().to_string();
    assert!(e.contains("haInstance g is no distributor host") && e.contains("a, b"), "{e}");
    let mut i = inputs("a");
    i.plexgate = "/opt/my tools/plexgate".into();
    assert!(generate(&vip(true), &i).unwrap_err().to_string().contains("spaces"));
}
