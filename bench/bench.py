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
measurement, 1800).
"""

import base64
import datetime
import http.client
import os
import platform
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from benchlib import measure, peers, topology
from benchlib import report as R
from benchlib.procs import Procs, busy_builds, children, cmdline, free_port, status_kb, thread_names

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLEXGATE = os.path.join(ROOT, "target", "release", "plexgate")
PLEXBENCH = os.path.join(ROOT, "bench", "tools", "target", "release", "plexbench")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DUR = int(os.environ.get("BENCH_DURATION", "6"))
OPEN_DUR = int(os.environ.get("BENCH_OPEN_DURATION", "5"))
ONLY = {int(x) for x in os.environ.get("BENCH_ONLY", "1,2,3,4,5").split(",") if x.strip()}
FULL = ONLY == {1, 2, 3, 4, 5}
MAX_WAIT = int(os.environ.get("BENCH_MAX_WAIT", "1800"))
WARMUP = 2
USER, PASSWORD = "bench", "bench-password-1"
FRESH_TOKENS = 200
# Connections of the load generators (wrk: 2 threads).
C_SMALL, C_CLOSE, C_BIG, C_OPEN, C_CACHE = 64, 32, 16, 50, 32


class Run:
    """What the report needs: sections of Markdown, commands, files, problems."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.sections = {}
        self.headline = []
        self.commands = []
        self.files = {}
        self.problems = []
        self.contended = []
        self.notes = []

    def cmd(self, label, c):
        self.commands.append((label, c))


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def quiet_wait(run, label):
    """Waits while another session's cargo/rustc runs; notes the measurement if it cannot."""
    waited = 0
    while True:
        busy = busy_builds()
        if not busy:
            return
        if waited == 0:
            log(f"{'/'.join(busy)} running (another session's build or test); waiting before '{label}'")
        if waited >= MAX_WAIT:
            run.contended.append(label)
            log(f"still busy after {waited}s; measuring '{label}' anyway (noted in the report)")
            return
        time.sleep(5)
        waited += 5


def alternate(run, label, sides, seconds=DUR):
    """Runs every side once as warm-up, then ROUNDS rounds alternating the order.
    `sides`: list of (name, fn(seconds) -> dict). Returns {name: [dict per round]}."""
    res = {n: [] for n, _ in sides}
    for n, f in sides:
        quiet_wait(run, label)
        f(WARMUP)
    for r in range(ROUNDS):
        order = sides if r % 2 == 0 else list(reversed(sides))
        for n, f in order:
            quiet_wait(run, f"{label} / {n}")
            d = f(seconds)
            res[n].append(d)
            extra = f", {d['mibps']:.0f} MiB/s" if "mibps" in d and "1 MiB" in label else ""
            bad = f", {d['errors']} errors, {d['non2xx']} non-2xx" if d.get("errors") or d.get("non2xx") else ""
            log(f"{label} / {n} round {r + 1}: {d['rps']:,.0f} req/s{extra}, p50 {d['p50_ms']:.2f} ms, p99 {d['p99_ms']:.2f} ms{bad}")
    for n, _ in sides:
        if res[n]:
            run.cmd(f"{label} / {n}", res[n][-1]["cmd"])
        errs = sum(d.get("errors", 0) for d in res[n])
        non2xx = sum(d.get("non2xx", 0) for d in res[n])
        total = sum(d.get("requests", 0) for d in res[n])
        if errs or non2xx:
            run.problems.append(f"{label} / {n}: {errs} socket errors and {non2xx} non-2xx answers of {total} requests over {ROUNDS} rounds")
    return res


def vals(res, name, key):
    return [d[key] for d in res.get(name, [])]


def med(res, name, key):
    return R.median(vals(res, name, key))


def open_rate(*rps):
    """The offered load of a fixed-rate comparison: half the slower side's closed-loop median."""
    r = min(x for x in rps if x)
    step = 100 if r >= 2000 else 10
    return max(step, int(r * 0.5 / step) * step)


# --- HTTPS helpers (standard library) -----------------------------------------------------

class Tls:
    def __init__(self, ws):
        c = os.path.join(ws, "certificates")
        self.ca, self.cert, self.key = os.path.join(c, "ca.pem"), os.path.join(c, "client.pem"), os.path.join(c, "client.key")
        self.server_pem, self.server_key = os.path.join(c, "server.pem"), os.path.join(c, "server.key")

    def ctx(self, client_cert=False):
        ctx = ssl.create_default_context(cafile=self.ca)
        if client_cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx


