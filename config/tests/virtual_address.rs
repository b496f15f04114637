//! `components.distributor.virtualAddress`: the keys keepalived.conf is generated from, each
//! rule proven with the YAML path its error names.

use std::path::Path;

use plexgate_config::*;

fn load_text(text: &str, instance: Option<&str>) -> Result<Loaded, ConfigError> {
    let doc = Document::parse("test.yaml", text, &[])?;
    load(&doc, instance, Path::new("/base"))
}

/// Two distributor hosts `a` and `b` (and a gateway host `g`), with `vip` as the
/// virtualAddress mapping's body (indented six spaces) and `extra` appended to the file.
fn two_hosts(vip: &str, extra: &str) -> String {
    format!(
        "components:\n  gateway:\n    apiml: {{security: {{auth: {{provider: users-file}}}}}}\n  caching-service: {{enabled: false}}\n  distributor:\n    virtualAddress:\n{vip}haInstances:\n  a:\n    hostname: 10.9.0.11\n    components: {{gateway: {{enabled: false}}, distributor: {{enabled: true}}}}\n  b:\n    hostname: 10.9.0.12\n    components: {{gateway: {{enabled: false}}, distributor: {{enabled: true}}}}\n  g:\n    hostname: 10.9.0.21\n    components: {{caching-service: {{enabled: true}}}}\n{extra}"
    )
}

const GOOD: &str = "      address: 10.9.0.100/24\n      interface: eth0\n      virtualRouterId: 51\n";

