//! The config crate's rules, each proven: merge precedence, the environment scheme, every
//! validation error, and a real zowe.yaml in the shape Zowe ships loading cleanly.

use std::path::Path;

use plexgate_config::*;

const EXAMPLE: &str = include_str!("../../examples/zowe.yaml");

fn env(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn load_text(text: &str, instance: Option<&str>, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let doc = Document::parse("test.yaml", text, &env(vars))?;
    load(&doc, instance, Path::new("/base"))
}

fn problems(text: &str, instance: Option<&str>) -> Vec<Problem> {
    match load_text(text, instance, &[]) {
        Ok(_) => panic!("expected problems"),
        Err(e) => {
            assert!(!e.problems().is_empty(), "{e}");
            e.problems().to_vec()
        }
    }
}

fn only_problem(text: &str) -> Problem {
    let p = problems(text, None);
    assert_eq!(p.len(), 1, "{p:#?}");
    p.into_iter().next().unwrap()
}

const MINIMAL: &str = "components:\n  gateway:\n    apiml:\n      security:\n        auth:\n          provider: users-file\n";

#[test]
fn the_embedded_example_is_valid_for_every_instance() {
    let doc = Document::parse("example", EXAMPLE, &[]).unwrap();
    let all = load_all(&doc, Path::new("/base")).unwrap();
    assert_eq!(all.len(), 4);
    assert!(all[0].warnings.is_empty(), "{:?}", all[0].warnings);
    let base = &all[0].config;
    assert_eq!(base.external_port, 7554);
    assert_eq!(base.workspace_directory, Path::new("/base/workspace"));
    assert_eq!(base.distributor.method, Method::HotStandby);
    assert_eq!(base.distributor.address, "127.0.0.1");
    let t: Vec<_> = base.distributor.targets.iter().map(|t| (t.name.as_str(), t.port, t.role)).collect();
    assert_eq!(t, [("lpar1", 17554, Role::Preferred), ("lpar2", 27554, Role::Backup { rank: 1 })]);
    assert_eq!(base.caching_service_urls, ["https://127.0.0.1:7555", "https://127.0.0.1:27555", "https://127.0.0.1:37555"]);
    assert_eq!(base.caching_service.storage.mode, StorageMode::Replicated);
    assert!(!all[3].config.gateway.enabled, "lpar3 is the witness: a caching service only");
    assert_eq!(all[1].config.gateway.port, 17554);
    assert!(all[1].config.caching_service.enabled);
    assert!(all[2].config.caching_service.enabled);
    assert_eq!(all[2].config.gateway.port, 27554);
    assert!(base.certificates.generated);
    assert_eq!(base.certificates.key, Path::new("/base/workspace/certificates/server.key"));
}

#[test]
fn precedence_is_default_then_file_then_ha_instance_then_environment() {
    let yaml = "components:\n  gateway:\n    port: 1000\n    apiml: {security: {auth: {provider: users-file}}}\n  caching-service:\n    storage: {size: 50}\nhaInstances:\n  a:\n    hostname: h\n    components:\n      caching-service:\n        storage: {size: 60}\n      gateway:\n        port: 2000\n";
    // default: storage mode; file: gateway port 1000 without instance.
    let base = load_text(yaml, None, &[]).unwrap().config;
    assert_eq!(base.caching_service.storage.mode, StorageMode::Durable);
    assert_eq!(base.caching_service.storage.size, 50);
    assert_eq!(base.gateway.port, 1000);
    // haInstance beats the file.
    let a = load_text(yaml, Some("a"), &[]).unwrap().config;
    assert_eq!(a.gateway.port, 2000);
    assert_eq!(a.caching_service.storage.size, 60);
    assert_eq!(a.caching_service.storage.mode, StorageMode::Durable);
    // environment beats the haInstance, both through components.* and haInstances.*.
    let a = load_text(
        yaml,
        Some("a"),
        &[("PLEXGATE__COMPONENTS__GATEWAY__PORT", "3000"), ("PLEXGATE__HAINSTANCES__A__COMPONENTS__CACHING_SERVICE__STORAGE__SIZE", "70")],
    )
    .unwrap()
    .config;
    assert_eq!(a.gateway.port, 3000);
    assert_eq!(a.caching_service.storage.size, 70);
    // and the environment beats a default the file never wrote.
    let a = load_text(yaml, Some("a"), &[("PLEXGATE__COMPONENTS__CACHING_SERVICE__STORAGE__MODE", "inMemory")]).unwrap().config;
    assert_eq!(a.caching_service.storage.mode, StorageMode::InMemory);
}

#[test]
fn ha_instance_can_disable_a_component_and_set_any_depth() {
    let yaml = format!(
        "{MINIMAL}haInstances:\n  x:\n    hostname: h\n    components:\n      gateway: {{enabled: false}}\n      caching-service:\n        storage:\n          redis: {{timeout: 5}}\n"
    );
    let x = load_text(&yaml, Some("x"), &[]).unwrap().config;
    assert!(!x.gateway.enabled);
    assert_eq!(x.instances[0].gateway_port, None);
}

#[test]
fn environment_values_are_typed_and_errors_name_the_variable() {
    let l = load_text(MINIMAL, None, &[("PLEXGATE__ZOWE__EXTERNALDOMAINS", "[a.example, b.example]")]).unwrap();
    assert_eq!(l.config.external_domains, ["a.example", "b.example"]);
    let err = load_text(MINIMAL, None, &[("PLEXGATE__COMPONENTS__GATEWAY__PORT", "not-a-port")]).unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(p.origin, Origin::Env("PLEXGATE__COMPONENTS__GATEWAY__PORT".into()));
    assert_eq!(p.path, "components.gateway.port");
    let err = load_text(MINIMAL, None, &[("PLEXGATE__COMPONENTS__GATEWAY__PROT", "1")]).unwrap_err();
    assert!(err.to_string().contains("PLEXGATE__COMPONENTS__GATEWAY__PROT"), "{err}");
}

#[test]
fn port_out_of_range_names_path_line_and_allowed_range() {
    let p = only_problem(&format!("{MINIMAL}  caching-service:\n    port: 70000\n"));
    assert_eq!(p.path, "components.caching-service.port");
    assert_eq!(p.origin, Origin::File(Position { line: 8, column: 5 }));
    assert!(p.message.contains("found 70000") && p.message.contains("1 to 65535"), "{p}");
    let p = only_problem(&format!("{MINIMAL}zowe:\n  externalPort: 0\n"));
    assert_eq!(p.path, "zowe.externalPort");
}

#[test]
fn a_port_of_the_wrong_type_is_located() {
    let p = only_problem(&format!("{MINIMAL}  caching-service:\n    port: seventy\n"));
    assert_eq!(p.path, "components.caching-service.port");
    assert_eq!(p.origin, Origin::File(Position { line: 8, column: 5 }));
    assert!(p.message.contains("seventy"), "{p}");
}

#[test]
fn unknown_storage_mode_lists_the_allowed_ones() {
    let p = only_problem(&format!("{MINIMAL}  caching-service:\n    storage:\n      mode: imMemory\n"));
    assert_eq!(p.path, "components.caching-service.storage.mode");
    assert!(p.message.contains("found `imMemory`"), "{p}");
    assert!(p.message.contains("inMemory, durable, VSAM, redis, infinispan"), "{p}");
    assert!(p.message.contains("did you mean `inMemory`"), "{p}");
}

#[test]
fn storage_modes_are_case_insensitive_and_vsam_is_durable_with_a_warning() {
    for (mode, want) in [
        ("INMEMORY", StorageMode::InMemory),
        ("Redis", StorageMode::Redis),
        ("infinispan", StorageMode::Infinispan),
        ("durable", StorageMode::Durable),
    ] {
        let redis = if want == StorageMode::Redis { "      redis: {masterNodeUri: \"localhost:6379\"}\n" } else { "" };
        let l = load_text(&format!("{MINIMAL}  caching-service:\n    storage:\n      mode: {mode}\n{redis}"), None, &[]).unwrap();
        assert_eq!(l.config.caching_service.storage.mode, want, "{mode}");
    }
    let l = load_text(&format!("{MINIMAL}  caching-service:\n    storage:\n      mode: vsam\n"), None, &[]).unwrap();
    assert_eq!(l.config.caching_service.storage.mode, StorageMode::Durable);
    assert!(l.warnings.iter().any(|w| w.0.message.contains("deprecated")), "{:?}", l.warnings);
}

#[test]
fn unknown_eviction_strategy_lists_the_allowed_ones() {
    let p = only_problem(&format!("{MINIMAL}  caching-service:\n    storage:\n      evictionStrategy: dropAll\n"));
    assert_eq!(p.path, "components.caching-service.storage.evictionStrategy");
    assert!(p.message.contains("reject, removeOldest"), "{p}");
}

#[test]
fn storage_size_must_be_positive() {
    let p = only_problem(&format!("{MINIMAL}  caching-service:\n    storage:\n      size: 0\n"));
    assert_eq!(p.path, "components.caching-service.storage.size");
}

#[test]
fn a_missing_ha_instance_is_an_error_naming_the_defined_ones() {
    let err = load_text(&format!("{MINIMAL}haInstances:\n  lpar1: {{hostname: h}}\n"), Some("lpar9"), &[]).unwrap_err();
    let p = &err.problems()[0];
    assert!(p.message.contains("lpar9") && p.message.contains("defined: lpar1"), "{p}");
}

#[test]
fn a_distributor_target_naming_an_unknown_instance_is_an_error() {
    let yaml = format!(
        "{MINIMAL}  distributor:\n    targets:\n      - instance: lpar1\n      - instance: lpar3\nhaInstances:\n  lpar1: {{hostname: h, components: {{gateway: {{port: 17554}}}}}}\n"
    );
    let p = only_problem(&yaml);
    assert_eq!(p.path, "components.distributor.targets.1.instance");
    assert_eq!(p.origin, Origin::File(Position { line: 10, column: 9 }));
    assert!(p.message.contains("lpar3") && p.message.contains("defined: lpar1"), "{p}");
}

#[test]
fn distributor_roles_methods_and_limits_are_checked() {
    let with = |distributor: &str| {
        format!(
            "{MINIMAL}  caching-service: {{enabled: false}}\n  distributor:\n{distributor}haInstances:\n  a: {{hostname: h, components: {{gateway: {{port: 1001}}}}}}\n  b: {{hostname: h, components: {{gateway: {{port: 1002}}}}}}\n"
        )
    };
    let p = only_problem(&with("    method: random\n"));
    assert_eq!(p.path, "components.distributor.method");
    assert!(p.message.contains("hotStandby, roundRobin, weighted, leastConnections"), "{p}");
    let p = only_problem(&with("    targets:\n      - {instance: a, role: preferred}\n      - {instance: b, role: preferred}\n"));
    assert!(p.message.contains("at most one"), "{p}");
    let p = only_problem(&with("    targets:\n      - {instance: a, role: primary}\n"));
    assert!(p.message.contains("preferred, backup"), "{p}");
    let p = problems(&with("    healthCheck: {interval: 0, unhealthyThreshold: 0}\n"), None);
    assert_eq!(p.len(), 2, "{p:#?}");
    let p = only_problem(&with("    method: weighted\n    targets:\n      - {instance: a, weight: 0}\n"));
    assert!(p.message.contains("weight above 0"), "{p}");
    let p = only_problem(&with("    replayBytes: 2000000\n"));
    assert_eq!(p.path, "components.distributor.replayBytes");
    assert!(p.message.contains("found 2000000, allowed 0 (no replay) to 1048576 bytes"), "{p}");
    let p = only_problem(&with("    replayBytes: -1\n"));
    assert_eq!(p.path, "components.distributor.replayBytes");
    assert_eq!(load_text(&with("    replayBytes: 0\n"), None, &[]).unwrap().config.distributor.replay_bytes, 0);
    assert_eq!(load_text(&with("    method: hotStandby\n"), None, &[]).unwrap().config.distributor.replay_bytes, 16384);
    let c = load_text(
        &with("    targets:\n      - {instance: b}\n      - {address: \"other:99\", role: backup}\n      - {instance: a}\n"),
        None,
        &[],
    )
    .unwrap()
    .config;
    let t: Vec<_> = c.distributor.targets.iter().map(|t| (t.name.as_str(), t.role)).collect();
    assert_eq!(t, [("b", Role::Preferred), ("other:99", Role::Backup { rank: 1 }), ("a", Role::Backup { rank: 2 })]);
}

#[test]
fn without_a_distributor_section_targets_come_from_ha_instances_in_file_order() {
    let yaml = format!(
        "{MINIMAL}  caching-service: {{enabled: false}}\nzowe:\n  externalDomains: [vip.example]\n  externalPort: 8554\nhaInstances:\n  b: {{hostname: hb, components: {{gateway: {{port: 2}}}}}}\n  off: {{hostname: hx, components: {{gateway: {{enabled: false}}}}}}\n  a: {{hostname: ha, components: {{gateway: {{port: 1}}}}}}\n"
    );
    let c = load_text(&yaml, None, &[]).unwrap().config;
    assert!(c.distributor.enabled);
    assert_eq!((c.distributor.address.as_str(), c.distributor.port), ("vip.example", 8554));
    let t: Vec<_> = c.distributor.targets.iter().map(|t| (t.name.as_str(), t.host.as_str(), t.port, t.role)).collect();
    assert_eq!(t, [("b", "hb", 2, Role::Preferred), ("a", "ha", 1, Role::Backup { rank: 1 })]);
}

#[test]
fn a_target_on_the_distributors_own_port_is_an_error() {
    let yaml = format!("{MINIMAL}zowe:\n  externalDomains: [127.0.0.1]\nhaInstances:\n  a: {{hostname: localhost}}\n");
    let p = only_problem(&yaml);
    assert!(p.message.contains("the distributor's own listen address"), "{p}");
}

#[test]
fn zosmf_provider_needs_zosmf_host() {
    let p = only_problem("components: {}\n");
    assert_eq!(p.path, "zOSMF.host");
    // No gateway runs here, so nothing needs z/OSMF.
    assert!(load_text("components: {gateway: {enabled: false}}\n", None, &[]).is_ok());
    let c = load_text("zOSMF: {host: zos.example, port: 10443}\n", None, &[]).unwrap().config;
    let z = c.zosmf.unwrap();
    assert_eq!((z.host.as_str(), z.port, z.auth_path.as_str()), ("zos.example", 10443, "/zosmf/services/authenticate"));
    assert_eq!(c.gateway.auth_provider, AuthProvider::Zosmf);
}

#[test]
fn unreadable_certificate_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("ca.pem");
    std::fs::write(&good, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let not_pem = dir.path().join("key.txt");
    std::fs::write(&not_pem, "hello").unwrap();
    let yaml = format!(
        "{MINIMAL}zowe:\n  certificate:\n    pem:\n      key: {}\n      certificate: {}\n      certificateAuthorities: {}\n",
        not_pem.display(),
        dir.path().join("missing.pem").display(),
        good.display()
    );
    let p = problems(&yaml, None);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p.iter().any(|p| p.path == "zowe.certificate.pem.key" && p.message.contains("not a PEM file")));
    assert!(p.iter().any(|p| p.path == "zowe.certificate.pem.certificate" && p.message.contains("cannot read")));
}

