//! `components.discovery`: where Zowe's onboarding enablers register, per haInstance.

use std::path::Path;

use plexgate_config::*;

fn load_text(text: &str, instance: Option<&str>) -> Result<Loaded, ConfigError> {
    let doc = Document::parse("test.yaml", text, &[])?;
    load(&doc, instance, Path::new("/base"))
}

const TWO: &str = "components:\n  gateway:\n    port: 17554\n    apiml: {security: {auth: {provider: users-file}}}\n  caching-service: {storage: {mode: redis, redis: {masterNodeUri: \"127.0.0.1:6379\"}}}\n  discovery: {enabled: true}\n  distributor: {enabled: false}\nhaInstances:\n  a:\n    hostname: 127.0.0.1\n  b:\n    hostname: 127.0.0.1\n    components: {gateway: {port: 27554}, caching-service: {port: 27555}, discovery: {port: 27553}}\n  w:\n    hostname: 127.0.0.1\n    components: {gateway: {enabled: false}, caching-service: {port: 37555}, discovery: {enabled: false}}\n";

#[test]
fn zowes_port_by_default_overridden_per_instance_and_off_where_disabled() {
    let a = load_text(TWO, Some("a")).unwrap().config;
    assert!(a.discovery.enabled);
    assert_eq!((a.discovery.port, a.discovery.max_instances), (7553, 10_000));
    let ports: Vec<(String, Option<u16>)> = a.instances.iter().map(|i| (i.id.clone(), i.discovery_port)).collect();
    assert_eq!(ports, vec![("a".into(), Some(7553)), ("b".into(), Some(27553)), ("w".into(), None)]);
    assert_eq!(load_text(TWO, Some("b")).unwrap().config.discovery.port, 27553);
    assert!(!load_text(TWO, Some("w")).unwrap().config.discovery.enabled);
    // Off unless asked for.
    let none = TWO.replace("  discovery: {enabled: true}\n", "");
    assert!(!load_text(&none, Some("a")).unwrap().config.discovery.enabled);
}

#[test]
fn a_bad_port_or_instance_bound_is_refused_naming_the_key() {
    for (bad, key) in [
        ("  discovery: {enabled: true, port: 0}\n", "components.discovery.port"),
        ("  discovery: {enabled: true, port: 70000}\n", "components.discovery.port"),
        ("  discovery: {enabled: true, maxInstances: 0}\n", "components.discovery.maxInstances"),
        ("  discovery: {enabled: true, port: seven}\n", "components.discovery.port"),
    ] {
        let text = TWO.replace("  discovery: {enabled: true}\n", bad);
        let problems: Vec<String> = match load_text(&text, Some("a")) {
            Ok(_) => panic!("{bad}: accepted"),
            Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
        };
        assert!(problems.iter().any(|p| p.contains(key)), "{bad}: {problems:?}");
    }
}
