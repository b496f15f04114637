"""Scenarios 1-4: L4, gateway, whole path, caching service."""

import json
import os
import threading
import time

from benchlib import logout, measure, peers, topology
from benchlib import report as R
from benchlib.common import (C_BIG, C_CACHE, C_CLOSE, C_OPEN, C_SMALL, FRESH_TOKENS, OPEN_DUR, PLEXBENCH, PLEXGATE, alternate,
                             distributor_targets, med, open_rate, quiet_wait, request, vals, wait_until, with_cpu)
from benchlib.procs import backlog, cmdline, free_port, listen_overflows, status_kb


def scenario1(run, env):
    p = env.p
    small = peers.SMALL_PATH
    targets = {"direct": p["nginx"], "distributor": p["dist_l4"], "HAProxy tcp": p["hap_l4"]}
    # Whose CPU a request costs (nginx, behind every side, is left out).
    cpu = {"direct": [], "distributor": [env.pg["distributor-l4"]], "HAProxy tcp": [env.pg["haproxy-l4"]]}

    def sides(path, conns, headers=()):
        return [(n, with_cpu(lambda s, port=port: measure.wrk(f"http://127.0.0.1:{port}{path}", env.report_lua, conns, s, headers=headers),
                             cpu[n]))
                for n, port in targets.items()]

    ka = alternate(run, "S1 keep-alive small", sides(small, C_SMALL))
    close = alternate(run, "S1 new connection per request", sides(small, C_CLOSE, ("Connection: close",)))
    big = alternate(run, "S1 1 MiB responses", sides(peers.BIG_PATH, C_BIG))
    rate = open_rate(med(ka, "distributor", "rps"), med(ka, "HAProxy tcp", "rps"))
    opn = alternate(run, f"S1 fixed rate {rate} req/s", [
        (n, lambda s, port=port: measure.plexbench(PLEXBENCH, f"http://127.0.0.1:{port}{small}", C_OPEN, s, rate=rate, threads=1))
        for n, port in targets.items()], seconds=OPEN_DUR)

    rows = []

    def row(what, res, key, unit, higher=True, target_direct=None, target_hap=None):
        d, x, h = (vals(res, n, key) for n in ("direct", "distributor", "HAProxy tcp"))
        rd, rh = R.ratio(R.median(x), R.median(d)), R.ratio(R.median(x), R.median(h))
        rows.append((what, R.with_spread(d, unit), R.with_spread(x, unit), R.with_spread(h, unit), R.fmt_ratio(rd), R.fmt_ratio(rh)))
        return rd, rh

    rd, rh = row(f"keep-alive, {len(peers.SMALL_BODY)} B responses, req/s (wrk -c{C_SMALL})", ka, "rps", "")
    run.headline.append(("Distributor req/s vs HAProxy tcp (keep-alive)", rh, 1.2, True))
    run.headline.append(("Distributor req/s vs direct (keep-alive)", rd, 0.6, True))
    row("  p50 latency, closed loop", ka, "p50_ms", "ms")
    row("  p99 latency, closed loop", ka, "p99_ms", "ms")
    _, rcpu = row("  CPU per request, us (user+sys of the distributor or HAProxy; lower is better)", ka, "cpu_us", "")
    run.headline.append(("Distributor CPU per request vs HAProxy tcp's (keep-alive; lower is better)", rcpu, None, False))
    row(f"  p50 latency at a fixed {rate:,} req/s (open model)", opn, "p50_ms", "ms")
    _, rp = row(f"  p99 latency at a fixed {rate:,} req/s (open model)", opn, "p99_ms", "ms")
    run.headline.append((f"Distributor p99 at a fixed {rate:,} req/s vs HAProxy tcp's", rp, 1.0, False))
    row(f"  p99.9 latency at a fixed {rate:,} req/s (open model)", opn, "p999_ms", "ms")
    _, rc = row(f"new connection per request, conn/s (wrk -c{C_CLOSE} -H 'Connection: close')", close, "rps", "")
    row("  CPU per connection, us", close, "cpu_us", "")
    run.headline.append(("Distributor conn/s vs HAProxy tcp (Connection: close)", rc, 1.0, True))
    _, rb = row(f"1 MiB responses, MiB/s (wrk -c{C_BIG})", big, "mibps", "")
    row("  CPU per 1 MiB response, us", big, "cpu_us", "")
    run.headline.append(("Distributor 1 MiB throughput vs HAProxy tcp", rb, 1.0, True))
    text = R.table(["measure", "direct (nginx)", "distributor", "HAProxy tcp", "distributor/direct", "distributor/HAProxy"], rows)
    run.sections[1] = text


