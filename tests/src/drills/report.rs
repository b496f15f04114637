//! A drill's figures: printed for whoever runs the test, and appended as one JSON line to the
//! file `$PLEXGATE_DRILL_REPORT` names (the `drills` binary renders those lines as
//! `docs/ha-drills.md`).
//!
//! Per load stream: requests sent, succeeded, failed by cause, latency (p50/p99/max, from
//! the intended send time) before, during and after the fault, and how long after the fault
//! the last failed request was sent. Per drill: its bound in words and its own figures
//! (propagation times, failover time, ...).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::load::{Latency, Run};

/// The variable naming the JSON-lines file reports are appended to.
pub const REPORT_ENV: &str = "PLEXGATE_DRILL_REPORT";
/// The variable naming a directory where every stream's requests are written as CSV
/// (`<test>-<stream>.csv`: seq, intended, started, finished in ms, outcome, instance, retried).
pub const RECORDS_ENV: &str = "PLEXGATE_DRILL_RECORDS";

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One load stream of a drill, summarised.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Its label.
    pub name: String,
    /// How it used connections.
    pub connections: String,
    /// Requests per second.
    pub rate: u32,
    /// Requests sent.
    pub sent: usize,
    /// Requests answered 200.
    pub succeeded: usize,
    /// Failed requests by cause.
    pub failed: BTreeMap<String, usize>,
    /// Requests the client sent a second time (stale keep-alive connection), by first cause.
    pub retried: BTreeMap<String, usize>,
    /// Latency of requests intended before the fault.
    pub before: Latency,
    /// ... between the fault and the recovery mark.
    pub during: Latency,
    /// ... after the recovery mark.
    pub after: Latency,
    /// How long after the fault the last failed request was intended.
    pub errors_stopped_after: Option<Duration>,
}

impl Stream {
    /// Summarises `run` with the fault at `fault` and recovery at `recovered` (offsets).
    pub fn of(run: &Run, fault: Duration, recovered: Duration) -> Stream {
        let end = run.end() + Duration::from_secs(1);
        Stream {
            name: run.spec.name.clone(),
            connections: run.spec.connections.label().to_owned(),
            rate: run.spec.rate,
            sent: run.sent(),
            succeeded: run.succeeded(),
            failed: run.failed_by_cause(),
            retried: run.retried_by_cause(),
            before: run.latency(Duration::ZERO, fault),
            during: run.latency(fault, recovered),
            after: run.latency(recovered, end),
            errors_stopped_after: run.errors_stopped_after(fault),
        }
    }

    /// Failed requests in total.
    pub fn failed_total(&self) -> usize {
        self.failed.values().sum()
    }

    fn json(&self) -> Value {
        let lat = |l: &Latency| json!({"n": l.n, "p50_ms": millis(l.p50), "p99_ms": millis(l.p99), "max_ms": millis(l.max)});
        json!({
            "name": self.name,
            "connections": self.connections,
            "rate": self.rate,
            "sent": self.sent,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retried": self.retried,
            "before": lat(&self.before),
            "during": lat(&self.during),
            "after": lat(&self.after),
            "errors_stopped_after_ms": self.errors_stopped_after.map(millis),
        })
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// A drill's report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The test function.
    pub test: String,
    /// What the drill does, in a few words.
    pub drill: String,
    /// The bound it asserts, in words.
    pub bound: String,
    /// Its load streams.
    pub streams: Vec<Stream>,
    /// Its own figures, in order.
    pub figures: Vec<(String, String)>,
    /// Why it did not run, if it did not.
    pub skipped: Option<String>,
}

impl Report {
    /// An empty report for `test`.
    pub fn new(test: &str, drill: &str, bound: &str) -> Report {
        Report { test: test.to_owned(), drill: drill.to_owned(), bound: bound.to_owned(), ..Report::default() }
    }

    /// Adds a stream summarised around `fault` and `recovered`; returns it.
    pub fn stream(&mut self, run: &Run, fault: Duration, recovered: Duration) -> Stream {
        let s = Stream::of(run, fault, recovered);
        if let Some(dir) = std::env::var_os(RECORDS_ENV) {
            let mut csv = String::from("seq,intended_ms,started_ms,finished_ms,outcome,instance,retried\n");
            for r in &run.records {
                let outcome = r.cause().unwrap_or("ok");
                let _ = writeln!(
                    csv,
                    "{},{:.1},{:.1},{:.1},{outcome},{},{}",
                    r.seq,
                    millis(r.intended),
                    millis(r.started),
                    millis(r.finished),
                    r.instance.as_deref().unwrap_or(""),
                    r.retried.as_deref().unwrap_or("")
                );
            }
            let _ = std::fs::create_dir_all(&dir);
            let path = std::path::Path::new(&dir).join(format!("{}-{}.csv", self.test, run.spec.name));
            std::fs::write(&path, csv).expect("write the records CSV");
        }
        self.streams.push(s.clone());
        s
    }

    /// Adds a figure.
    pub fn figure(&mut self, name: &str, value: impl std::fmt::Display) {
        self.figures.push((name.to_owned(), value.to_string()));
    }

    /// The machine's load average (1, 5, 15 minutes), as `/proc/loadavg` has it.
    pub fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
    }

    /// Prints the report and appends it to `$PLEXGATE_DRILL_REPORT` if set. Call it before
    /// asserting the bound, so a failed drill still reports its figures.
    pub fn emit(&mut self) {
        self.figure("load average at the end (1/5/15 min)", Report::loadavg());
        println!("{self}");
        if let Some(path) = std::env::var_os(REPORT_ENV) {
            let line = self.json().to_string();
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("open the drill report file");
            writeln!(f, "{line}").expect("write the drill report");
        }
    }

    /// The JSON line.
    pub fn json(&self) -> Value {
        json!({
            "test": self.test,
            "drill": self.drill,
            "bound": self.bound,
            "streams": self.streams.iter().map(Stream::json).collect::<Vec<_>>(),
            "figures": self.figures.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "skipped": self.skipped,
        })
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "=== drill {}: {}", self.test, self.drill)?;
        writeln!(f, "bound: {}", self.bound)?;
        if let Some(why) = &self.skipped {
            return writeln!(f, "SKIPPED: {why}");
        }
        for s in &self.streams {
            let mut failed = String::new();
            for (cause, n) in &s.failed {
                let _ = write!(failed, " [{n} {cause}]");
            }
            writeln!(f, "load `{}` ({}, {} req/s):", s.name, s.connections, s.rate)?;
            writeln!(f, "  sent {}, succeeded {}, failed {}{}", s.sent, s.succeeded, s.failed_total(), failed)?;
            if !s.retried.is_empty() {
                writeln!(f, "  sent twice by the client (stale keep-alive connection): {:?}", s.retried)?;
            }
            for (phase, l) in [("before", &s.before), ("during", &s.during), ("after", &s.after)] {
                writeln!(f, "  {phase:<6} n={:<5} p50 {:>9}  p99 {:>9}  max {:>9}", l.n, ms(l.p50), ms(l.p99), ms(l.max))?;
            }
            match s.errors_stopped_after {
                Some(d) => writeln!(f, "  errors stopped {} after the fault", ms(d))?,
                None => writeln!(f, "  no errors")?,
            }
        }
        for (k, v) in &self.figures {
            writeln!(f, "{k}: {v}")?;
        }
        Ok(())
    }
}
