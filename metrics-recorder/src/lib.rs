//! The Prometheus recorder every plexgate process (gateway, caching service, distributor)
//! installs, once, in one shape: the same latency buckets and the same upkeep.

use std::time::Duration;

pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Latency buckets of every `*_seconds` histogram, from 100 us to 5 s.
const BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// How often histogram samples are folded into their buckets without a scrape.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder and its upkeep thread; `None` if one is
/// installed already.
pub fn install() -> Option<PrometheusHandle> {
    let handle =
        PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS).ok()?.install_recorder().ok()?;
    // `install_recorder` spawns no upkeep: histogram samples pile up until a scrape drains
    // them (about 45 bytes a request when nobody scrapes), so drain them on a timer. A thread,
    // not a task, so a busy or stopped runtime cannot starve it.
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new().name("metrics-upkeep".to_owned()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            upkeep.run_upkeep();
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread: histograms grow until scraped");
    }
    Some(handle)
}