def scenario2(run, env):
    p, ctx_ca = env.p, env.tls.ca
    small = peers.SMALL_PATH
    bearer = f"Authorization: Bearer {env.token}"

    def w(port, path, headers=(), tokens=False):
        def f(s):
            if tokens:
                e = dict(os.environ, BENCH_TOKENS=env.tokens_file)
                return measure.wrk(f"https://127.0.0.1:{port}{path}", env.tokens_lua, C_SMALL, s, env=e)
            return measure.wrk(f"https://127.0.0.1:{port}{path}", env.report_lua, C_SMALL, s, headers=headers)
        # The CPU of the process serving that port, per request.
        serving = {p["gw1"]: "gateway-lpar1", p["gw2"]: "gateway-lpar2", p["gw3"]: "gateway-lpar3", p["hap_open"]: "haproxy-l7",
                   p["hap_jwt"]: "haproxy-l7", p["bare_proxy"]: "bare-proxy"}
        return with_cpu(f, [env.pg[serving[port]]])

    def o(port, path, rate, headers=()):
        return lambda s: measure.plexbench(PLEXBENCH, f"https://127.0.0.1:{port}{path}", C_OPEN, s, rate=rate, threads=1,
                                           headers=headers, cacert=ctx_ca)

    a = alternate(run, "S2a routed GET, no auth", [
        ("gateway", w(p["gw1"], "/nginxopen" + small)), ("HAProxy http", w(p["hap_open"], small)),
        ("gateway, PLEXGATE_LOG=warn", w(p["gw3"], "/nginxopen" + small)),
        ("bare thread-per-core proxy", w(p["bare_proxy"], small))])
    b = alternate(run, "S2b routed GET, RS256 token", [
        ("gateway", w(p["gw1"], "/nginxjwt" + small, (bearer,))), ("HAProxy jwt_verify", w(p["hap_jwt"], small, (bearer,)))])
    c = alternate(run, f"S2c fresh token per request ({FRESH_TOKENS} tokens)", [
        ("gateway, token cache off", w(p["gw2"], "/nginxjwt" + small, tokens=True)),
        ("HAProxy jwt_verify", w(p["hap_jwt"], small, tokens=True))])
    ra = open_rate(med(a, "gateway", "rps"), med(a, "HAProxy http", "rps"))
    oa = alternate(run, f"S2a fixed rate {ra} req/s", [
        ("gateway", o(p["gw1"], "/nginxopen" + small, ra)), ("HAProxy http", o(p["hap_open"], small, ra))], seconds=OPEN_DUR)
    rb = open_rate(med(b, "gateway", "rps"), med(b, "HAProxy jwt_verify", "rps"))
    ob = alternate(run, f"S2b fixed rate {rb} req/s", [
        ("gateway", o(p["gw1"], "/nginxjwt" + small, rb, (bearer,))),
        ("HAProxy jwt_verify", o(p["hap_jwt"], small, rb, (bearer,)))], seconds=OPEN_DUR)

    rows = []

    def row(what, res, pg, peer, key, unit="", peer_res=None):
        x, y = vals(res, pg, key), vals(peer_res or res, peer, key)
        r = R.ratio(R.median(x), R.median(y))
        rows.append((what, f"{pg}", R.with_spread(x, unit), f"{peer}", R.with_spread(y, unit), R.fmt_ratio(r)))
        return r

    row(f"(a) no auth, req/s (wrk -c{C_SMALL}, HTTPS keep-alive)", a, "gateway", "HAProxy http", "rps")
    row("(a) p99 latency, closed loop", a, "gateway", "HAProxy http", "p99_ms", "ms")
    row("(a) CPU per request, us (user+sys of the gateway or HAProxy; lower is better)", a, "gateway", "HAProxy http", "cpu_us")
    row("(a) CPU per request, us: the bare thread-per-core proxy", a, "bare thread-per-core proxy", "HAProxy http", "cpu_us")
    row("(a) no auth, access log off: gateway lpar3 with PLEXGATE_LOG=warn, req/s", a, "gateway, PLEXGATE_LOG=warn", "HAProxy http", "rps")
    r_bound = row("(a) no auth vs the bare thread-per-core hyper proxy (bench/tools proxy.rs), req/s", a, "gateway",
                  "bare thread-per-core proxy", "rps")
    row("(a) the bare thread-per-core proxy vs HAProxy http, req/s", a, "bare thread-per-core proxy", "HAProxy http", "rps")
    run.headline.append(("Gateway without auth vs the bare thread-per-core hyper proxy", r_bound, 0.8, True))
    row(f"(a) p50 latency at a fixed {ra:,} req/s", oa, "gateway", "HAProxy http", "p50_ms", "ms")
    rpa = row(f"(a) p99 latency at a fixed {ra:,} req/s", oa, "gateway", "HAProxy http", "p99_ms", "ms")
    run.headline.append((f"Gateway without auth, p99 at a fixed {ra:,} req/s vs HAProxy http's", rpa, 1.0, False))
    r_jwt = row("(b) RS256 token, req/s (gateway: verified-token cache on)", b, "gateway", "HAProxy jwt_verify", "rps")
    row("(b) p99 latency, closed loop", b, "gateway", "HAProxy jwt_verify", "p99_ms", "ms")
    rcpu_b = row("(b) CPU per request, us", b, "gateway", "HAProxy jwt_verify", "cpu_us")
    row(f"(b) p50 latency at a fixed {rb:,} req/s", ob, "gateway", "HAProxy jwt_verify", "p50_ms", "ms")
    rpb = row(f"(b) p99 latency at a fixed {rb:,} req/s", ob, "gateway", "HAProxy jwt_verify", "p99_ms", "ms")
    run.headline.append((f"Gateway with RS256 token, p99 at a fixed {rb:,} req/s vs HAProxy jwt_verify's", rpb, 1.0, False))
    r_auth_vs_open = row("(b) vs (a): gateway with token vs HAProxy http without auth, req/s", b, "gateway", "HAProxy http", "rps", peer_res=a)
    r_fresh = row(f"(c) a different token on every request ({FRESH_TOKENS} tokens cycled), req/s", c,
                  "gateway, token cache off", "HAProxy jwt_verify", "rps")
    row("(c) p99 latency, closed loop", c, "gateway, token cache off", "HAProxy jwt_verify", "p99_ms", "ms")
    row("(c) CPU per request, us", c, "gateway, token cache off", "HAProxy jwt_verify", "cpu_us")
    hit_vs_miss = R.ratio(med(b, "gateway", "rps"), med(c, "gateway, token cache off", "rps"))
    run.headline.append(("Gateway with RS256 token vs HAProxy http without auth", r_auth_vs_open, 1.0, True))
    run.headline.append(("Gateway CPU per request with RS256 token vs HAProxy jwt_verify's (lower is better)", rcpu_b, None, False))
    run.headline.append(("Gateway with RS256 token vs HAProxy jwt_verify", r_jwt, 1.5, True))
    run.headline.append(("Gateway, token verified on every request vs HAProxy jwt_verify", r_fresh, 1.0, True))
    run.headline.append(("Gateway without auth vs HAProxy http", R.ratio(med(a, "gateway", "rps"), med(a, "HAProxy http", "rps")), None, True))
    text = R.table(["measure", "plexgate", "median ±half-range", "peer", "median ±half-range", "plexgate/peer"], rows)
    text += f"\n\nVerified-token cache: the gateway with the cache (b) serves {R.fmt_ratio(hit_vs_miss)} the requests per second of the gateway that verifies every token (c)."
    run.sections[2] = text