def request(port, method, path, ctx=None, headers=None, body=None, timeout=10):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout) if ctx else \
        http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        conn.close()


def login(port, ctx, user=USER, password=PASSWORD):
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    status, headers, _ = request(port, "POST", "/gateway/api/v1/auth/login", ctx, {"Authorization": f"Basic {basic}"})
    if status != 204:
        return None
    for k, v in headers:
        if k.lower() == "set-cookie" and v.startswith("apimlAuthenticationToken="):
            return v.split(";", 1)[0].split("=", 1)[1]
    return None


def wait_until(what, fn, timeout=60, interval=0.1):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - anything means "not yet"
            last = e
        time.sleep(interval)
    raise RuntimeError(f"{what}: not ready within {timeout}s ({last})")


# --- set-up ---------------------------------------------------------------------------------

class Env:
    """Everything scenarios 1-3 share: ports, files, processes."""

    def __init__(self, run, procs):
        self.run, self.procs, self.tmp = run, procs, run.tmp
        self.p = {}
        self.ws = os.path.join(self.tmp, "workspace")
        self.tls = None
        self.token = None
        self.tokens_file = os.path.join(self.tmp, "tokens.txt")
        self.report_lua, self.tokens_lua = measure.write_scripts(self.tmp)
        self.pg = {}

    def write(self, name, text, record=True):
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        if record:
            self.run.files[name] = text
        return path

    def plexgate(self, *args, **kw):
        return subprocess.run([PLEXGATE, *args], cwd=self.tmp, capture_output=True, text=True, **kw)

    def start_nginx(self):
        self.p["nginx"] = free_port()
        os.makedirs(os.path.join(self.tmp, "www", "api", "v1", "big"), exist_ok=True)
        os.makedirs(os.path.join(self.tmp, "nginx-tmp"), exist_ok=True)
        with open(os.path.join(self.tmp, "www", peers.BIG_PATH.lstrip("/")), "wb") as f:
            f.write(os.urandom(1 << 20))
        for root, dirs, files in os.walk(self.tmp):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
        conf = self.write("nginx.conf", peers.nginx_conf(self.tmp, self.p["nginx"]))
        p = self.procs.start("nginx", ["nginx", "-c", conf, "-p", self.tmp, "-e", os.path.join(self.tmp, "logs", "nginx-error.log")])
        self.procs.wait_port(p, self.p["nginx"])
        st, _, body = request(self.p["nginx"], "GET", peers.SMALL_PATH)
        assert st == 200 and body == peers.SMALL_BODY.encode(), (st, body)

    def prepare_plexgate(self):
        for k in ("dist_chain", "dist_chain_admin", "gw1", "gw2", "cs", "dist_l4", "dist_l4_admin"):
            self.p[k] = free_port()
        self.main_yaml = self.write("main.yaml", topology.main_yaml(self.ws, self.p))
        self.l4_yaml = self.write("l4.yaml", topology.l4_yaml(self.ws, self.p))
        r = self.plexgate("init", "certificate", "-c", self.main_yaml)
        if r.returncode != 0:
            raise RuntimeError(f"plexgate init certificate: {r.stderr}")
        r = self.plexgate("users", "add", "-c", self.main_yaml, USER, input=PASSWORD + "\n")
        if r.returncode != 0:
            raise RuntimeError(f"plexgate users add: {r.stderr}")
        self.tls = Tls(self.ws)
        defs = os.path.join(self.ws, "api-mediation", "api-defs")
        os.makedirs(defs, exist_ok=True)
        text = topology.NGINX_SERVICE.format(nginx=self.p["nginx"])
        with open(os.path.join(defs, "nginx.yml"), "w") as f:
            f.write(text)
        self.run.files["workspace/api-mediation/api-defs/nginx.yml"] = text

    def start_haproxy(self):
        for k in ("hap_l4", "hap_l4_chain", "hap_open", "hap_jwt"):
            self.p[k] = free_port()
        pem = os.path.join(self.tmp, "haproxy-server.pem")
        with open(pem, "w") as f:
            f.write(open(self.tls.server_pem).read() + open(self.tls.server_key).read())
        os.chmod(pem, 0o600)
        pub = os.path.join(self.tmp, "jwt-public.pem")
        r = subprocess.run(["openssl", "x509", "-in", self.tls.server_pem, "-pubkey", "-noout"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"openssl: {r.stderr}")
        with open(pub, "w") as f:
            f.write(r.stdout)
        self.run.cmd("HAProxy files", f"cat server.pem server.key > {pem}; openssl x509 -in server.pem -pubkey -noout > {pub}")
        l7 = self.write("haproxy-l7.cfg", peers.haproxy_l7(self.tmp, pem, pub, self.p["hap_open"], self.p["hap_jwt"], self.p["nginx"]))
        l4 = self.write("haproxy-l4.cfg", peers.haproxy_l4(self.tmp, self.p["hap_l4"], self.p["hap_l4_chain"], self.p["nginx"], self.p["hap_jwt"]))
        for name, cfg in (("haproxy-l7", l7), ("haproxy-l4", l4)):
            r = subprocess.run(["haproxy", "-c", "-f", cfg], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"{name} configuration: {r.stdout}{r.stderr}")
        h7 = self.procs.start("haproxy-l7", ["haproxy", "-db", "-f", l7])
        h4 = self.procs.start("haproxy-l4", ["haproxy", "-db", "-f", l4])
        self.procs.wait_port(h7, self.p["hap_jwt"])
        self.procs.wait_port(h4, self.p["hap_l4_chain"])
        self.pg["haproxy-l4"], self.pg["haproxy-l7"] = h4, h7

    def start_plexgate(self):
        env = dict(os.environ)
        cs = self.procs.start("caching-service", [PLEXGATE, "caching-service", "-c", self.main_yaml, "--ha-instance", "lpar1"], cwd=self.tmp, env=env)
        self.procs.wait_port(cs, self.p["cs"])
        g1 = self.procs.start("gateway-lpar1", [PLEXGATE, "gateway", "-c", self.main_yaml, "--ha-instance", "lpar1"], cwd=self.tmp, env=env)
        g2 = self.procs.start("gateway-lpar2", [PLEXGATE, "gateway", "-c", self.main_yaml, "--ha-instance", "lpar2"], cwd=self.tmp, env=env)
        self.procs.wait_port(g1, self.p["gw1"])
        self.procs.wait_port(g2, self.p["gw2"])
        self.pg.update({"caching-service": cs, "gateway-lpar1": g1, "gateway-lpar2": g2})
        ctx = self.tls.ctx()
        for g in ("gw1", "gw2"):
            wait_until(f"gateway {g} health", lambda g=g: request(self.p[g], "GET", "/application/health", ctx)[0] == 200)
            wait_until(f"gateway {g} route to nginx", lambda g=g: request(self.p[g], "GET", "/nginxopen" + peers.SMALL_PATH, ctx)[0] == 200)
        d = self.procs.start("distributor-chain", [PLEXGATE, "distributor", "-c", self.main_yaml], cwd=self.tmp, env=env)
        self.procs.wait_port(d, self.p["dist_chain"])
        d4 = self.procs.start("distributor-l4", [PLEXGATE, "distributor", "-c", self.l4_yaml], cwd=self.tmp, env=env)
        self.procs.wait_port(d4, self.p["dist_l4"])
        self.pg.update({"distributor-chain": d, "distributor-l4": d4})

    def mint_tokens(self):
        ctx = self.tls.ctx()
        self.token = wait_until("first login", lambda: login(self.p["gw1"], ctx), timeout=30)
        tokens, lock = [], threading.Lock()

        def worker(n):
            for _ in range(n):
                t = login(self.p["gw1"], ctx)
                if t:
                    with lock:
                        tokens.append(t)

        started = time.time()
        threads = [threading.Thread(target=worker, args=(FRESH_TOKENS // 4,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.time() - started
        if len(set(tokens)) < FRESH_TOKENS:
            raise RuntimeError(f"only {len(set(tokens))} distinct tokens of {FRESH_TOKENS} logins")
        with open(self.tokens_file, "w") as f:
            f.write("\n".join(tokens) + "\n")
        self.run.notes.append(f"{FRESH_TOKENS} login tokens minted by {FRESH_TOKENS} logins (4 in parallel) in {took:.1f} s "
                              f"({FRESH_TOKENS / took:.0f} logins/s, Argon2id users file).")

    def checks(self):
        """Every path answers 200 with a valid token and refuses a forged one."""
        ctx = self.tls.ctx()
        bearer = {"Authorization": f"Bearer {self.token}"}
        forged = self.token[:-4] + ("AAAA" if not self.token.endswith("AAAA") else "BBBB")
        bad = {"Authorization": f"Bearer {forged}"}
        small = peers.SMALL_PATH
        cases = [
            ("direct", self.p["nginx"], None, small, {}, 200),
            ("distributor -> nginx", self.p["dist_l4"], None, small, {}, 200),
            ("HAProxy tcp -> nginx", self.p["hap_l4"], None, small, {}, 200),
            ("gateway bypass route", self.p["gw1"], ctx, "/nginxopen" + small, {}, 200),
            ("HAProxy http", self.p["hap_open"], ctx, small, {}, 200),
            ("gateway zoweJwt route", self.p["gw1"], ctx, "/nginxjwt" + small, bearer, 200),
            ("gateway zoweJwt route, no token", self.p["gw1"], ctx, "/nginxjwt" + small, {}, 401),
            ("gateway zoweJwt route, forged token", self.p["gw1"], ctx, "/nginxjwt" + small, bad, 401),
            ("gateway lpar2 (no token cache)", self.p["gw2"], ctx, "/nginxjwt" + small, bearer, 200),
            ("HAProxy jwt_verify", self.p["hap_jwt"], ctx, small, bearer, 200),
            ("HAProxy jwt_verify, no token", self.p["hap_jwt"], ctx, small, {}, 401),
            ("HAProxy jwt_verify, forged token", self.p["hap_jwt"], ctx, small, bad, 401),
            ("distributor -> gateway", self.p["dist_chain"], ctx, "/nginxjwt" + small, bearer, 200),
            ("HAProxy tcp -> HAProxy jwt", self.p["hap_l4_chain"], ctx, small, bearer, 200),
        ]
        rows = []
        for name, port, c, path, h, want in cases:
            st, _, body = request(port, "GET", path, c, h)
            ok = st == want and (want != 200 or body == peers.SMALL_BODY.encode())
            rows.append((name, want, st, "ok" if ok else "FAILED"))
            if not ok:
                self.run.problems.append(f"check '{name}': expected {want}, got {st} {body[:120]!r}")
        st, _, body = request(self.p["nginx"], "GET", peers.BIG_PATH)
        if st != 200 or len(body) != 1 << 20:
            self.run.problems.append(f"check 1 MiB file: {st} {len(body)} bytes")
        return rows


def tokio_workers(pid):
    names = thread_names(pid)
    return sum(v for k, v in names.items() if k.startswith("tokio-runtime-w"))


# --- scenarios -----------------------------------------------------------------------------

def scenario1(run, env):
    p = env.p
    small = peers.SMALL_PATH
    targets = {"direct": p["nginx"], "distributor": p["dist_l4"], "HAProxy tcp": p["hap_l4"]}

    def sides(path, conns, headers=()):
        return [(n, lambda s, port=port: measure.wrk(f"http://127.0.0.1:{port}{path}", env.report_lua, conns, s, headers=headers))
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
    run.headline.append(("Distributor req/s vs HAProxy tcp (keep-alive)", rh, 1.3, True))
    run.headline.append(("Distributor req/s vs direct (keep-alive)", rd, 0.6, True))
    row("  p50 latency, closed loop", ka, "p50_ms", "ms")
    row("  p99 latency, closed loop", ka, "p99_ms", "ms")
    row(f"  p50 latency at a fixed {rate:,} req/s (open model)", opn, "p50_ms", "ms")
    row(f"  p99 latency at a fixed {rate:,} req/s (open model)", opn, "p99_ms", "ms")
    row(f"  p99.9 latency at a fixed {rate:,} req/s (open model)", opn, "p999_ms", "ms")
    _, rc = row(f"new connection per request, conn/s (wrk -c{C_CLOSE} -H 'Connection: close')", close, "rps", "")
    run.headline.append(("Distributor conn/s vs HAProxy tcp (Connection: close)", rc, None, True))
    _, rb = row(f"1 MiB responses, MiB/s (wrk -c{C_BIG})", big, "mibps", "")
    run.headline.append(("Distributor 1 MiB throughput vs HAProxy tcp", rb, None, True))
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
        return f

    def o(port, path, rate, headers=()):
        return lambda s: measure.plexbench(PLEXBENCH, f"https://127.0.0.1:{port}{path}", C_OPEN, s, rate=rate, threads=1,
                                           headers=headers, cacert=ctx_ca)

    a = alternate(run, "S2a routed GET, no auth", [
        ("gateway", w(p["gw1"], "/nginxopen" + small)), ("HAProxy http", w(p["hap_open"], small))])
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
    row(f"(a) p50 latency at a fixed {ra:,} req/s", oa, "gateway", "HAProxy http", "p50_ms", "ms")
    row(f"(a) p99 latency at a fixed {ra:,} req/s", oa, "gateway", "HAProxy http", "p99_ms", "ms")
    r_jwt = row("(b) RS256 token, req/s (gateway: verified-token cache on)", b, "gateway", "HAProxy jwt_verify", "rps")
    row("(b) p99 latency, closed loop", b, "gateway", "HAProxy jwt_verify", "p99_ms", "ms")
    row(f"(b) p50 latency at a fixed {rb:,} req/s", ob, "gateway", "HAProxy jwt_verify", "p50_ms", "ms")
    row(f"(b) p99 latency at a fixed {rb:,} req/s", ob, "gateway", "HAProxy jwt_verify", "p99_ms", "ms")
    r_auth_vs_open = row("(b) vs (a): gateway with token vs HAProxy http without auth, req/s", b, "gateway", "HAProxy http", "rps", peer_res=a)
    r_fresh = row(f"(c) a different token on every request ({FRESH_TOKENS} tokens cycled), req/s", c,
                  "gateway, token cache off", "HAProxy jwt_verify", "rps")
    row("(c) p99 latency, closed loop", c, "gateway, token cache off", "HAProxy jwt_verify", "p99_ms", "ms")
    hit_vs_miss = R.ratio(med(b, "gateway", "rps"), med(c, "gateway, token cache off", "rps"))
    run.headline.append(("Gateway with RS256 token vs HAProxy http without auth", r_auth_vs_open, 1.0, True))
    run.headline.append(("Gateway with RS256 token vs HAProxy jwt_verify", r_jwt, 2.0, True))
    run.headline.append(("Gateway, token verified on every request vs HAProxy jwt_verify", r_fresh, None, True))
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
        ("distributor -> gateway", lambda s: measure.wrk(pg_url, env.report_lua, C_SMALL, s, headers=(bearer,))),
        ("HAProxy tcp -> HAProxy http+jwt_verify", lambda s: measure.wrk(hp_url, env.report_lua, C_SMALL, s, headers=(bearer,)))])
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
                               (f"p50 latency at a fixed {rate:,} req/s", opn, "p50_ms", "ms"),
                               (f"p99 latency at a fixed {rate:,} req/s", opn, "p99_ms", "ms"),
                               (f"p99.9 latency at a fixed {rate:,} req/s", opn, "p999_ms", "ms")):
        x, y = vals(r, a, key), vals(r, b, key)
        rows.append((what, R.with_spread(x, unit), R.with_spread(y, unit), R.fmt_ratio(R.ratio(R.median(x), R.median(y)))))
    run.headline.append(("Whole path req/s vs HAProxy tcp + http/jwt_verify", R.ratio(med(res, a, "rps"), med(res, b, "rps")), None, True))
    run.sections[3] = R.table(["measure", a, b, "plexgate/HAProxy"], rows)

    # Memory of both chains under 1000 concurrent connections (HTTPS keep-alive, token).
    mem_rows = []
    for label, url, procs in ((a, pg_url, ("distributor-chain", "gateway-lpar1")), (b, hp_url, ("haproxy-l4", "haproxy-l7"))):
        pids = {n: env.pg[n].pid for n in procs}
        idle = {n: status_kb(pid, "VmRSS") for n, pid in pids.items()}
        quiet_wait(run, f"S3 RSS under 1000 connections / {label}")
        sampled = {}

        def sample(pids=pids, sampled=sampled):
            time.sleep(5)
            sampled.update({n: status_kb(pid, "VmRSS") for n, pid in pids.items()})

        t = threading.Thread(target=sample)
        t.start()
        d = measure.wrk(url, env.report_lua, 1000, 8, headers=(bearer,))
        t.join()
        run.cmd(f"S3 1000 connections / {label}", d["cmd"])
        for n in procs:
            mem_rows.append((label, n, f"{idle[n] / 1024:.1f} MB", f"{(sampled.get(n) or 0) / 1024:.1f} MB",
                             f"{d['rps']:,.0f} req/s, {d['errors']} errors"))
    run.sections["3mem"] = R.table(["chain", "process", "RSS before", "RSS with 1000 connections", "wrk -c1000"], mem_rows)


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
        for n in ("inMemory", "durable", "redis"):
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
    run.sections[4] = text
    for _, (_, pr) in servers.items():
        procs.stop(pr)
    procs.stop(red)


def scenario5(run, procs, tmp, nginx_port):
    """`plexgate up` from the shipped examples/zowe.yaml with ports moved by environment."""
    base = os.path.join(tmp, "up")
    os.makedirs(os.path.join(base, "workspace", "api-mediation", "api-defs"), exist_ok=True)
    with open(os.path.join(base, "workspace", "api-mediation", "api-defs", "nginx.yml"), "w") as f:
        f.write(topology.NGINX_SERVICE.format(nginx=nginx_port))
    ports = {k: free_port() for k in ("ext", "gw1", "gw2", "cs", "admin", "s1", "s2")}
    env = dict(os.environ)
    env.update({
        "PLEXGATE__ZOWE__EXTERNALPORT": str(ports["ext"]),
        "PLEXGATE__COMPONENTS__CACHING_SERVICE__PORT": str(ports["cs"]),
        "PLEXGATE__COMPONENTS__DISTRIBUTOR__ADMIN__PORT": str(ports["admin"]),
        "PLEXGATE__COMPONENTS__SAMPLE_SERVICE__PORTS": f"[{ports['s1']}, {ports['s2']}]",
        "PLEXGATE__HAINSTANCES__LPAR1__COMPONENTS__GATEWAY__PORT": str(ports["gw1"]),
        "PLEXGATE__HAINSTANCES__LPAR2__COMPONENTS__GATEWAY__PORT": str(ports["gw2"]),
    })
    run.cmd("S5 plexgate up", " ".join(f"{k}={v}" for k, v in env.items() if k.startswith("PLEXGATE__")) + f" {PLEXGATE} up")
    cfg = os.path.join(ROOT, "examples", "zowe.yaml")

    def start(tag):
        quiet_wait(run, f"S5 {tag} start")
        out = open(os.path.join(tmp, "logs", f"up-{tag}.out"), "w")
        password = {}
        t0 = time.monotonic()
        p = procs.start(f"up-{tag}", [PLEXGATE, "up", "-c", cfg], cwd=base, env=env, stdout=subprocess.PIPE)

        def reader():
            for raw in p.stdout:
                line = raw.decode(errors="replace")
                out.write(line)
                out.flush()
                if "with password:" in line:
                    password["pw"] = line.rsplit(":", 1)[1].strip()
        threading.Thread(target=reader, daemon=True).start()
        return p, t0, password

    def first_login(p, t0, password, known):
        ca = os.path.join(base, "workspace", "certificates", "ca.pem")
        deadline = t0 + 120
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise RuntimeError(f"plexgate up exited ({p.returncode}):\n{procs.tail(p.bench_name)}")
            pw = known or password.get("pw")
            if pw and os.path.exists(ca):
                try:
                    tok = login(ports["ext"], ssl.create_default_context(cafile=ca), "demo", pw)
                    if tok:
                        return time.monotonic() - t0, tok, pw
                except (OSError, ssl.SSLError, http.client.HTTPException):
                    pass
            time.sleep(0.01)
        raise RuntimeError("no successful login through the distributor within 120 s")

    def members(p):
        out = {"up": p.pid}
        for c in children(p.pid):
            args = cmdline(c)
            sub = args[1] if len(args) > 1 else "?"
            name = sub
            if "--ha-instance" in args:
                name += " " + args[args.index("--ha-instance") + 1]
            if "--id" in args:
                name += " " + args[args.index("--id") + 1]
            out[name] = c
        return out

    p, t0, pw = start("cold")
    cold, token, password = first_login(p, t0, pw, None)
    log(f"S5 cold start (fresh workspace: certificates, demo user) to first login: {cold * 1000:.0f} ms")
    time.sleep(3)
    procs_now = members(p)
    idle = {n: status_kb(pid, "VmRSS") for n, pid in procs_now.items()}
    workers = {n: tokio_workers(pid) for n, pid in procs_now.items()}
    url = f"https://127.0.0.1:{ports['ext']}/nginxjwt{peers.SMALL_PATH}"
    sampled = {}

    def sample():
        time.sleep(5)
        sampled.update({n: status_kb(pid, "VmRSS") for n, pid in procs_now.items()})

    quiet_wait(run, "S5 1000 connections")
    th = threading.Thread(target=sample)
    th.start()
    lua, _ = measure.write_scripts(tmp)
    d = measure.wrk(url, lua, 1000, 8, headers=(f"Authorization: Bearer {token}",))
    th.join()
    hwm = {n: status_kb(pid, "VmHWM") for n, pid in procs_now.items()}
    run.cmd("S5 1000 connections", d["cmd"])
    procs.stop(p, only_leader=True)
    p, t0, pw = start("warm")
    warm, _, _ = first_login(p, t0, pw, password)
    log(f"S5 warm start to first login: {warm * 1000:.0f} ms")
    procs.stop(p, only_leader=True)
    rows = []
    for n in procs_now:
        rows.append((n, workers.get(n) or "-", f"{(idle[n] or 0) / 1024:.1f} MB", f"{(sampled.get(n) or 0) / 1024:.1f} MB",
                     f"{(hwm.get(n) or 0) / 1024:.1f} MB"))
    gw_idle = [idle[n] for n in procs_now if n.startswith("gateway")]
    run.headline.append(("Gateway idle RSS (MB, target < 30)", max(gw_idle) / 1024 if gw_idle else None, 30, False))
    text = R.table(["process (child of plexgate up)", "tokio workers", "RSS idle", "RSS with 1000 connections", "peak RSS (VmHWM)"], rows)
    text += (f"\n\nLoad: `wrk -t2 -c1000 -d8s` through the distributor to the zoweJwt route (hot standby: all on gateway lpar1): "
             f"{d['rps']:,.0f} req/s, {d['errors']} socket errors, {d['non2xx']} non-2xx.\n\n")
    text += R.table(["start", "time from `plexgate up` to the first 204 login through the distributor port"], [
        ("cold: fresh workspace (certificates generated, demo user hashed)", f"{cold * 1000:.0f} ms"),
        ("warm: same workspace, second start", f"{warm * 1000:.0f} ms")])
    run.headline.append(("Time from `plexgate up` to first login, warm (ms)", warm * 1000, None, False))
    run.sections[5] = text


# --- report --------------------------------------------------------------------------------

def machine():
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
            "plexgate": sh(f"cd {ROOT} && git rev-parse --short HEAD") + (" + uncommitted changes" if sh(f"cd {ROOT} && git status --porcelain --untracked-files=no") else ""),
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
             f"(issue 8). Every figure below comes from that one run: {ROUNDS} rounds per comparison, plexgate and its peer "
             f"alternating (order reversed every round), medians with ± half the range between rounds. "
             f"Targets are reported, not enforced.\n")
    L.append("## Headline\n")
    rows = []
    for what, r, target, higher in run.headline:
        if "(MB" in what or "(ms)" in what:
            rows.append((what, "n/a" if r is None else f"{r:.1f}", "-" if target is None else f"< {target}",
                         "-" if target is None else R.verdict(r, target, higher)))
        else:
            rows.append((what, R.fmt_ratio(r), "-" if target is None else f">= {target}x", "-" if target is None else R.verdict(r, target, higher)))
    L.append(R.table(["plexgate vs peer", "ratio (median)", "target", ""], rows) + "\n")
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
    L.append(f"""- Everything on 127.0.0.1 on ports the kernel handed out, in a temporary directory; load generator, proxies and nginx share
  the {m['nproc']} CPUs, so every figure includes the load generator's own CPU use (the same for both sides).
- Threads: HAProxy `nbthread 2`; plexgate processes run as shipped (tokio's default: one worker per CPU; counted in this run:
  {workers_seen}); nginx `worker_processes 2` (the common upstream); wrk `-t2`; plexbench 2 threads closed loop, 1 at a fixed rate.
- Upstream for everyone: nginx 1.22 returning a fixed {len(peers.SMALL_BODY)}-byte body (`{peers.SMALL_PATH}`) or a 1 MiB file
  (`{peers.BIG_PATH}`, sendfile). "direct" = the load generator straight to nginx.
- Closed loop: `wrk` (Debian's wrk 4.1, not wrk2), {DUR} s per run after one {WARMUP} s warm-up per side, results read from a
  Lua `done()` hook (exact counts and percentiles). HTTPS: wrk (OpenSSL) to the gateway / HAProxy, both with the gateway's
  development certificate (RSA 2048), TLS negotiated by the two ends.
- Open model (fixed rate): `plexbench load --rate R` (bench/tools, Rust: hyper 1 + rustls), {C_OPEN} keep-alive connections,
  {OPEN_DUR} s after 1 s warm-up; each latency counts from the time the request was due, so a stall is not hidden by the
  generator waiting (wrk2's correction). R = half the slower side's closed-loop median, the same R for both sides. h2load was
  not used for latency: its `--rps` is per client and it prints no percentiles.
- The caching service needs a TLS client certificate, which wrk cannot present, so scenario 4 uses `plexbench` closed loop
  ({C_CACHE} connections) for both the caching service and its bound.
- Scenario 1: the distributor's one target is nginx (`targets: [{{address: ...}}]`). Its HTTPS health check cannot pass
  against plain-HTTP nginx, so the target is marked down after the first check (interval set to 60 s); a down target is
  still tried when no healthy one exists, so every connection is forwarded (selection cost: one list extend).
- Scenario 2: nginx as two static API services (`bypass` and `zoweJwt`). HAProxy `mode http` forwards to the same nginx; its
  jwt_verify frontend checks presence, `alg` = RS256, `iss` = APIML, the RS256 signature with the gateway's public key
  (`openssl x509 -pubkey` of server.pem: HAProxy 2.6 reads a public key, not a certificate) and `exp`. The fresh-token case
  (c) uses gateway lpar2 with `tokenCacheSize: 0` (every request verifies its signature: the cache-miss path) and a wrk Lua
  script giving every request the next of {FRESH_TOKENS} tokens minted by {FRESH_TOKENS} logins; HAProxy gets the same
  script and tokens.
- plexgate logs as shipped (info level, one access-log line per routed request, to a file); HAProxy logs nothing (no `log`
  line), nginx `access_log off`.
""")
    L.extend(f"- {n}" for n in run.notes)
    L.append("")
    titles = {1: "1. L4: distributor vs HAProxy `mode tcp` (plain HTTP through both, nginx behind)",
              2: "2. Gateway vs HAProxy `mode http` (HTTPS, routed GET to nginx)",
              3: "3. Whole path: client -> distributor -> gateway -> nginx vs client -> HAProxy tcp -> HAProxy http + jwt_verify -> nginx",
              "3mem": "3b. Memory of both chains under 1000 concurrent connections",
              4: "4. Caching service (mutual TLS) vs a bare hyper + rustls server answering the same JSON from memory",
              5: "5. `plexgate up`: memory of each process and time to the first login"}
    for k, title in titles.items():
        if k in run.sections:
            L.append(f"## {title}\n")
            L.append(run.sections[k] + "\n")
    L.append("## Exact commands of this run\n")
    L.append("Ports are this run's. `bench/run` runs all of them; `BENCH_ONLY=2 bench/run` runs one scenario "
             "(its report then goes to the temporary directory, not here).\n")
    L.append(R.details("commands", "\n".join(f"# {label}\n{c}" for label, c in run.commands), "sh"))
    L.append("## Configuration files of this run\n")
    for name, text in run.files.items():
        lang = "yaml" if name.endswith((".yaml", ".yml")) else "nginx" if name.endswith(".conf") else ""
        L.append(R.details(name, text, lang))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(L))
    log(f"report written to {path}")


