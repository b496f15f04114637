//! `plexgate config validate` / `config show` on good and bad files, as an operator runs them.

use plexgate_tests::Workspace;

const EXAMPLE: &str = include_str!("../../examples/zowe.yaml");

#[test]
fn the_example_and_the_embedded_default_validate() {
    let ws = Workspace::new();
    let file = ws.write("zowe.yaml", EXAMPLE);
    let run = ws.run(&["config", "validate", "-c", file.to_str().unwrap()], "").expect_code(0);
    assert!(
        run.stdout().contains(
            "valid; 3 haInstance(s) (lpar1, lpar2, lpar3); distributor hotStandby on 127.0.0.1:7554 -> lpar1 (preferred), lpar2 (backup 1)"
        ),
        "{}",
        run.stdout()
    );
    assert_eq!(run.stdout().lines().count(), 1, "one-line summary");
    let run = ws.run(&["config", "validate"], "").expect_code(0);
    assert!(run.stdout().starts_with("<embedded examples/zowe.yaml>: valid"), "{}", run.stdout());
}

#[test]
fn bad_values_exit_2_naming_path_line_and_allowed_values() {
    let ws = Workspace::new();
    let bad = EXAMPLE.replace("      mode: replicated\n", "      mode: imMemory\n").replace("    port: 7555\n", "    port: 75550\n");
    let file = ws.write("bad.yaml", &bad);
    let run = ws.run(&["config", "validate", "-c", file.to_str().unwrap()], "").expect_code(2);
    let err = run.stderr();
    assert!(err.contains("components.caching-service.storage.mode (line"), "{err}");
    assert!(err.contains("found `imMemory`, allowed one of: inMemory, durable, VSAM, redis, infinispan"), "{err}");
    assert!(err.contains("components.caching-service.port (line"), "{err}");
    assert!(err.contains("found 75550, allowed a port number from 1 to 65535"), "{err}");
    assert!(run.stdout().is_empty());
}

#[test]
fn a_target_naming_an_unknown_instance_and_an_ha_instance_override_are_reported_where_written() {
    let ws = Workspace::new();
    let bad =
        EXAMPLE.replace("      - instance: lpar2\n", "      - instance: lpar9\n").replace("        port: 27554\n", "        port: -1\n");
    let file = ws.write("bad.yaml", &bad);
    let err = ws.run(&["config", "validate", "-c", file.to_str().unwrap()], "").expect_code(2).stderr();
    assert!(err.contains("components.distributor.targets.1.instance"), "{err}");
    assert!(err.contains("names haInstance `lpar9`, which is not defined; defined: lpar1, lpar2, lpar3"), "{err}");
    assert!(err.contains("haInstances.lpar2.components.gateway.port (line"), "{err}");
}

#[test]
fn yaml_syntax_errors_and_missing_files_exit_2() {
    let ws = Workspace::new();
    let file = ws.write("broken.yaml", "zowe:\n  externalDomains: [a\n  externalPort: 1\n");
    let err = ws.run(&["config", "validate", "-c", file.to_str().unwrap()], "").expect_code(2).stderr();
    assert!(err.contains("YAML syntax error at line"), "{err}");
    let err = ws.run(&["config", "validate", "-c", "does-not-exist.yaml"], "").expect_code(2).stderr();
    assert!(err.contains("cannot read configuration file does-not-exist.yaml"), "{err}");
}

#[test]
fn unknown_keys_warn_with_the_nearest_known_key_and_still_validate() {
    let ws = Workspace::new();
    let file = ws.write("typo.yaml", &EXAMPLE.replace("evictionStrategy: reject", "evictionStratgy: reject"));
    let run = ws.run(&["config", "validate", "-c", file.to_str().unwrap()], "").expect_code(0);
    assert!(run.stderr().contains("components.caching-service.storage.evictionStratgy"), "{}", run.stderr());
    assert!(run.stderr().contains("did you mean `evictionStrategy`?"), "{}", run.stderr());
}

#[test]
fn environment_overrides_apply_and_bad_ones_are_named() {
    let ws = Workspace::new();
    let run = ws.run(&["config", "show", "--ha-instance", "lpar1"], "");
    assert!(run.stdout().contains("port: 17554"));
    let out =
        ws.plexgate(&["config", "show", "--ha-instance", "lpar1"]).env("PLEXGATE__COMPONENTS__GATEWAY__PORT", "19999").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("port: 19999"));
    let out = ws.plexgate(&["config", "validate"]).env("PLEXGATE__COMPONENTS__GATEWAY__PROT", "1").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("from environment variable PLEXGATE__COMPONENTS__GATEWAY__PROT"));
}

#[test]
fn show_prints_the_merged_view_and_refuses_an_unknown_instance() {
    let ws = Workspace::new();
    let run = ws.run(&["config", "show", "--ha-instance", "lpar2"], "").expect_code(0);
    let out = run.stdout();
    assert!(out.contains("haInstance: lpar2"), "{out}");
    assert!(out.contains("port: 27554"), "{out}");
    assert!(out.contains(&format!("workspaceDirectory: {}", ws.path().join("workspace").display())), "{out}");
    let err = ws.run(&["config", "show", "--ha-instance", "lpar9"], "").expect_code(2).stderr();
    assert!(err.contains("no haInstance `lpar9` in the file; defined: lpar1, lpar2"), "{err}");
}

