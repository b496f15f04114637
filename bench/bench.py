#!/usr/bin/env python3
"""The benchmark of issue 8: plexgate against HAProxy and nginx, side by side in one run.

Started by bench/run (which installs the peers and builds the binaries). Everything runs on
127.0.0.1 ports the kernel hands out, in a temporary directory, and is stopped on exit.
Each scenario alternates plexgate and its peer (order reversed every round), several rounds,
and reports medians; docs/benchmarks.md is written at the end of a full run.

Environment: BENCH_ROUNDS (3), BENCH_DURATION (seconds per closed-loop run, 6),
BENCH_OPEN_DURATION (seconds per fixed-rate run, 5), BENCH_ONLY (e.g. "1,4": run only those
scenarios; the report then goes to the temporary directory, not docs/), BENCH_KEEP=1 (keep the
temporary directory), BENCH_MAX_WAIT (seconds to wait for other cargo/rustc jobs before each
measurement, 1800), BENCH_NOSCRAPE_REQUESTS (scenario 6a, 2000000), BENCH_MANY_CLIENTS
(scenario 6b, "1000,10000").
"""

import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

from benchlib import peers
from benchlib import report as R
from benchlib.common import (C_CACHE, C_OPEN, DUR, FRESH_TOKENS, FULL, ONLY, OPEN_DUR, PLEXBENCH, PLEXGATE, ROOT, ROUNDS,
                             BUSY_LIMIT, FOREIGN_LIMIT, OPEN_SHARE, WARMUP, Run, log, tokio_workers)
from benchlib.procs import Procs
from benchlib.clients import scenario6
from benchlib.scenarios import scenario1, scenario2, scenario3, scenario4
from benchlib.setup import Env
from benchlib.startup import scenario5

# --- report --------------------------------------------------------------------------------

def source_revision():
    """The commit the binary was built from, and whether the Rust sources differed from it."""
    def sh(cmd):
        return subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = sh("git status --porcelain --untracked-files=no -- . ':!docs' ':!bench' ':!*.md'")
    return sh("git rev-parse --short HEAD") + (" + uncommitted changes to the sources" if dirty else "")


def machine(revision):
    def sh(cmd):
        r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
        return (r.stdout or r.stderr).strip()
    model = sh("lscpu | sed -n 's/^Model name:[[:space:]]*//p'")
    mem = sh("free -m | awk '/^Mem:/ {print $2}'")
    return {
        "nproc": sh("nproc"),
        "cpu": model,
        "memory": f"{mem} MiB",
        "kernel": platform.release(),
        "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
        "tmpfs": sh(f"stat -f -c %T {tempfile.gettempdir()}"),
        "tw_reuse": sh("cat /proc/sys/net/ipv4/tcp_tw_reuse"),
        "nofile": sh("ulimit -n"),
        "versions": {
            "plexgate": revision,
            "rustc": sh("rustc --version"),
            "haproxy": sh("haproxy -v | head -1"),
            "nginx": sh("nginx -v 2>&1"),
            "wrk": sh("wrk -v 2>&1 | head -1"),
            "redis": sh("redis-server --version"),
            "openssl": sh("openssl version"),
            "python": platform.python_version(),
        },
    }