def main():
    for tool in (PLEXGATE, PLEXBENCH):
        if not os.access(tool, os.X_OK):
            sys.exit(f"{tool} is missing: run bench/run (it builds it)")
    tmp = tempfile.mkdtemp(prefix="plexgate-bench.")
    os.chmod(tmp, 0o755)
    run = Run(tmp)
    procs = Procs(os.path.join(tmp, "logs"))

    def on_signal(sig, _frame):
        log(f"signal {sig}: stopping everything")
        procs.stop_all()
        sys.exit(130)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.time()
    log(f"temporary directory {tmp}; {ROUNDS} rounds x {DUR} s (fixed rate {OPEN_DUR} s); scenarios {sorted(ONLY)}")
    workers_seen = "n/a"
    try:
        env = Env(run, procs)
        env.start_nginx()
        env.prepare_plexgate()
        if ONLY & {1, 2, 3}:
            env.start_haproxy()
            env.start_plexgate()
            env.mint_tokens()
            rows = env.checks()
            for r in rows:
                log(f"check {r[0]}: expected {r[1]}, got {r[2]} {r[3]}")
            workers_seen = ", ".join(f"{n} {tokio_workers(p.pid)}" for n, p in env.pg.items() if not n.startswith("haproxy"))
            for n in ("haproxy-l4", "haproxy-l7"):
                pid = env.pg[n].pid
                workers_seen += f"; {n} {len(os.listdir(f'/proc/{pid}/task'))} threads"
        steps = [(1, lambda: scenario1(run, env)), (2, lambda: scenario2(run, env)), (3, lambda: scenario3(run, env))]
        for n, fn in steps:
            if n in ONLY:
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - one broken scenario must not lose the others
                    run.problems.append(f"scenario {n} failed: {e}")
                    traceback.print_exc()
        for n, p in list(env.pg.items()):
            procs.stop(p)
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
    path = os.path.join(ROOT, "docs", "benchmarks.md") if FULL else os.path.join(tmp, "benchmarks.md")
    write_report(run, machine(), started, path, workers_seen)
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