#[test]
fn secrets_are_masked_in_show() {
    let ws = Workspace::new();
    let yaml = EXAMPLE.replace(
        "      mode: replicated\n",
        "      mode: redis\n      redis:\n        masterNodeUri: \"app:Sup3rS3cret@127.0.0.1:6379\"\n",
    );
    let file = ws.write("redis.yaml", &yaml);
    let run = ws.run(&["config", "show", "-c", file.to_str().unwrap(), "--ha-instance", "lpar1"], "").expect_code(0);
    assert!(!run.stdout().contains("Sup3rS3cret") && !run.stderr().contains("Sup3rS3cret"));
    assert!(run.stdout().contains("password: '********'") || run.stdout().contains("password: \"********\""), "{}", run.stdout());
}

#[test]
fn static_service_definitions_are_validated_too() {
    let ws = Workspace::new();
    ws.write(
        "workspace/api-mediation/api-defs/bad.yml",
        "services:\n  - serviceId: one\n    instanceBaseUrls: [\"not a url\"]\n    routes: [{gatewayUrl: api}]\n  - serviceId: two\n    instanceBaseUrls: [https://h:1/]\n    routes: [{serviceRelativeUrl: /x}]\n  - serviceId: three\n    instanceBaseUrls: [https://h:1/]\n    routes: [{gatewayUrl: api}]\n  - serviceId: three\n    instanceBaseUrls: [https://h:2/]\n    routes: [{gatewayUrl: api}]\n",
    );
    let err = ws.run(&["config", "validate"], "").expect_code(2).stderr();
    assert!(err.contains("bad.yml: services[0] (one): instanceBaseUrls"), "{err}");
    assert!(err.contains("bad.yml: services[1] (two): routes[0] has no gatewayUrl"), "{err}");
    assert!(err.contains("serviceId `three` is defined twice"), "{err}");
    ws.write("workspace/api-mediation/api-defs/bad.yml", "services:\n  - serviceId: fine\n    instanceBaseUrls: [https://h:1/]\n    routes: [{gatewayUrl: api}]\n    authentication: {scheme: safIdt}\n");
    let err = ws.run(&["config", "validate"], "").expect_code(2).stderr();
    assert!(err.contains("authentication scheme `safIdt` is not supported"), "{err}");
    ws.write(
        "workspace/api-mediation/api-defs/bad.yml",
        "services:\n  - serviceId: fine\n    instanceBaseUrls: [https://h:1/]\n    routes: [{gatewayUrl: api}]\n",
    );
    let run = ws.run(&["config", "validate"], "").expect_code(0);
    assert!(run.stdout().contains("1 API service(s)"), "{}", run.stdout());
}

#[test]
fn several_caching_services_with_separate_embedded_stores_are_refused() {
    let ws = Workspace::new();
    // Every haInstance runs a caching service, each `durable`: three stores.
    let split = EXAMPLE.replace("      mode: replicated\n", "      mode: durable\n");
    assert_ne!(split, EXAMPLE);
    let file = ws.write("split.yaml", &split);
    let err = ws.run(&["config", "validate", "-c", file.to_str().unwrap()], "").expect_code(2).stderr();
    assert!(err.contains("components.caching-service.storage.mode"), "{err}");
    assert!(err.contains("haInstances lpar1, lpar2, lpar3 each run a caching service with its own embedded store"), "{err}");
    assert!(err.contains("`redis`"), "{err}");
    // `plexgate up` refuses it too, before starting anything.
    let up = ws.run(&["up", "-c", file.to_str().unwrap()], "");
    assert_eq!(up.code(), 2, "{}", up.stderr());
    // Shared Redis behind both is fine.
    let shared = split.replace("      mode: durable\n", "      mode: redis\n      redis: {masterNodeUri: \"127.0.0.1:6379\"}\n");
    let file = ws.write("shared.yaml", &shared);
    ws.run(&["config", "validate", "-c", file.to_str().unwrap()], "").expect_code(0);
}

#[test]
fn proxy_protocol_sources_and_trusted_gateway_dns_are_checked_where_written() {
    let ws = Workspace::new();
    let bad = EXAMPLE.replace(
        "  gateway:\n    enabled: true\n",
        "  gateway:\n    enabled: true\n    proxyProtocolTrustedSources: [127.0.0.1, not-an-address, 10.0.0.0/40]\n",
    );
    let bad = bad
        .replace("  caching-service:\n    enabled: true\n", "  caching-service:\n    enabled: true\n    trustedGateways: [\"CN=a, b\"]\n");
    let file = ws.write("bad.yaml", &bad);
    let run = ws.run(&["config", "validate", "-c", file.to_str().unwrap()], "").expect_code(2);
    let err = run.stderr();
    assert!(err.contains("components.gateway.proxyProtocolTrustedSources.1 (line"), "{err}");
    assert!(err.contains("`not-an-address` is not an IP address"), "{err}");
    assert!(err.contains("components.gateway.proxyProtocolTrustedSources.2 (line"), "{err}");
    assert!(err.contains("components.caching-service.trustedGateways.0 (line"), "{err}");
    // proxyProtocol (on in the example) with a distributor known only by name: nothing to trust is refused.
    let by_name = EXAMPLE.replace("  distributor:\n", "  distributor:\n    address: distributor.example\n");
    let file = ws.write("by-name.yaml", &by_name);
    let run = ws.run(&["config", "validate", "-c", file.to_str().unwrap()], "").expect_code(2);
    assert!(run.stderr().contains("components.gateway.proxyProtocolTrustedSources"), "{}", run.stderr());
}
