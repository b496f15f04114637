"""What every scenario shares: settings, the run's record, alternating rounds, HTTPS helpers."""

import base64
import http.client
import json
import os
import ssl
import time

from benchlib import report as R
from benchlib.procs import ForeignCpu, busy_builds, cpu_busy, cpu_seconds, thread_names

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# PLEXGATE_BENCH_BIN: another build of the same tree (a profile of a variant; bench/run builds this one).
PLEXGATE = os.environ.get("PLEXGATE_BENCH_BIN") or os.path.join(ROOT, "target", "release", "plexgate")
PLEXBENCH = os.path.join(ROOT, "bench", "tools", "target", "release", "plexbench")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
DUR = int(os.environ.get("BENCH_DURATION", "6"))
OPEN_DUR = int(os.environ.get("BENCH_OPEN_DURATION", "5"))
ONLY = {int(x) for x in os.environ.get("BENCH_ONLY", "1,2,3,4,5,6").split(",") if x.strip()}
FULL = ONLY == {1, 2, 3, 4, 5, 6}
MAX_WAIT = int(os.environ.get("BENCH_MAX_WAIT", "1800"))
WARMUP = 1
# CPU use (all CPUs) above which someone else is using the machine.
BUSY_LIMIT = 0.25
# CPU share (of all CPUs over a measurement) other processes may use before it is repeated.
FOREIGN_LIMIT = 0.05
NCPU = os.cpu_count() or 1
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
        self.lags_ms = []
        self.waited_s = 0
        self.repeated = 0
        # Long or run-specific strings shown by name in the report: token -> $TOKEN, ...
        self.names = {tmp: "$TMP", ROOT + "/": ""}

    def cmd(self, label, c):
        self.commands.append((label, c))

    def shorten(self, text):
        for value, name in self.names.items():
            text = text.replace(value, name)
        return text


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def quiet_wait(run, label, record=True):
    """Waits while another session's cargo/rustc runs, or anything else keeps the CPUs more than
    BUSY_LIMIT busy (our own servers idle at about 1%); after MAX_WAIT seconds measures anyway
    and names the measurement in the report."""
    waited = 0
    while True:
        busy = busy_builds()
        if not busy:
            load = cpu_busy(0.5)
            if load <= BUSY_LIMIT:
                return
            busy = [f"other processes ({load:.0%} CPU)"]
        if waited == 0:
            log(f"{' and '.join(busy)} running; waiting before '{label}'")
        if waited >= MAX_WAIT:
            if record and label not in run.contended:
                run.contended.append(label)
            log(f"still busy after {waited}s; measuring '{label}' anyway (noted in the report)")
            return
        time.sleep(5)
        waited += 5
        run.waited_s += 5


def measured(run, label, f, seconds, attempts=6):
    """One measurement on a quiet machine: waits first, and repeats it when processes outside
    the benchmark used more than FOREIGN_LIMIT of the CPUs meanwhile (a test that started
    during the run); after `attempts` keeps the last and names it in the report."""
    for attempt in range(attempts):
        quiet_wait(run, label)
        foreign = ForeignCpu()
        foreign.start()
        started = time.time()
        d = f(seconds)
        used = foreign.stop()
        share = used / (NCPU * max(1.0, time.time() - started))
        if share <= FOREIGN_LIMIT:
            return d
        log(f"{label}: other processes (or the hypervisor) took {share:.0%} of the CPUs during the measurement; repeating it")
        run.repeated += 1
        # Someone else is active in bursts: give them time before trying again.
        time.sleep(10 * (attempt + 1))
        run.waited_s += 10 * (attempt + 1)
    if label not in run.contended:
        run.contended.append(label)
    return d


def with_cpu(f, procs):
    """`f`, its result also giving `cpu_us`: the CPU time (user + sys, every thread) the
    processes `procs` (the side's proxies) used during the run, per request. Closed-loop runs
    only: a fixed-rate run's warm-up requests are not counted in its `requests`."""
    if not procs:
        return f

    def g(seconds):
        before = [cpu_seconds(p.pid) for p in procs]
        d = f(seconds)
        used = sum(cpu_seconds(p.pid) - b for p, b in zip(procs, before))
        d["cpu_us"] = used * 1e6 / max(1, d["requests"])
        return d
    return g


def alternate(run, label, sides, seconds=DUR):
    """Runs every side once as warm-up, then ROUNDS rounds alternating the order.
    `sides`: list of (name, fn(seconds) -> dict). Returns {name: [dict per round]}."""
    res = {n: [] for n, _ in sides}
    for n, f in sides:
        quiet_wait(run, label, record=False)
        f(WARMUP)
    for r in range(ROUNDS):
        order = sides if r % 2 == 0 else list(reversed(sides))
        for n, f in order:
            d = measured(run, f"{label} / {n}", f, seconds)
            res[n].append(d)
            if "lag_ms" in d:
                run.lags_ms.append(d["lag_ms"])
            extra = f", {d['mibps']:.0f} MiB/s" if "mibps" in d and "1 MiB" in label else ""
            bad = f", {d['errors']} errors, {d['non2xx']} non-2xx" if d.get("errors") or d.get("non2xx") else ""
            lag = f", generator send lag p99 {d['lag_ms']:.2f} ms" if "lag_ms" in d else ""
            log(f"{label} / {n} round {r + 1}: {d['rps']:,.0f} req/s{extra}, p50 {d['p50_ms']:.2f} ms, p99 {d['p99_ms']:.2f} ms{bad}{lag}")
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
    return [d.get(key) for d in res.get(name, [])]


def med(res, name, key):
    return R.median(vals(res, name, key))


# Offered load of the fixed-rate runs, as a share of the slower side's closed-loop median.
OPEN_SHARE = 0.4


def open_rate(*rps):
    """The offered load of a fixed-rate comparison (the same for both sides)."""
    r = min(x for x in rps if x)
    step = 100 if r >= 2000 else 10
    return max(step, int(r * OPEN_SHARE / step) * step)


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


def tokio_workers(pid):
    """Threads named by tokio (its workers, plus blocking-pool threads alive at the moment)."""
    names = thread_names(pid)
    return sum(v for k, v in names.items() if k.startswith(("tokio-rt-worker", "tokio-runtime-w")))



def distributor_targets(admin_port):
    """The distributor's view of its targets (admin `/status`), as one line."""
    try:
        _, _, body = request(admin_port, "GET", "/status")
        d = json.loads(body)
        return "; ".join(f"{t.get('name')}: {t.get('total')} connections in total, {t.get('state')}" for t in d.get("targets", []))
    except Exception as e:  # noqa: BLE001 - informative only
        return f"(admin status unavailable: {e})"
