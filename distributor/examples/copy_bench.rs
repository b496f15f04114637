//! Micro-benchmark of the distributor's data path: bulk TCP throughput on loopback through a
//! forwarder that copies with tokio (user-space buffer, 16 or 64 KiB) or with Linux splice
//! (kernel only), against a direct connection.
//!
//! `cargo run --release -p plexgate-distributor --example copy_bench -- [MiB per stream] [streams] [rounds]`
//!
//! Source, forwarder and sink share one 2-worker runtime, as a distributor shares a host
//! with its gateways; the figures are for comparing the modes, not absolute.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, Debug)]
enum Mode {
    Direct,
    Copy16k,
    Copy64k,
    Splice,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let mib = args.first().copied().unwrap_or(1024);
    let streams = args.get(1).copied().unwrap_or(1);
    let rounds = args.get(2).copied().unwrap_or(3);
    let sink = spawn_sink().await?;
    println!("{streams} stream(s) x {mib} MiB, best of {rounds}");
    for mode in [Mode::Direct, Mode::Copy16k, Mode::Copy64k, Mode::Splice] {
        let target = match mode {
            Mode::Direct => sink,
            _ => spawn_forwarder(mode, sink).await?,
        };
        let mut best = Duration::MAX;
        let cpu_before = cpu_time();
        for _ in 0..rounds {
            let started = Instant::now();
            let sends: Vec<_> = (0..streams).map(|_| tokio::spawn(send(target, mib))).collect();
            for s in sends {
                s.await.map_err(std::io::Error::other)??;
            }
            best = best.min(started.elapsed());
        }
        let gib = (rounds * streams * mib) as f64 / 1024.0;
        let cpu_per_gib = (cpu_time() - cpu_before).as_secs_f64() * 1000.0 / gib;
        let gbit = (streams * mib * 1024 * 1024 * 8) as f64 / best.as_secs_f64() / 1e9;
        println!("{mode:?}: {gbit:.1} Gbit/s (best {best:?}); CPU {cpu_per_gib:.0} ms per GiB (source + forwarder + sink)");
    }
    Ok(())
}

/// User + system CPU time of this process so far (from /proc/self/stat, in clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name, from field 3 on; utime is field 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

/// Writes `mib` MiB, half-closes, waits for the far end to close (so every byte arrived).
async fn send(to: SocketAddr, mib: u64) -> std::io::Result<()> {
    let mut s = TcpStream::connect(to).await?;
    let chunk = vec![7u8; 1024 * 1024];
    for _ in 0..mib {
        s.write_all(&chunk).await?;
    }
    s.shutdown().await?;
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await?;
    Ok(())
}

/// Reads every connection to its end, then closes it.
async fn spawn_sink() -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

async fn spawn_forwarder(mode: Mode, to: SocketAddr) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut client, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut upstream) = TcpStream::connect(to).await else { return };
                let _ = match mode {
                    Mode::Copy16k => tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, 16 * 1024, 16 * 1024).await,
                    Mode::Copy64k => tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, 64 * 1024, 64 * 1024).await,
                    Mode::Splice => plexgate_distributor::splice::copy_bidirectional(&client, &upstream).await,
                    Mode::Direct => Ok((0, 0)),
                };
            });
        }
    });
    Ok(addr)
}