fn messages(text: &str, instance: Option<&str>) -> Vec<String> {
    match load_text(text, instance) {
        Ok(_) => panic!("expected problems"),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn a_good_virtual_address_gives_hosts_by_file_order_and_listens_on_it() {
    let text = two_hosts(GOOD, "");
    let a = load_text(&text, Some("a")).unwrap().config;
    let vip = a.distributor.virtual_address.as_ref().expect("virtual address");
    assert_eq!(vip.address.to_string(), "10.9.0.100");
    assert_eq!(vip.prefix, 24);
    assert_eq!(vip.interface, "eth0");
    assert_eq!(vip.virtual_router_id, 51);
    assert_eq!(vip.advert_interval, std::time::Duration::from_secs(1));
    assert!(vip.auto_switch_back);
    let hosts: Vec<_> = vip.hosts.iter().map(|h| (h.instance.as_str(), h.priority)).collect();
    assert_eq!(hosts, [("a", 250), ("b", 240)]);
    assert_eq!(vip.preferred().map(|h| h.instance.as_str()), Some("a"));
    assert_eq!(a.distributor.address, "10.9.0.100", "the distributor listens on the virtual address");
    assert!(a.instances.iter().find(|i| i.id == "a").unwrap().distributor);
    assert!(!a.instances.iter().find(|i| i.id == "g").unwrap().distributor);
    let base = load_text(&text, None).unwrap().config;
    assert!(base.distributor.virtual_address.is_some());
}

#[test]
fn an_explicit_priority_makes_another_host_preferred_and_peers_leave_out_the_own_address() {
    let vip = format!("{GOOD}      unicastPeers: [10.9.0.11, 10.9.0.12]\n      autoSwitchBack: false\n");
    let text = two_hosts(&vip, "").replace(
        "  b:\n    hostname: 10.9.0.12\n    components: {gateway: {enabled: false}, distributor: {enabled: true}}",
        "  b:\n    hostname: 10.9.0.12\n    components: {gateway: {enabled: false}, distributor: {enabled: true, virtualAddress: {priority: 254, interface: ens3}}}",
    );
    let b = load_text(&text, Some("b")).unwrap().config;
    let v = b.distributor.virtual_address.unwrap();
    assert_eq!(v.interface, "ens3", "the interface may differ per host");
    assert_eq!(v.preferred().map(|h| h.instance.as_str()), Some("b"));
    assert_eq!(v.unicast_peers.iter().map(|p| p.to_string()).collect::<Vec<_>>(), ["10.9.0.11"]);
    assert!(!v.auto_switch_back);
}

#[test]
fn a_bad_cidr_names_the_path() {
    for bad in ["10.9.0.100", "10.9.0.300/24", "10.9.0.100/40", "127.0.0.5/8"] {
        let m = messages(&two_hosts(&GOOD.replace("10.9.0.100/24", bad), ""), None);
        assert!(
            m.iter().any(|m| m.starts_with("components.distributor.virtualAddress.address (line 7") && m.contains(bad)),
            "{bad}: {m:#?}"
        );
    }
}

#[test]
fn a_router_id_out_of_range_names_the_path() {
    for bad in ["0", "256", "-3"] {
        let m = messages(&two_hosts(&GOOD.replace("51", bad), ""), None);
        assert_eq!(m.len(), 1, "{m:#?}");
        assert!(m[0].starts_with("components.distributor.virtualAddress.virtualRouterId (line 9") && m[0].contains("1 to 255"), "{m:#?}");
    }
}

#[test]
fn a_missing_interface_or_router_id_is_an_error() {
    let m = messages(&two_hosts("      address: 10.9.0.100/24\n", ""), None);
    assert!(m.iter().any(|m| m.starts_with("components.distributor.virtualAddress.interface") && m.contains("missing")), "{m:#?}");
    assert!(m.iter().any(|m| m.starts_with("components.distributor.virtualAddress.virtualRouterId") && m.contains("missing")), "{m:#?}");
    let m = messages(&two_hosts(&GOOD.replace("eth0", "a-name-far-too-long"), ""), None);
    assert!(m[0].contains("at most 15 characters"), "{m:#?}");
}

#[test]
fn a_password_too_long_is_an_error_that_never_shows_it() {
    let vip = format!("{GOOD}      authentication: {{type: PASS, password: s3cret-too-long}}\n");
    let m = messages(&two_hosts(&vip, ""), None);
    assert_eq!(m.len(), 1, "{m:#?}");
    assert!(m[0].starts_with("components.distributor.virtualAddress.authentication.password (line 10"), "{m:#?}");
    assert!(m[0].contains("allowed 1 to 8") && !m[0].contains("s3cret"), "{m:#?}");
    let vip = format!("{GOOD}      authentication: {{type: AH, password: ok}}\n");
    let m = messages(&two_hosts(&vip, ""), None);
    assert!(m[0].contains("authentication.type") && m[0].contains("PASS"), "{m:#?}");
}

#[test]
fn a_password_is_kept_masked_and_needs_whole_second_adverts() {
    let vip = format!("{GOOD}      authentication: {{password: s3cr3t}}\n");
    let c = load_text(&two_hosts(&vip, ""), Some("a")).unwrap().config;
    let v = c.distributor.virtual_address.as_ref().unwrap();
    assert_eq!(v.password.as_ref().map(|p| p.expose()), Some("s3cr3t"));
    let shown = serde_json::to_string(&c).unwrap();
    assert!(!shown.contains("s3cr3t") && shown.contains("********"), "{shown}");
    assert!(!format!("{c:?}").contains("s3cr3t"));
    let m = messages(&two_hosts(&format!("{vip}      advertInterval: 500ms\n"), ""), None);
    assert!(m[0].starts_with("components.distributor.virtualAddress.advertInterval") && m[0].contains("whole seconds"), "{m:#?}");
    // Without a password, VRRPv3 allows centiseconds.
    let c = load_text(&two_hosts(&format!("{GOOD}      advertInterval: 500ms\n"), ""), None).unwrap().config;
    assert_eq!(c.distributor.virtual_address.unwrap().advert_interval, std::time::Duration::from_millis(500));
}

#[test]
fn hosts_must_agree_have_distinct_priorities_and_exist() {
    let text = two_hosts(GOOD, "")
        .replace("distributor: {enabled: true}}\n  b:", "distributor: {enabled: true, virtualAddress: {virtualRouterId: 52}}}\n  b:");
    let m = messages(&text, None);
    assert!(m.iter().any(|m| m.contains("haInstance a sees another address, virtualRouterId")), "{m:#?}");
    let text = two_hosts(GOOD, "")
        .replace("distributor: {enabled: true}}\n  b:", "distributor: {enabled: true, virtualAddress: {priority: 240}}}\n  b:");
    let m = messages(&text, None);
    assert!(
        m.iter().any(|m| m.starts_with("haInstances.b.components.distributor.virtualAddress") || m.contains("both have priority 240")),
        "{m:#?}"
    );
    let text = two_hosts(GOOD, "").replace("distributor: {enabled: true}", "distributor: {}");
    let m = messages(&text, None);
    assert!(m.iter().any(|m| m.contains("needs distributor hosts")), "{m:#?}");
    let m = messages(&two_hosts(&format!("{GOOD}      priority: 255\n"), ""), None);
    assert!(m.iter().any(|m| m.contains("allowed 1 to 254")), "{m:#?}");
}

#[test]
fn keepalived_needs_the_admin_listener_and_whole_second_checks() {
    let text = two_hosts(GOOD, "")
        .replace("  distributor:\n    virtualAddress:", "  distributor:\n    admin: {enabled: false}\n    virtualAddress:");
    let m = messages(&text, None);
    assert!(m.iter().any(|m| m.starts_with("components.distributor.admin.enabled") && m.contains("keepalived")), "{m:#?}");
    let m = messages(&two_hosts(&format!("{GOOD}      check: {{interval: 500ms}}\n"), ""), None);
    assert!(m[0].starts_with("components.distributor.virtualAddress.check.interval") && m[0].contains("whole seconds"), "{m:#?}");
}

#[test]
fn a_typo_under_virtual_address_is_a_warning_with_the_nearest_key() {
    let loaded = load_text(&two_hosts(&format!("{GOOD}      advertIntervall: 1s\n"), ""), None).unwrap();
    let w: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert!(w.iter().any(|w| w.contains("virtualAddress.advertIntervall") && w.contains("advertInterval")), "{w:#?}");
}