def write_report(run, m, started, path, workers_seen):
    took = time.time() - started
    L = []
    L.append("# Benchmarks: plexgate against HAProxy and nginx\n")
    L.append(f"Measured by `bench/run` on {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} in {took / 60:.1f} minutes "
             f"({run.waited_s / 60:.1f} of them waiting for other sessions' jobs on this shared machine; {run.repeated} "
             f"measurements repeated because another process ran during them) (issues 8 and 14). Every figure below comes from that one run: {ROUNDS} rounds per comparison, plexgate and its peer "
             f"alternating (order reversed every round), medians with ± half the range between rounds. "
             f"Targets are reported, not enforced.\n")
    L.append("## Headline\n")
    rows = []
    for entry in run.headline:
        what, r, target, higher = entry[:4]
        unit = entry[4] if len(entry) > 4 else "x"
        if unit == "x":
            value, goal = R.fmt_ratio(r), "-" if target is None else f"{'>=' if higher else '<='} {target}x"
        else:
            value, goal = ("n/a" if r is None else f"{r:.1f} {unit}"), "-" if target is None else f"<= {target} {unit}"
        rows.append((what, value, goal, "-" if target is None else R.verdict(r, target, higher)))
    L.append(R.table(["plexgate vs peer", "plexgate/peer (median), or value", "target", ""], rows) + "\n")
    if run.problems or run.contended:
        L.append("## Problems seen in this run\n")
        L.extend(f"- {p}" for p in run.problems)
        L.extend(f"- measured while another cargo/rustc job ran: {c}" for c in run.contended)
        L.append("")
    L.append("## Machine and versions\n")
    L.append(f"- {m['nproc']} CPUs: {m['cpu']}; {m['memory']} memory; {m['os']}, Linux {m['kernel']}")
    L.append(f"- temporary files (durable store) on `{m['tmpfs']}`; `net.ipv4.tcp_tw_reuse` = {m['tw_reuse']}; open-files limit {m['nofile']}")
    L.extend(f"- {k}: {v}" for k, v in m["versions"].items())
    L.append("")
    L.append("## Method\n")
    lag = f"median {R.num(R.median(run.lags_ms), 'ms')}, largest {R.num(max(run.lags_ms, default=None), 'ms')}"
    L.append(f"""\
- Everything runs on 127.0.0.1, on ports the kernel handed out, in a temporary directory. Load generator, proxies and nginx
  share the {m['nproc']} CPUs, so every figure includes the load generator's own CPU use (the same for both sides).
- Threads: HAProxy `nbthread 2`. plexgate's processes run as shipped: tokio starts one worker per CPU, so 2 here, the same
  as HAProxy (threads named `tokio-rt-worker` at start, workers plus any blocking-pool threads: {workers_seen}).
  nginx `worker_processes 2` (the common upstream); wrk `-t2`; plexbench 2 threads in closed loop, 1 at a fixed rate.
- Upstream for everyone: nginx 1.22 answering a fixed {len(peers.SMALL_BODY)}-byte body (`{peers.SMALL_PATH}`) or a 1 MiB
  file (`{peers.BIG_PATH}`, sendfile). "direct" = the load generator straight to nginx.
- Closed loop: `wrk` (Debian's wrk 4.1, not wrk2), {DUR} s per run after one {WARMUP} s warm-up per side; results are read
  from a Lua `done()` hook (exact counts and percentiles). HTTPS: wrk (OpenSSL) to the gateway or HAProxy, both serving the
  gateway's development certificate (RSA 2048).
- Fixed rate (open model): `plexbench load --rate R` (bench/tools: hyper 1 + rustls), {C_OPEN} keep-alive connections,
  {OPEN_DUR} s after 1 s unrecorded warm-up, R = {OPEN_SHARE:.0%} of the slower side's closed-loop median, the same R for both
  sides. A request whose connection was still busy when it fell due is timed from when it was due, so a stalled server is
  not hidden by the generator waiting (wrk2's correction); one sent late only because the generator's timer woke late
  (tokio's timer has millisecond resolution) is timed from when it was sent. The generator's own send lag, p99 per run:
  {lag}. h2load was not used for latency: its `--rps` is per client and it prints no percentiles.
- Shared machine: before every measurement the driver waits while another cargo/rustc process runs or the CPUs are more
  than {int(BUSY_LIMIT * 100)}% busy, and it repeats a measurement (up to 6 times) when processes outside the benchmark,
  or the hypervisor (steal time), took more than {int(FOREIGN_LIMIT * 100)}% of the CPUs during it; measurements it had to
  keep anyway are listed under "Problems".
- Every process inherits the shell's open-files limit ({m['nofile']}).
- Scenario 1: the distributor's one target is nginx (`targets: [{{address: ...}}]`). Its HTTPS health check cannot pass
  against plain-HTTP nginx, so the target is marked down after the first check (interval set to 60 s); a down target is
  still tried when no healthy one exists, so every connection is forwarded (selection cost: one list extend).
- Scenario 2: nginx as two static API services (`bypass` and `zoweJwt`). HAProxy `mode http` forwards to the same nginx;
  its jwt_verify frontend checks presence, `alg` = RS256, `iss` = APIML, the RS256 signature with the gateway's public key
  (`openssl x509 -pubkey` of server.pem: HAProxy 2.6 reads a public key, not a certificate) and `exp`. The fresh-token
  case (c) uses gateway lpar2 with `tokenCacheSize: 0` (every request verifies its signature: the cache-miss path) and a
  wrk Lua script giving every request the next of {FRESH_TOKENS} tokens minted by {FRESH_TOKENS} logins; HAProxy gets the
  same script and tokens.
- Logging: plexgate as shipped (info level, one access-log line per routed request, to a file); HAProxy without a `log`
  line; nginx `access_log off`. Scenario 2a also runs gateway lpar3, lpar1's configuration with `PLEXGATE_LOG=warn`, to
  show what the access log costs.
- Scenario 4: the caching service needs a TLS client certificate, which wrk cannot present, so `plexbench` (closed loop,
  {C_CACHE} connections) drives both the caching service and its bound, with the workspace's client certificate.
""")

    L.extend(f"- {n}" for n in run.notes)
    L.append("")
    titles = {1: "1. L4: distributor vs HAProxy `mode tcp` (plain HTTP through both, nginx behind)",
              2: "2. Gateway vs HAProxy `mode http` (HTTPS, routed GET to nginx)",
              3: "3. Whole path: client -> distributor -> gateway -> nginx vs client -> HAProxy tcp -> HAProxy http + jwt_verify -> nginx",
              "3mem": "3b. Memory of both chains under 1000 concurrent connections",
              4: "4. Caching service (mutual TLS) vs a bare hyper + rustls server answering the same JSON from memory",
              5: "5. `plexgate up`: memory of each process and time to the first login",
              "6a": "6a. Gateway memory over many requests with nobody scraping its metrics",
              "6b": "6b. Many concurrent keep-alive clients through the whole path",
              "logs": "Logs"}
    for k, title in titles.items():
        if k in run.sections:
            L.append(f"## {title}\n")
            L.append(run.sections[k] + "\n")
    L.append("## Exact commands of this run\n")
    L.append("Ports are this run's; commands run from the repository root; `$TMP` is the run's temporary directory and "
             "`$TOKEN` / `$DEMO_TOKEN` login tokens of the users `bench` / `demo` (`POST /gateway/api/v1/auth/login`). `bench/run` runs all of them; "
             "`BENCH_ONLY=2 bench/run` runs one scenario (its report then goes to the temporary directory, not here).\n")
    L.append(R.details("commands", "\n".join(f"# {label}\n{c}" for label, c in run.commands), "sh"))
    L.append("## Configuration files of this run\n")
    for name, text in run.files.items():
        lang = "yaml" if name.endswith((".yaml", ".yml")) else "nginx" if name.endswith(".conf") else ""
        L.append(R.details(name, text, lang))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(run.shorten("\n".join(L)))
    log(f"report written to {path}")


