//! PROXY protocol v2 end to end: the distributor sends it, the gateways read it, so the
//! access log and `X-Forwarded-For` name the real client, not the distributor.

use std::time::Duration;

use plexgate_tests::assert_eventually;
use plexgate_tests::cluster::{Cluster, ClusterSetup, sample_definition};
use plexgate_tests::distributor::Dist;
use plexgate_tests::proxy;
use serde_json::Value;

#[test]
fn the_gateways_see_the_real_client_address_through_the_distributor() {
    let mut c = Cluster::start(ClusterSetup {
        gateways: 2,
        start_gateways: 0,
        gateway_yaml: "    proxyProtocol: true\n".to_owned(),
        ..ClusterSetup::default()
    });
    let a = c.start_sample("a");
    c.define("sample.yml", &sample_definition("sample", &[a.port], "bypass"));
    c.spawn_gateway(0);
    c.spawn_gateway(1);
    let base = std::fs::read_to_string(&c.config).unwrap();
    let d = Dist::start(
        &c.ws,
        &base,
        "dist",
        "    proxyProtocol: true\n    healthCheck: {interval: 100ms, timeout: 500ms, unhealthyThreshold: 1, healthyThreshold: 1}\n",
    );
    // A client on another loopback address than the distributor's.
    let client = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(plexgate_tests::https::tls_config(&c.ws.ca(), None))
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{}/sample/api/v1/echo", d.port);
    let mut echo: Value;
    assert_eventually!(
        Duration::from_secs(20),
        {
            echo = client.get(&url).send().ok().filter(|r| r.status() == 200).and_then(|r| r.json().ok()).unwrap_or(Value::Null);
            !echo.is_null()
        },
        "a request through the distributor\n{}\n{}",
        d.proc.logs(),
        c.all_logs()
    );
    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.2", "{echo}");
    // Access lines are written in batches, within 100 ms.
    assert_eventually!(Duration::from_secs(5), c.all_logs().contains("client=127.0.0.2"), "the access log names the real client");
    // A connection straight to a gateway, without the header, is closed.
    let direct = plexgate_tests::https::client(&c.ws.ca(), None).get(c.url(0, "/application/health")).send();
    assert!(direct.is_err(), "a gateway that requires PROXY headers must not serve a bare connection");
}

/// Issue 11, item 8: a PROXY header is believed only from a trusted source (by default the
/// distributor's address, here 127.0.0.1); from 127.0.0.2 the connection is closed unread.
#[test]
fn proxy_headers_are_believed_only_from_trusted_sources() {
    let mut c = Cluster::start(ClusterSetup {
        gateways: 1,
        start_gateways: 0,
        gateway_yaml: "    proxyProtocol: true\n".to_owned(),
        ..ClusterSetup::default()
    });
    let a = c.start_sample("a");
    c.define("sample.yml", &sample_definition("sample", &[a.port], "bypass"));
    c.spawn_gateway(0);
    let gateway: std::net::SocketAddr = format!("127.0.0.1:{}", c.ports[0]).parse().unwrap();
    let claimed: std::net::SocketAddr = "192.0.2.7:4242".parse().unwrap();
    let header = proxy::header_v4(claimed, gateway);
    let trusted: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let untrusted: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let mut answer: String;
    assert_eventually!(
        Duration::from_secs(20),
        {
            answer = proxy::get_with_prefix(trusted, gateway, &header, &c.ws.ca(), "/sample/api/v1/echo").unwrap_or_default();
            answer.starts_with("HTTP/1.1 200")
        },
        "an echo through a trusted PROXY header: {answer}\n{}",
        c.all_logs()
    );
    assert!(answer.to_ascii_lowercase().contains("\"x-forwarded-for\":\"192.0.2.7\""), "believed from 127.0.0.1: {answer}");
    let refused = proxy::get_with_prefix(untrusted, gateway, &header, &c.ws.ca(), "/sample/api/v1/echo");
    assert!(refused.is_err(), "a PROXY header from 127.0.0.2 must not be believed: {refused:?}");
    assert!(c.all_logs().contains("not a trusted source of PROXY headers"), "{}", c.all_logs());
}
