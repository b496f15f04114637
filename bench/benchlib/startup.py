"""Scenario 5: `plexgate up`, its memory and its time to the first login."""

import http.client
import json
import os
import ssl
import subprocess
import threading
import time

from benchlib import measure, peers, topology
from benchlib import report as R
from benchlib.common import PLEXGATE, ROOT, log, login, quiet_wait, request, tokio_workers, wait_until, distributor_targets
from benchlib.procs import backlog, children, cmdline, free_port, listen_overflows, status_kb


def scenario5(run, procs, tmp, nginx_port):
    """`plexgate up` from the shipped examples/zowe.yaml with ports moved by environment:
    three starts: cold (fresh workspace) and warm, each timed to the first login through the
    distributor, then one for memory (idle before any login, then under load)."""
    base = os.path.join(tmp, "up")
    defs = os.path.join(base, "workspace", "api-mediation", "api-defs")
    os.makedirs(defs, exist_ok=True)
    with open(os.path.join(defs, "nginx.yml"), "w") as f:
        f.write(topology.NGINX_SERVICE.format(nginx=nginx_port))
    ports = {k: free_port() for k in ("ext", "gw1", "gw2", "cs1", "cs2", "cs3", "admin", "s1", "s2")}
    env = dict(os.environ)
    env.update({
        "PLEXGATE__ZOWE__EXTERNALPORT": str(ports["ext"]),
        # One port per replica: a component-level port would be every replica's, so two of the
        # three could not listen and the group would have no majority.
        "PLEXGATE__HAINSTANCES__LPAR1__COMPONENTS__CACHING_SERVICE__PORT": str(ports["cs1"]),
        "PLEXGATE__HAINSTANCES__LPAR2__COMPONENTS__CACHING_SERVICE__PORT": str(ports["cs2"]),
        "PLEXGATE__HAINSTANCES__LPAR3__COMPONENTS__CACHING_SERVICE__PORT": str(ports["cs3"]),
        "PLEXGATE__COMPONENTS__DISTRIBUTOR__ADMIN__PORT": str(ports["admin"]),
        "PLEXGATE__COMPONENTS__SAMPLE_SERVICE__PORTS": f"[{ports['s1']}, {ports['s2']}]",
        "PLEXGATE__HAINSTANCES__LPAR1__COMPONENTS__GATEWAY__PORT": str(ports["gw1"]),
        "PLEXGATE__HAINSTANCES__LPAR2__COMPONENTS__GATEWAY__PORT": str(ports["gw2"]),
    })
    cfg = os.path.join(ROOT, "examples", "zowe.yaml")
    run.cmd("S5 plexgate up", " ".join(f"{k}={v}" for k, v in env.items() if k.startswith("PLEXGATE__")) + f" {PLEXGATE} up -c {cfg}")
    ca_file = os.path.join(base, "workspace", "certificates", "ca.pem")
    password = {}

    def start(tag):
        quiet_wait(run, f"S5 {tag} start")
        out = open(os.path.join(tmp, "logs", f"up-{tag}.out"), "w")
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
        return p, t0

    def first_login(p, t0):
        deadline = t0 + 120
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise RuntimeError(f"plexgate up exited ({p.returncode}):\n{procs.tail(p.bench_name)}")
            if password.get("pw") and os.path.exists(ca_file):
                try:
                    tok = login(ports["ext"], ssl.create_default_context(cafile=ca_file), "demo", password["pw"])
                    if tok:
                        return time.monotonic() - t0, tok
                except (OSError, ssl.SSLError, http.client.HTTPException):
                    pass
            time.sleep(0.01)
        raise RuntimeError("no successful login through the distributor within 120 s")

    def members(p):
        out = {"up (launcher)": p.pid}
        for c in children(p.pid):
            args = cmdline(c)
            name = args[1] if len(args) > 1 else "?"
            for flag in ("--ha-instance", "--id"):
                if flag in args:
                    name += " " + args[args.index(flag) + 1]
            out[name] = c
        return dict(sorted(out.items()))

    def rss(pids, field="VmRSS"):
        return {n: status_kb(pid, field) for n, pid in pids.items()}

    p, t0 = start("cold")
    cold, _ = first_login(p, t0)
    log(f"S5 cold start (fresh workspace: certificates, demo user) to first login: {cold * 1000:.0f} ms")
    procs.stop(p, only_leader=True)
    p, t0 = start("warm")
    warm, _ = first_login(p, t0)
    log(f"S5 warm start to first login: {warm * 1000:.0f} ms")
    procs.stop(p, only_leader=True)

    p, t0 = start("memory")
    ctx = ssl.create_default_context(cafile=ca_file)
    # The gateways of `up` take the PROXY protocol from the distributor only (a direct TLS
    # connection is closed unread), so their health is asked through the distributor, and its
    # status must show both targets up.
    wait_until("distributor", lambda: request(ports["admin"], "GET", "/status")[0] == 200, timeout=30)

    def both_up():
        st, _, body = request(ports["admin"], "GET", "/status")
        targets = json.loads(body)["targets"] if st == 200 else []
        if len(targets) == 2 and all(t.get("state") == "up" for t in targets):
            return True
        raise RuntimeError(f"distributor status {st}: {[(t.get('name'), t.get('state')) for t in targets]}")
    wait_until("both gateways up in the distributor's status", both_up, timeout=60)
    wait_until("gateway health through the distributor",
               lambda: request(ports["ext"], "GET", "/application/health", ctx)[0] == 200, timeout=60)
    time.sleep(3)
    pids = members(p)
    idle = rss(pids)
    threads = {n: tokio_workers(pid) for n, pid in pids.items()}
    token = login(ports["ext"], ctx, "demo", password["pw"])
    run.names[token] = "$DEMO_TOKEN"
    one_login = rss(pids)
    url = f"https://127.0.0.1:{ports['ext']}/nginxjwt{peers.SMALL_PATH}"
    sampled = {}

    def sample():
        time.sleep(5)
        sampled.update(rss(pids))

    quiet_wait(run, "S5 1000 connections")
    th = threading.Thread(target=sample)
    overflows = listen_overflows()
    th.start()
    lua, _ = measure.write_scripts(tmp)
    d = measure.wrk(url, lua, 1000, 8, headers=(f"Authorization: Bearer {token}",))
    th.join()
    overflows = listen_overflows() - overflows
    backlogs = f"distributor {backlog(ports['ext'])}, gateways {backlog(ports['gw1'])} and {backlog(ports['gw2'])}"
    spread_over = distributor_targets(ports["admin"])
    run.cmd("S5 1000 connections", d["cmd"])
    done = []

    def logins(n):
        for _ in range(n):
            if login(ports["ext"], ctx, "demo", password["pw"]):
                done.append(1)

    quiet_wait(run, "S5 100 logins")
    ts = [threading.Thread(target=logins, args=(25,)) for _ in range(4)]
    t_login = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    t_login = time.time() - t_login
    time.sleep(1)
    after = rss(pids)
    hwm = rss(pids, "VmHWM")
    procs.stop(p, only_leader=True)

    mb = lambda v: "gone" if v is None else f"{v / 1024:.1f} MB"  # noqa: E731
    rows = [(n, threads.get(n) or "-", mb(idle[n]), mb(one_login[n]), mb(sampled.get(n)), mb(after[n]), mb(hwm[n])) for n in pids]
    gw_idle = [idle[n] for n in pids if n.startswith("gateway") and idle[n]]
    run.headline.append(("Gateway RSS idle, before any login", max(gw_idle) / 1024 if gw_idle else None, 30, False, "MB"))
    text = R.table(["process (`plexgate up`)", "tokio threads (idle)", "RSS idle, no login yet", "after 1 login",
                    "with 1000 connections", "after 100 more logins", "peak (VmHWM)"], rows)
    text += (f"\n\nLoad: `wrk -t2 -c1000 -d8s` through the distributor (hotStandby: lpar1 preferred, lpar2 backup) to the "
             f"zoweJwt route: {d['rps']:,.0f} req/s, {d['errors']} socket errors, {d['non2xx']} non-2xx. Distributor targets "
             f"afterwards: {spread_over}. Listen-queue overflows counted by the kernel during the test: {overflows} (accept-queue limits: "
             f"{backlogs}). Then 100 logins, 4 at a time, through the distributor: {len(done)} succeeded "
             f"in {t_login:.1f} s.\n\n")
    text += R.table(["start", "time from `plexgate up` to the first 204 login through the distributor port"], [
        ("cold: fresh workspace (certificates generated, demo user hashed)", f"{cold * 1000:.0f} ms"),
        ("warm: same workspace, second start", f"{warm * 1000:.0f} ms")])
    run.headline.append(("Time from `plexgate up` to the first login through the distributor, warm start", warm * 1000, None, False, "ms"))
    run.sections[5] = text