def scenario3(run, env):
    p, ca = env.p, env.tls.ca
    small = peers.SMALL_PATH
    bearer = f"Authorization: Bearer {env.token}"
    pg_url = f"https://127.0.0.1:{p['dist_chain']}/nginxjwt{small}"
    hp_url = f"https://127.0.0.1:{p['hap_l4_chain']}{small}"
    res = alternate(run, "S3 whole path with RS256 token", [
        ("distributor -> gateway", with_cpu(lambda s: measure.wrk(pg_url, env.report_lua, C_SMALL, s, headers=(bearer,)),
                                            [env.pg["distributor-chain"], env.pg["gateway-lpar1"]])),
        ("HAProxy tcp -> HAProxy http+jwt_verify", with_cpu(lambda s: measure.wrk(hp_url, env.report_lua, C_SMALL, s, headers=(bearer,)),
                                                            [env.pg["haproxy-l4"], env.pg["haproxy-l7"]]))])
    a, b = "distributor -> gateway", "HAProxy tcp -> HAProxy http+jwt_verify"
    rate = open_rate(med(res, a, "rps"), med(res, b, "rps"))
    opn = alternate(run, f"S3 fixed rate {rate} req/s", [
        (a, lambda s: measure.plexbench(PLEXBENCH, pg_url, C_OPEN, s, rate=rate, threads=1, headers=(bearer,), cacert=ca)),
        (b, lambda s: measure.plexbench(PLEXBENCH, hp_url, C_OPEN, s, rate=rate, threads=1, headers=(bearer,), cacert=ca))],
        seconds=OPEN_DUR)
    rows = []
    for what, r, key, unit in ((f"req/s (wrk -c{C_SMALL}, HTTPS keep-alive)", res, "rps", ""),
                               ("p50 latency, closed loop", res, "p50_ms", "ms"),
                               ("p99 latency, closed loop", res, "p99_ms", "ms"),
                               ("CPU per request, us (user+sys of both proxies of the chain; lower is better)", res, "cpu_us", ""),
                               (f"p50 latency at a fixed {rate:,} req/s", opn, "p50_ms", "ms"),
                               (f"p99 latency at a fixed {rate:,} req/s", opn, "p99_ms", "ms"),
                               (f"p99.9 latency at a fixed {rate:,} req/s", opn, "p999_ms", "ms")):
        x, y = vals(r, a, key), vals(r, b, key)
        rows.append((what, R.with_spread(x, unit), R.with_spread(y, unit), R.fmt_ratio(R.ratio(R.median(x), R.median(y)))))
    run.headline.append(("Whole path req/s vs HAProxy tcp + http/jwt_verify", R.ratio(med(res, a, "rps"), med(res, b, "rps")), 1.0, True))
    run.headline.append(("Whole path CPU per request vs HAProxy's chain (lower is better)",
                         R.ratio(med(res, a, "cpu_us"), med(res, b, "cpu_us")), None, False))
    run.sections[3] = R.table(["measure", a, b, "plexgate/HAProxy"], rows)

    # Memory of both chains under 1000 concurrent connections (HTTPS keep-alive, token).
    mem_rows = []
    overflow_notes = []
    for label, url, procs in ((a, pg_url, ("distributor-chain", "gateway-lpar1")), (b, hp_url, ("haproxy-l4", "haproxy-l7"))):
        pids = {n: env.pg[n].pid for n in procs}
        idle = {n: status_kb(pid, "VmRSS") for n, pid in pids.items()}
        quiet_wait(run, f"S3 RSS under 1000 connections / {label}")
        sampled = {}

        def sample(pids=pids, sampled=sampled):
            time.sleep(5)
            sampled.update({n: status_kb(pid, "VmRSS") for n, pid in pids.items()})

        t = threading.Thread(target=sample)
        before = listen_overflows()
        t.start()
        d = measure.wrk(url, env.report_lua, 1000, 8, headers=(bearer,))
        t.join()
        overflow_notes.append(f"{label}: {listen_overflows() - before}")
        run.cmd(f"S3 1000 connections / {label}", d["cmd"])
        for n in procs:
            mem_rows.append((label, n, f"{idle[n] / 1024:.1f} MB", f"{(sampled.get(n) or 0) / 1024:.1f} MB",
                             f"{d['rps']:,.0f} req/s, {d['errors']} errors"))
    run.sections["3mem"] = (R.table(["chain", "process", "RSS before", "RSS with 1000 connections", "wrk -c1000"], mem_rows)
                            + f"\n\nThe distributor's view of its target afterwards: {distributor_targets(p['dist_chain_admin'])}. "
                            f"Connections the kernel dropped because a listen queue was full (TcpExt ListenOverflows) during "
                            f"each test: {'; '.join(overflow_notes)}. Accept-queue limits asked for (ss Send-Q): "
                            f"distributor {backlog(p['dist_chain'])}, gateway {backlog(p['gw1'])}, HAProxy tcp "
                            f"{backlog(p['hap_l4_chain'])}, HAProxy http {backlog(p['hap_jwt'])}, nginx {backlog(p['nginx'])}.")


