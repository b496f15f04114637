"""Scenario 6: bounded memory and many clients (issue 14).

6a: the gateway's RSS over BENCH_NOSCRAPE_REQUESTS (2,000,000) routed requests with a token while
nobody scrapes its metrics: histograms must be drained by the exporter's upkeep, not by a scrape.
6b: 1,000 and 10,000 concurrent keep-alive clients through the whole path (distributor -> gateway
-> nginx) and through HAProxy tcp -> HAProxy http+jwt_verify: errors, listen-queue overflows and
memory per open connection.
"""

import os
import threading
import time

from benchlib import measure, peers
from benchlib import report as R
from benchlib.common import log, quiet_wait
from benchlib.procs import backlog, listen_overflows, status_kb

NOSCRAPE_REQUESTS = int(os.environ.get("BENCH_NOSCRAPE_REQUESTS", "2000000"))
# Seconds per wrk run of 6a; RSS is read after each.
NOSCRAPE_CHUNK = 10
MANY = [int(x) for x in os.environ.get("BENCH_MANY_CLIENTS", "1000,10000").split(",") if x.strip()]


def mb(kb):
    return "n/a" if kb is None else f"{kb / 1024:.1f} MB"


def scenario6(run, env):
    p = env.p
    bearer = f"Authorization: Bearer {env.token}"
    small = peers.SMALL_PATH

    # --- 6a: no scrape ------------------------------------------------------------------------
    gw = env.pg["gateway-lpar1"].pid
    url = f"https://127.0.0.1:{p['gw1']}/nginxjwt{small}"
    quiet_wait(run, "S6a requests without a scrape")
    samples = [(0, status_kb(gw, "VmRSS"))]
    total, errors, cmd = 0, 0, ""
    while total < NOSCRAPE_REQUESTS:
        d = measure.wrk(url, env.report_lua, 64, NOSCRAPE_CHUNK, headers=(bearer,))
        total += d["requests"]
        errors += d["errors"] + d["non2xx"]
        cmd = d["cmd"]
        samples.append((total, status_kb(gw, "VmRSS")))
        log(f"S6a {total:,} requests without a scrape: gateway RSS {mb(samples[-1][1])}")
    run.cmd("S6a requests without a scrape (repeated until the total is reached)", cmd)
    # The first run warms the allocator and the pools; growth is measured from its end.
    (n0, r0), (n1, r1) = samples[1], samples[-1]
    per_req = (r1 - r0) * 1024 / max(1, n1 - n0) if r0 and r1 else None
    rows = [(f"{n:,}", mb(kb)) for n, kb in samples]
    text = (R.table(["routed requests (RS256 token), nobody scraping", "gateway lpar1 RSS"], rows)
            + f"\n\nFrom {n0:,} to {n1:,} requests the RSS moved {((r1 or 0) - (r0 or 0)) / 1024:+.1f} MB "
            f"({per_req:+.1f} bytes a request); {errors} errors or non-2xx answers. Before the exporter's upkeep ran "
            f"(issue 14), the same gateway grew about 45 bytes a request (39 -> 60 MB over 360k requests).")
    run.headline.append(("Gateway RSS growth without a scrape, bytes per request", per_req, 1.0, False, "B"))
    run.sections["6a"] = text

    # --- 6b: many clients ---------------------------------------------------------------------
    chains = (("distributor -> gateway", f"https://127.0.0.1:{p['dist_chain']}/nginxjwt{small}", ("distributor-chain", "gateway-lpar1")),
              ("HAProxy tcp -> HAProxy http+jwt_verify", f"https://127.0.0.1:{p['hap_l4_chain']}{small}", ("haproxy-l4", "haproxy-l7")))
    rows = []
    notes = []
    per_conn = {}
    for conns in MANY:
        for label, u, procs in chains:
            pids = {n: env.pg[n].pid for n in procs}
            quiet_wait(run, f"S6b {conns} connections / {label}")
            idle = {n: status_kb(pid, "VmRSS") for n, pid in pids.items()}
            sampled = {}
            seconds = 10

            def sample(pids=pids, sampled=sampled, at=seconds * 0.7):
                time.sleep(at)
                sampled.update({n: status_kb(pid, "VmRSS") for n, pid in pids.items()})

            t = threading.Thread(target=sample)
            before = listen_overflows()
            t.start()
            d = measure.wrk(u, env.report_lua, conns, seconds, headers=(bearer,), timeout_s=30)
            t.join()
            overflows = listen_overflows() - before
            run.cmd(f"S6b {conns} connections / {label}", d["cmd"])
            log(f"S6b {conns} connections / {label}: {d['rps']:,.0f} req/s, {d['errors']} errors, {d['non2xx']} non-2xx, "
                f"{overflows} listen overflows, RSS {', '.join(f'{n} {mb(idle[n])} -> {mb(sampled.get(n))}' for n in procs)}")
            grown = sum((sampled.get(n) or 0) - (idle[n] or 0) for n in procs)
            per_conn.setdefault(conns, {})[label] = grown / conns
            if label.startswith("distributor"):
                run.headline.append((f"Whole path socket errors and non-2xx with {conns:,} keep-alive clients", d["errors"] + d["non2xx"], 0,
                                     False, "errors"))
            rows.append((f"{conns:,}", label, f"{d['rps']:,.0f}", f"{d['p99_ms']:.1f} ms", f"{d['errors']} / {d['non2xx']}", str(overflows),
                         "; ".join(f"{n} {mb(idle[n])} -> {mb(sampled.get(n))}" for n in procs), f"{grown / conns:.1f} KB"))
            if d["errors"] or d["non2xx"]:
                run.problems.append(f"S6b {conns} connections / {label}: {d['errors']} socket errors, {d['non2xx']} non-2xx")
    for conns, by in per_conn.items():
        pg, hp = by.get(chains[0][0]), by.get(chains[1][0])
        run.headline.append((f"Whole path memory per open connection vs HAProxy's, {conns:,} clients", R.ratio(pg, hp), 1.0, False))
    notes.append(f"Accept-queue limits asked for (ss Send-Q): distributor {backlog(p['dist_chain'])}, gateway {backlog(p['gw1'])}, "
                 f"HAProxy tcp {backlog(p['hap_l4_chain'])}, HAProxy http {backlog(p['hap_jwt'])}, nginx {backlog(p['nginx'])}.")
    run.sections["6b"] = (R.table(["clients", "chain", "req/s", "p99", "socket errors / non-2xx", "listen overflows",
                                   "RSS before -> with the clients", "RSS per connection (both processes)"], rows)
                          + "\n\n" + " ".join(notes))
