//! The cache-client crate against a real caching-service process: typed errors, failover
//! between caching-service URLs, and the live map view with its staleness and resumption.

use std::time::{Duration, Instant};

use plexgate_cache_client::{CacheClient, ClientError, ClientOptions, MapView};
use plexgate_tests::caching::{CachingService, Setup};
use plexgate_tests::free_port;
use plexgate_tests::https::tls_config;

fn client_for(cs: &CachingService, urls: Vec<String>) -> CacheClient {
    let (cert, key) = cs.ws.client_identity();
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(2),
        rounds: 2,
        backoff: Duration::from_millis(50),
    };
    CacheClient::new(urls, tls_config(&cs.ws.ca(), Some((&cert, &key))), options).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_and_errors() {
    let cs = tokio::task::spawn_blocking(|| CachingService::start("inMemory").unwrap()).await.unwrap();
    let c = client_for(&cs, vec![format!("https://127.0.0.1:{}", cs.port)]);
    c.create("k/1 😀", "v").await.unwrap();
    assert!(matches!(c.create("k/1 😀", "v").await, Err(ClientError::Conflict)));
    assert_eq!(c.get("k/1 😀").await.unwrap().value, "v");
    c.update("k/1 😀", "w").await.unwrap();
    assert_eq!(c.get("k/1 😀").await.unwrap().value, "w");
    c.delete("k/1 😀").await.unwrap();
    assert!(matches!(c.get("k/1 😀").await, Err(ClientError::NotFound)));
    assert!(matches!(c.update("missing", "x").await, Err(ClientError::NotFound)));
    c.map_put("invalidTokens", "h1", "1").await.unwrap();
    assert_eq!(c.map_get("invalidTokens").await.unwrap().get("h1").map(String::as_str), Some("1"));
    assert!(c.map_get("unknown").await.unwrap().is_empty());
    assert!(matches!(c.create("", "x").await, Err(ClientError::Rejected { status: 400, .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_is_its_own_error() {
    let cs = tokio::task::spawn_blocking(|| {
        // Only the client certificate may pass identities: the server certificate is then an
        // ordinary caller, whose namespace counts against the size (a gateway's own does not).
        let storage = "      size: 2\n      sizePerNamespace: 2\n      evictionStrategy: reject\n";
        let service = "    trustedGateways: [\"CN=plexgate-gateway, O=plexgate\"]\n";
        CachingService::start_with(Setup { mode: "inMemory", storage, service }).unwrap()
    })
    .await
    .unwrap();
    let (cert, key) = cs.ws.server_identity();
    let options = ClientOptions { rounds: 1, ..ClientOptions::default() };
    let c =
        CacheClient::new(vec![format!("https://127.0.0.1:{}", cs.port)], tls_config(&cs.ws.ca(), Some((&cert, &key))), options).unwrap();
    c.create("a", "1").await.unwrap();
    c.create("b", "2").await.unwrap();
    assert!(matches!(c.create("c", "3").await, Err(ClientError::Full)), "507 ZWECS134E is ClientError::Full");
    // Nothing was lost to the refusal.
    assert_eq!(c.get("a").await.unwrap().value, "1");
    assert!(matches!(c.get("c").await, Err(ClientError::NotFound)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_past_a_dead_instance_and_reports_unavailable_when_all_are_down() {
    let cs = tokio::task::spawn_blocking(|| CachingService::start("inMemory").unwrap()).await.unwrap();
    let dead = format!("https://127.0.0.1:{}", free_port());
    let live = format!("https://127.0.0.1:{}", cs.port);
    let c = client_for(&cs, vec![dead.clone(), live.clone()]);
    c.create("k", "v").await.unwrap();
    assert_eq!(c.urls()[0], live, "the instance that answered is tried first next time");
    let all_dead = client_for(&cs, vec![dead, format!("https://127.0.0.1:{}", free_port())]);
    let start = Instant::now();
    assert!(matches!(all_dead.get("k").await, Err(ClientError::Unavailable(_))));
    assert!(start.elapsed() < Duration::from_secs(5), "bounded retries: {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_view_loads_follows_and_resumes_after_a_caching_service_restart() {
    let mut cs = tokio::task::spawn_blocking(|| CachingService::start("durable").unwrap()).await.unwrap();
    let c = client_for(&cs, vec![format!("https://127.0.0.1:{}", cs.port)]);
    c.map_put("invalidTokens", "before", "1").await.unwrap();
    let view = MapView::start(c.clone(), &["invalidTokens", "invalidUsers"], Duration::from_secs(3));
    assert!(view.wait_loaded(Duration::from_secs(10)).await, "{:?}", view.status());
    assert!(view.contains("invalidTokens", "before"));
    let mut changes = view.subscribe();

    let written = Instant::now();
    c.map_put("invalidUsers", "alice", "123").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !view.contains("invalidUsers", "alice") {
            changes.recv().await.unwrap();
        }
    })
    .await
    .expect("change reaches the view");
    println!("feed propagation: {:?}", written.elapsed());
    assert!(view.staleness().unwrap() < Duration::from_secs(2));

    // The caching service goes away: the view keeps what it has and grows stale...
    cs.proc.kill();
    let noticed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while view.status().connected {
            tick.tick().await;
        }
    })
    .await;
    assert!(noticed.is_ok() && !view.status().connected, "the view notices the caching service is gone");
    assert!(view.contains("invalidUsers", "alice") && view.contains("invalidTokens", "before"));
    // ...and when it is back, resumes from its revision and sees what happened since.
    let _cs = tokio::task::spawn_blocking(move || {
        cs.restart();
        cs
    })
    .await
    .unwrap();
    c.map_put("invalidTokens", "after", "2").await.unwrap();
    let mut changes = view.subscribe();
    tokio::time::timeout(Duration::from_secs(15), async {
        while !view.contains("invalidTokens", "after") {
            let _ = changes.recv().await;
        }
    })
    .await
    .expect("the view catches up after the restart");
    assert!(view.status().connected);
    assert!(view.contains("invalidUsers", "alice"), "nothing lost across the restart");
}
