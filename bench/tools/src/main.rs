//! `plexbench`: the two helpers bench/run needs that no Debian package provides.
//!
//! - `plexbench load URL [options]`: an HTTP/1.1 load generator over plain TCP or TLS (with an
//!   optional client certificate, which wrk lacks). `--rate R` runs the open model: requests
//!   are due at fixed times (R per second over all connections). A request whose connection
//!   was still waiting for the previous answer when it fell due is timed from when it was due,
//!   not from when it could be sent, so a stalled server is not hidden by the generator waiting
//!   for it (wrk2's coordinated-omission correction); one that was only sent late because the
//!   timer woke late is timed from when it was sent.
//!   Without `--rate` it is a closed loop like wrk. Prints one JSON line.
//! - `plexbench serve-json --port P --cert C --key K --ca CA`: the bare hyper + rustls server
//!   that answers the caching service's `GET /cache/{key}` and `POST /cache-list/{map}` /
//!   `POST /cache` from a HashMap, with mutual TLS like the caching service. It is the upper
//!   bound of an HTTPS JSON service here: same TLS library, same HTTP library, no storage.
//! - `plexbench proxy --port P --cert C --key K --upstream HOST:PORT`: the thread-per-core bare
//!   HTTPS reverse proxy, the bound of the gateway scenario (see `proxy.rs`).

mod load;
mod proxy;
mod serve;
mod tls;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("load") => load::main(&args[1..]),
        Some("serve-json") => serve::main(&args[1..]),
        Some("proxy") => proxy::main(&args[1..]),
        _ => Err("usage: plexbench load URL [--rate R] [--connections C] [--duration S] [--warmup S] [--threads N] \
                  [--method M] [--body B] [-H 'Name: value']... [--cacert F] [--cert F --key F]\n       \
                  plexbench serve-json --port P --cert F --key F --ca F [--threads N]\n       \
                  plexbench proxy --port P --cert F --key F --upstream HOST:PORT [--threads N]"
            .to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plexbench: {e}");
            ExitCode::from(2)
        }
    }
}

/// A tokio runtime with `threads` workers (0: tokio's default, one per core).
pub fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        b.worker_threads(threads);
    }
    b.enable_all().build().map_err(|e| format!("runtime: {e}"))
}

/// Options as (name without dashes, value), in command-line order.
pub type Opts = Vec<(String, String)>;

/// Splits `args` into positional arguments and `--name value` options (every option takes a
/// value; repeated options keep every value).
pub fn parse_args(args: &[String]) -> Result<(Vec<String>, Opts), String> {
    let mut pos = Vec::new();
    let mut opts = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a.starts_with('-') && a.len() > 1 {
            let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
            opts.push((a.trim_start_matches('-').to_owned(), v.clone()));
        } else {
            pos.push(a.clone());
        }
    }
    Ok((pos, opts))
}

/// The last value of option `name`.
pub fn opt<'a>(opts: &'a [(String, String)], name: &str) -> Option<&'a str> {
    opts.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// The last value of option `name` parsed, or `default`.
pub fn opt_parse<T: std::str::FromStr>(opts: &[(String, String)], name: &str, default: T) -> Result<T, String> {
    match opt(opts, name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("--{name}: cannot read `{v}`")),
    }
}