def raise_open_files(want=1 << 17):
    """10,000 clients need about 20,000 descriptors in the distributor and in the gateway (each
    client connection has its upstream one) and more in wrk: raise the limit every process
    inherits, the hard one too when allowed (root), else the soft one to the hard."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in ((max(want, hard), max(want, hard)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    log(f"open-files limit {soft}/{hard} -> {'/'.join(map(str, resource.getrlimit(resource.RLIMIT_NOFILE)))}")


def main():
    for tool in (PLEXGATE, PLEXBENCH):
        if not os.access(tool, os.X_OK):
            sys.exit(f"{tool} is missing: run bench/run (it builds it)")
    raise_open_files()
    tmp = tempfile.mkdtemp(prefix="plexgate-bench.")
    os.chmod(tmp, 0o755)
    run = Run(tmp)
    procs = Procs(os.path.join(tmp, "logs"))

    def on_signal(sig, _frame):
        log(f"signal {sig}: stopping everything")
        procs.stop_all()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)
        sys.exit(130)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.time()
    revision = source_revision()
    log(f"temporary directory {tmp}; {ROUNDS} rounds x {DUR} s (fixed rate {OPEN_DUR} s); scenarios {sorted(ONLY)}")
    workers_seen = "n/a"
    try:
        env = Env(run, procs)
        env.start_nginx()
        env.prepare_plexgate()
        if ONLY & {1, 2, 3, 6}:
            env.start_haproxy()
            env.start_plexgate()
            env.mint_tokens()
            rows = env.checks()
            for r in rows:
                log(f"check {r[0]}: expected {r[1]}, got {r[2]} {r[3]}")
            workers_seen = ", ".join(f"{n} {tokio_workers(p.pid)}" for n, p in env.pg.items() if not n.startswith(("haproxy", "bare")))
            for n in ("haproxy-l4", "haproxy-l7"):
                pid = env.pg[n].pid
                workers_seen += f"; {n} {len(os.listdir(f'/proc/{pid}/task'))} threads"
        steps = [(1, lambda: scenario1(run, env)), (2, lambda: scenario2(run, env)), (3, lambda: scenario3(run, env)),
                 (6, lambda: scenario6(run, env))]
        for n, fn in steps:
            if n in ONLY:
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - one broken scenario must not lose the others
                    run.problems.append(f"scenario {n} failed: {e}")
                    traceback.print_exc()
        env.stop()
        if 4 in ONLY:
            try:
                scenario4(run, procs, tmp, env.ws, env.tls)
            except Exception as e:  # noqa: BLE001
                run.problems.append(f"scenario 4 failed: {e}")
                traceback.print_exc()
        if 5 in ONLY:
            try:
                scenario5(run, procs, tmp, env.p["nginx"])
            except Exception as e:  # noqa: BLE001
                run.problems.append(f"scenario 5 failed: {e}")
                traceback.print_exc()
    finally:
        procs.stop_all()
    summary = R.log_summary(os.path.join(tmp, "logs"))
    if summary:
        run.sections["logs"] = ("Warnings and errors the processes logged during this run, counted by message:\n\n"
                                + R.details("log summary", summary))
    path = os.path.join(ROOT, "docs", "benchmarks.md") if FULL else os.path.join(tmp, "benchmarks.md")
    write_report(run, machine(revision), started, path, workers_seen)
    with open(path) as f:
        text = f.read()
    print(text.split("## Machine and versions")[0])
    if os.environ.get("BENCH_KEEP") != "1" and FULL:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        log(f"kept {tmp} (logs, configurations)")
    return 1 if any(p.startswith("scenario") for p in run.problems) else 0


if __name__ == "__main__":
    sys.exit(main())