def scenario4(run, procs, tmp, ws, tls):
    rport = free_port()
    red = procs.start("redis", ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", tmp])
    procs.wait_port(red, rport)
    servers = {}
    for mode in ("inMemory", "durable", "redis"):
        port = free_port()
        cfg = os.path.join(tmp, f"cache-{mode}.yaml")
        text = topology.cache_yaml(ws, mode, port, tmp, rport)
        with open(cfg, "w") as f:
            f.write(text)
        run.files[f"cache-{mode}.yaml"] = text
        pr = procs.start(f"caching-service-{mode}", [PLEXGATE, "caching-service", "-c", cfg], cwd=tmp)
        procs.wait_port(pr, port)
        servers[mode] = (port, pr)
    # The replicated store: three replicas, measured through the leader and through a follower.
    rports = [free_port() for _ in range(3)]
    cfg = os.path.join(tmp, "cache-replicated.yaml")
    text = topology.replicated_yaml(ws, rports, tmp)
    with open(cfg, "w") as f:
        f.write(text)
    run.files["cache-replicated.yaml"] = text
    replicas = [procs.start(f"replica-r{i + 1}", [PLEXGATE, "caching-service", "-c", cfg, "--ha-instance", f"r{i + 1}"], cwd=tmp)
                for i in range(3)]
    for pr, port in zip(replicas, rports):
        procs.wait_port(pr, port)
    hctx = tls.ctx(client_cert=True)

    def role(port):
        st, _, b = request(port, "GET", "/application/health", hctx)
        try:
            return json.loads(b)["components"]["storage"]["details"]["replica"]["role"] if st == 200 else None
        except (ValueError, KeyError, TypeError):
            return None
    wait_until("a replicated leader", lambda: any(role(p) == "Leader" for p in rports), timeout=60)
    leader = next(i for i, p in enumerate(rports) if role(p) == "Leader")
    follower = (leader + 1) % 3
    servers["replicated (leader)"] = (rports[leader], replicas[leader])
    servers["replicated (follower)"] = (rports[follower], replicas[follower])
    bport = free_port()
    bare = procs.start("bare-hyper", [PLEXBENCH, "serve-json", "--port", str(bport), "--cert", tls.server_pem, "--key", tls.server_key,
                                      "--ca", tls.ca])
    procs.wait_port(bare, bport)
    run.cmd("S4 bare server", " ".join(cmdline(bare.pid)) or "plexbench serve-json")
    servers["bare hyper"] = (bport, bare)
    ctx = tls.ctx(client_cert=True)
    value = "v" * 64
    body_cache = '{"key":"bench","value":"%s"}' % value
    body_list = '{"key":"bench-entry","value":"%s"}' % value
    base = "/cachingservice/api/v1"
    for name, (port, _) in servers.items():
        wait_until(f"{name} answers", lambda port=port: request(port, "GET", f"{base}/cache/none", ctx)[0] == 404, timeout=30)
        st, _, b = request(port, "POST", f"{base}/cache", ctx, {"Content-Type": "application/json"}, body_cache)
        if st not in (201, 409):
            raise RuntimeError(f"{name}: POST /cache answered {st} {b[:200]!r}")
        st, _, b = request(port, "GET", f"{base}/cache/bench", ctx)
        if st != 200:
            raise RuntimeError(f"{name}: GET /cache/bench answered {st} {b[:200]!r}")
        run.notes.append(f"S4 {name}: GET /cache/bench answers {b.decode(errors='replace')}")

    def side(port, method, path, body=None, rate=0):
        return lambda s: measure.plexbench(PLEXBENCH, f"https://127.0.0.1:{port}{base}{path}", C_OPEN if rate else C_CACHE, s,
                                           rate=rate, threads=1 if rate else 2, method=method, body=body,
                                           cacert=tls.ca, cert=tls.cert, key=tls.key)

    get = alternate(run, "S4 GET /cache/{key}", [(n, side(port, "GET", "/cache/bench")) for n, (port, _) in servers.items()])
    post = alternate(run, "S4 POST /cache-list/{map}", [(n, side(port, "POST", "/cache-list/benchmap", body_list))
                                                         for n, (port, _) in servers.items()])
    rg = open_rate(med(get, "inMemory", "rps"), med(get, "bare hyper", "rps"))
    og = alternate(run, f"S4 GET fixed rate {rg} req/s", [(n, side(servers[n][0], "GET", "/cache/bench", rate=rg))
                                                           for n in ("inMemory", "bare hyper")], seconds=OPEN_DUR)
    rp = open_rate(med(post, "inMemory", "rps"), med(post, "bare hyper", "rps"))
    op = alternate(run, f"S4 POST fixed rate {rp} req/s", [(n, side(servers[n][0], "POST", "/cache-list/benchmap", body_list, rate=rp))
                                                            for n in ("inMemory", "bare hyper")], seconds=OPEN_DUR)
    rows = []
    for what, res in ((f"GET /cache/{{key}}, req/s (plexbench -c{C_CACHE})", get), (f"POST /cache-list/{{map}}, req/s (plexbench -c{C_CACHE})", post)):
        bare_rps = med(res, "bare hyper", "rps")
        for n in ("inMemory", "durable", "redis", "replicated (leader)", "replicated (follower)"):
            r = R.ratio(med(res, n, "rps"), bare_rps)
            rows.append((what, n, R.with_spread(vals(res, n, "rps")), R.with_spread(vals(res, n, "p99_ms"), "ms"),
                         R.with_spread(vals(res, "bare hyper", "rps")), R.fmt_ratio(r)))
            if n == "inMemory":
                run.headline.append((f"Caching service inMemory vs bare hyper bound, {what.split(',')[0]}", r, 0.8, True))
    for what, res, rate in (("GET, fixed rate", og, rg), ("POST, fixed rate", op, rp)):
        x, y = vals(res, "inMemory", "p99_ms"), vals(res, "bare hyper", "p99_ms")
        rows.append((f"{what} {rate:,} req/s: p50 / p99", "inMemory",
                     f"{R.num(med(res, 'inMemory', 'p50_ms'), 'ms')} / {R.num(R.median(x), 'ms')}", "",
                     f"{R.num(med(res, 'bare hyper', 'p50_ms'), 'ms')} / {R.num(R.median(y), 'ms')}",
                     R.fmt_ratio(R.ratio(R.median(x), R.median(y))) + " (p99)"))
    text = R.table(["measure", "storage", "caching service", "its p99 (closed loop)", "bare hyper bound", "caching service/bare"], rows)
    quiet_wait(run, "S4 redis-benchmark")
    rb, cmd = measure.redis_benchmark(rport, clients=C_CACHE)
    run.cmd("S4 redis-benchmark", cmd)
    text += "\n\nFor scale, Redis itself (the `redis` back end's server, plain TCP, no TLS): " + ", ".join(
        f"{k} {v['rps']:,.0f} req/s (p99 {v['p99_ms']:.2f} ms)" for k, v in rb.items()) + f" (`{cmd}`)."
    text += "\n\n" + logout.section(run, procs, tmp, tls, {"durable": (run.files["cache-durable.yaml"], None),
                                                          "replicated": (run.files["cache-replicated.yaml"], "r1")})
    run.sections[4] = text
    for pr in replicas:
        procs.stop(pr)
    for name, (_, pr) in servers.items():
        if name.startswith("replicated"):
            continue
        procs.stop(pr)
    procs.stop(red)
