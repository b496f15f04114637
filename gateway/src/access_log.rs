//! The access log: one line per routed request, target `plexgate::access`, level INFO.
//!
//! Formatted here rather than by tracing's fmt layer: its field visitor, timestamp and style
//! code cost about 3 us of the gateway's 16 us of user CPU per routed request (issue 14,
//! `python3 bench/profile.py compare`). The line is the one tracing wrote, byte for byte
//! (RFC 3339 time in microseconds, level, target, `request`, then the fields, strings quoted
//! and escaped as Rust's `Debug` does, so a hostile path cannot forge a line), and the filter
//! still decides (`PLEXGATE_LOG=warn` turns it off). The binary hands it to its batched
//! output ([`set_sink`]); without a sink (a library user, the crate's tests) the line goes
//! through tracing as before.

use std::cell::RefCell;
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::OnceLock;

/// The tracing target of access-log lines.
pub const TARGET: &str = "plexgate::access";

static SINK: OnceLock<fn(&[u8])> = OnceLock::new();

thread_local! {
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(512));
}

/// Where formatted lines go (once per process; later calls are ignored).
pub fn set_sink(sink: fn(&[u8])) {
    let _ = SINK.set(sink);
}

/// One routed request, as the access log tells it.
pub(crate) struct Entry<'a> {
    pub id: &'a str,
    pub client: IpAddr,
    pub user: &'a str,
    pub method: &'a http::Method,
    pub path: &'a str,
    pub service: &'a str,
    pub route: &'a str,
    pub instance: &'a str,
    pub attempts: u32,
    pub status: u16,
    pub upstream_millis: u64,
    pub millis: u64,
}

/// Logs `e`, if the filter lets INFO lines of [`TARGET`] through.
pub(crate) fn write(e: &Entry<'_>) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let Some(sink) = SINK.get() else {
        tracing::info!(target: TARGET, id = %e.id, client = %e.client, user = e.user, method = %e.method, path = e.path,
            service = e.service, route = e.route, instance = e.instance, attempts = e.attempts, status = e.status,
            upstream_millis = e.upstream_millis, millis = e.millis, "request");
        return;
    };
    LINE.with(|line| {
        let mut line = line.borrow_mut();
        line.clear();
        format(&mut line, e, std::time::SystemTime::now());
        sink(line.as_bytes());
    });
}

/// The line of `e` at `now`, with its newline.
fn format(out: &mut String, e: &Entry<'_>, now: std::time::SystemTime) {
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{}  INFO {TARGET}: request id={} client={} user={:?} method={} path={:?} service={:?} route={:?} instance={:?} attempts={} status={} upstream_millis={} millis={}",
        humantime::format_rfc3339_micros(now),
        e.id,
        e.client,
        e.user,
        e.method,
        e.path,
        e.service,
        e.route,
        e.instance,
        e.attempts,
        e.status,
        e.upstream_millis,
        e.millis
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_the_one_tracing_wrote_and_hostile_strings_stay_inside_their_quotes() {
        let e = Entry {
            id: "d680f0fc-1",
            client: "127.0.0.1".parse().unwrap(),
            user: "-",
            method: &http::Method::GET,
            path: "/nginxopen/api/v1/small",
            service: "nginxopen",
            route: "api/v1",
            instance: "127.0.0.1:nginxopen:48889",
            attempts: 1,
            status: 200,
            upstream_millis: 0,
            millis: 3,
        };
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_796_320_106_811_244);
        let mut line = String::new();
        format(&mut line, &e, at);
        assert_eq!(
            line,
            "2026-12-03T17:48:26.811244Z  INFO plexgate::access: request id=d680f0fc-1 client=127.0.0.1 user=\"-\" method=GET \
             path=\"/nginxopen/api/v1/small\" service=\"nginxopen\" route=\"api/v1\" instance=\"127.0.0.1:nginxopen:48889\" \
             attempts=1 status=200 upstream_millis=0 millis=3\n"
        );
        let hostile = Entry { path: "/a\"\n2026 ERROR forged=\"x", user: "u\\\"", ..e };
        line.clear();
        format(&mut line, &hostile, at);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.contains(r#"path="/a\"\n2026 ERROR forged=\"x""#) && line.contains(r#"user="u\\\"""#), "{line}");
    }
}