#[test]
fn a_pkcs12_keystore_without_pem_files_is_a_clear_error() {
    let p = only_problem(&format!("{MINIMAL}zowe:\n  certificate:\n    keystore: {{type: PKCS12, file: /k.p12, password: secret-pw}}\n"));
    assert_eq!(p.path, "zowe.certificate.keystore.file");
    assert!(p.message.contains("pem.key"), "{p}");
    assert!(!p.to_string().contains("secret-pw"));
}

#[test]
fn redis_mode_needs_a_master_or_sentinel_and_never_echoes_passwords() {
    let p = only_problem(&format!("{MINIMAL}  caching-service:\n    storage:\n      mode: redis\n"));
    assert_eq!(p.path, "components.caching-service.storage.redis.masterNodeUri");
    let p = only_problem(&format!(
        "{MINIMAL}  caching-service:\n    storage:\n      mode: redis\n      redis: {{masterNodeUri: \"user:hunter2@nohost\"}}\n"
    ));
    assert!(!p.to_string().contains("hunter2"), "{p}");
    let c = load_text(&format!("{MINIMAL}  caching-service:\n    storage:\n      mode: redis\n      redis:\n        masterNodeUri: \"app:pw@redis.example:6380\"\n        sentinel: {{enabled: true, masterInstance: mymaster, nodes: [\"s1:26379\", {{host: s2, port: 26380}}]}}\n"), None, &[]).unwrap().config;
    let r = c.caching_service.storage.redis.clone().unwrap();
    let m = r.master.unwrap();
    assert_eq!((m.host.as_str(), m.port, m.user.as_deref()), ("redis.example", 6380, Some("app")));
    assert_eq!(r.sentinel.unwrap().nodes.len(), 2);
    let shown = serde_saphyr::to_string(&c.caching_service).unwrap();
    assert!(!shown.contains("pw@") && !shown.contains(": pw"), "{shown}");
}

