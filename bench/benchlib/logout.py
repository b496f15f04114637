"""Scenario 4's logout latency: what a store adds to a logout, one at a time through a gateway.

A logout is a write to the caching service (the token's revocation), answered only once the
store has it: for `replicated` that is a majority's fsynced log and the leader's apply. The
token query (`GET /auth/query`) on the same gateway and connection is the floor: it verifies
the token and checks the local revocation view, with no caching-service call.
"""

import http.client
import os
import threading
import time

from benchlib import report as R
from benchlib.common import PLEXGATE, login, wait_until
from benchlib.procs import free_port

# Tokens per gateway: 200 sequential samples make p99 the second-slowest.
SAMPLES = 200


def _with_gateway(text, port):
    """The scenario-4 file with a gateway enabled on `port` (the caching services are started
    from the original file; this one only tells the gateway where they are)."""
    old = "  gateway:\n    enabled: false\n"
    if old not in text:
        raise RuntimeError("scenario 4's configuration has no disabled gateway to enable")
    return text.replace(old, f"  gateway:\n    enabled: true\n    port: {port}\n", 1)


def _mint(port, ctx, n):
    tokens, lock = [], threading.Lock()

    def worker(k):
        for _ in range(k):
            t = login(port, ctx)
            if t:
                with lock:
                    tokens.append(t)

    threads = [threading.Thread(target=worker, args=(n // 4,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(set(tokens)) < n:
        raise RuntimeError(f"only {len(set(tokens))} distinct tokens of {n} logins on port {port}")
    return tokens


def _timed(port, ctx, method, path, tokens, expected):
    """Milliseconds of each request, one after another on one keep-alive connection."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    out = []
    try:
        for t in tokens:
            started = time.perf_counter()
            conn.request(method, path, headers={"Cookie": f"apimlAuthenticationToken={t}"})
            r = conn.getresponse()
            r.read()
            out.append((time.perf_counter() - started) * 1000)
            if r.status != expected:
                raise RuntimeError(f"{method} {path} answered {r.status}, expected {expected}")
    finally:
        conn.close()
    return out


def _pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def section(run, procs, tmp, tls, stores):
    """`stores`: name -> (configuration text, ha instance or None). Returns a Markdown table."""
    ctx = tls.ctx()
    rows, figures = [], {}
    for name, (text, instance) in stores.items():
        port = free_port()
        cfg = os.path.join(tmp, f"gateway-{name}.yaml")
        body = _with_gateway(text, port)
        with open(cfg, "w") as f:
            f.write(body)
        run.files[f"gateway-{name}.yaml"] = body
        cmd = [PLEXGATE, "gateway", "-c", cfg] + (["--ha-instance", instance] if instance else [])
        gw = procs.start(f"gateway-{name}", cmd, cwd=tmp)
        procs.wait_port(gw, port)
        wait_until(f"a login on the {name} gateway", lambda port=port: login(port, ctx), timeout=60)
        tokens = _mint(port, ctx, SAMPLES)
        query = _timed(port, ctx, "GET", "/gateway/api/v1/auth/query", tokens, 200)
        logout = _timed(port, ctx, "POST", "/gateway/api/v1/auth/logout", tokens, 204)
        # Each token is now refused: the logouts held.
        again = _timed(port, ctx, "GET", "/gateway/api/v1/auth/query", tokens[:20], 401)
        procs.stop(gw)
        figures[name] = {k: (_pct(v, 50), _pct(v, 99)) for k, v in (("query", query), ("logout", logout))}
        run.notes.append(f"S4 logout latency, {name}: {len(logout)} logouts 204, {len(again)} of them checked 401 afterwards")
    for name, f in figures.items():
        (q50, q99), (l50, l99) = f["query"], f["logout"]
        rows.append((name, f"{R.num(q50, 'ms')} / {R.num(q99, 'ms')}", f"{R.num(l50, 'ms')} / {R.num(l99, 'ms')}",
                     f"{R.num(l50 - q50, 'ms')} / {R.num(l99 - q99, 'ms')}"))
    run.cmd("S4 logout latency", f"{SAMPLES} logins, then {SAMPLES} token queries and {SAMPLES} logouts one at a time on one "
                                 "HTTPS keep-alive connection per gateway (bench/benchlib/logout.py)")
    return ("Logout latency through a gateway, one at a time (p50 / p99); the token query is the floor "
            "(no caching-service call):\n\n"
            + R.table(["gateway's store", "token query", "logout", "added by the store's write"], rows))