#[test]
fn unknown_keys_in_owned_sections_warn_with_the_nearest_key() {
    let l = load_text(&format!("{MINIMAL}  caching-service:\n    storage:\n      evictionStratgy: reject\n"), None, &[]).unwrap();
    assert_eq!(l.warnings.len(), 1);
    assert!(
        l.warnings[0].to_string().contains("components.caching-service.storage.evictionStratgy (line 9, column 7)"),
        "{}",
        l.warnings[0]
    );
    assert!(l.warnings[0].to_string().contains("did you mean `evictionStrategy`"));
}

#[test]
fn yaml_syntax_errors_have_a_position() {
    let err = load_text("zowe:\n  externalPort: [7554\n", None, &[]).unwrap_err();
    match err {
        ConfigError::Syntax { at: Some(_), .. } => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn hostile_yaml_is_refused_not_expanded() {
    // A billion-laughs document: aliases that would expand to gigabytes.
    let mut yaml = String::from("a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
    for i in 0..12u8 {
        let (prev, next) = ((b'a' + i) as char, (b'a' + i + 1) as char);
        yaml.push_str(&format!("{next}: &{next} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
    }
    assert!(load_text(&yaml, None, &[]).is_err());
}

#[test]
fn a_full_zowe_yaml_in_zowes_shape_loads_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/zowe-full.yaml")).unwrap();
    for (placeholder, name) in [("KEYFILE", "localhost.key"), ("CERTFILE", "localhost.cer"), ("CAFILE", "local_ca.cer")] {
        let path = dir.path().join(name);
        std::fs::write(&path, "-----BEGIN X-----\n").unwrap();
        text = text.replace(placeholder, &path.display().to_string());
    }
    let doc = Document::parse("zowe-full.yaml", &text, &[]).unwrap();
    let all = load_all(&doc, Path::new("/")).unwrap();
    assert!(all[0].warnings.is_empty(), "{:#?}", all[0].warnings);
    let c = &all[0].config;
    assert_eq!(c.external_domains, ["zos.example.com"]);
    assert_eq!(c.caching_service.storage.mode, StorageMode::Infinispan);
    assert_eq!(c.gateway.auth_provider, AuthProvider::Zosmf);
    assert!(!c.distributor.enabled, "no haInstances: a single Zowe instance without distributor");
    assert!(!c.certificates.generated);
    assert_eq!(c.workspace_directory, Path::new("/global/zowe/workspace"));
}

#[test]
fn replicated_storage_warns_for_two_replicas_and_checks_its_cluster_name() {
    let two = format!(
        "{MINIMAL}  caching-service:\n    storage: {{mode: replicated}}\nhaInstances:\n  a: {{hostname: ha, components: {{gateway: {{port: 1}}}}}}\n  b: {{hostname: hb, components: {{gateway: {{port: 2}}}}}}\n"
    );
    let loaded = load_text(&two, Some("a"), &[]).unwrap();
    assert!(loaded.warnings.iter().any(|w| w.to_string().contains("2 replicas tolerate no failure")), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.caching_service.storage.mode, StorageMode::Replicated);
    assert_eq!(c.caching_service.storage.cluster_name, "plexgate-localhost-7554");
    assert!(c.caching_service.storage.replicated_dir.ends_with("workspace/caching-service/a"));
    let three = two.replace("  b: {", "  c: {hostname: hc, components: {gateway: {enabled: false}}}\n  b: {");
    assert!(load_text(&three, Some("a"), &[]).unwrap().warnings.iter().all(|w| !w.to_string().contains("tolerate no failure")));
    let p = problems(&two.replace("{mode: replicated}", "{mode: replicated, replicated: {clusterName: \" \"}}"), Some("a"));
    assert!(p.iter().any(|p| p.path == "components.caching-service.storage.replicated.clusterName"), "{p:#?}");
}
