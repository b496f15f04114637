#!/usr/bin/env python3
"""Profile or cost one gateway under load (issue 14), with bench/run's set-up (release builds).

    python3 bench/profile.py perf   # perf record -g on gateway lpar1 for 8 s under wrk -c64 with a token
                                    # (then: perf report -i /tmp/perf.data --no-children --sort sym)
    python3 bench/profile.py compare   # perf stat per request (CPU ms, context switches, system calls) of the gateway
                                       # without auth, with the access log off, the bare proxy and HAProxy http
    python3 bench/profile.py syscalls  # perf trace -s: system calls of gateway lpar1 over 5 s of the same load
    python3 bench/profile.py perf-open # the same with DWARF call graphs, no auth, access log off (gateway lpar3)
    python3 bench/profile.py cpu    # req/s, p99 and CPU per request (user+sys of the gateway) under the
                                    # same load, then HAProxy jwt_verify's req/s beside it

One run, no alternation or waiting for a quiet machine: for finding costs, not for the report.
"""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import measure, peers  # noqa: E402
from benchlib.common import Run  # noqa: E402
from benchlib.procs import Procs  # noqa: E402
from benchlib.setup import Env  # noqa: E402


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().split(")")[1].split()
    return int(v[11]) + int(v[12])


def user_sys(pid):
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().split(")")[1].split()
    return int(v[11]), int(v[12])


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    tmp = tempfile.mkdtemp(prefix="plexgate-prof.")
    os.chmod(tmp, 0o755)
    run = Run(tmp)
    procs = Procs(os.path.join(tmp, "logs"))
    try:
        env = Env(run, procs)
        env.start_nginx()
        env.prepare_plexgate()
        env.start_haproxy()
        env.start_plexgate()
        env.mint_tokens()
        gw = env.pg["gateway-lpar1"].pid
        url = f"https://127.0.0.1:{env.p['gw1']}/nginxjwt{peers.SMALL_PATH}"
        bearer = f"Authorization: Bearer {env.token}"
        measure.wrk(url, env.report_lua, 64, 2, headers=(bearer,))
        if mode == "compare":
            events = "task-clock,context-switches,cpu-migrations,raw_syscalls:sys_enter,syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait"
            for name, proc, u in (("gateway, no auth", "gateway-lpar1", f"https://127.0.0.1:{env.p['gw1']}/nginxopen{peers.SMALL_PATH}"),
                                  ("gateway, no auth, PLEXGATE_LOG=warn", "gateway-lpar3", f"https://127.0.0.1:{env.p['gw3']}/nginxopen{peers.SMALL_PATH}"),
                                  ("bare thread-per-core proxy", "bare-proxy", f"https://127.0.0.1:{env.p['bare_proxy']}{peers.SMALL_PATH}"),
                                  ("HAProxy http", "haproxy-l7", f"https://127.0.0.1:{env.p['hap_open']}{peers.SMALL_PATH}")):
                measure.wrk(u, env.report_lua, 64, 2)
                pid = env.pg[proc].pid
                t0 = user_sys(pid)
                p = subprocess.Popen(["perf", "stat", "-x", ",", "-e", events, "-p", str(env.pg[proc].pid), "-o", "/tmp/perfstat.txt",
                                      "--", "sleep", "5"])
                d = measure.wrk(u, env.report_lua, 64, 6)
                p.wait()
                n = d["rps"] * 5
                t1 = user_sys(pid)
                us = [(b - a) / os.sysconf("SC_CLK_TCK") * 1e6 / d["requests"] for a, b in zip(t0, t1)]
                print(f"{name}: {d['rps']:,.0f} req/s, user {us[0]:.1f} us + sys {us[1]:.1f} us a request")
                for line in open("/tmp/perfstat.txt"):
                    f = line.strip().split(",")
                    if len(f) > 2 and f[0].replace(".", "").isdigit():
                        print(f"   {f[2]:40s} {float(f[0]) / n:10.3f} per request")
            return
        if mode == "syscalls":
            p = subprocess.Popen(["perf", "trace", "-s", "-p", str(gw), "-o", "/tmp/syscalls.txt", "--", "sleep", "5"])
            d = measure.wrk(url, env.report_lua, 64, 6, headers=(bearer,))
            p.wait()
            print(open("/tmp/syscalls.txt").read())
            print(f"gateway: {d['requests']:,} requests in the 6 s run")
            hurl = f"https://127.0.0.1:{env.p['hap_jwt']}{peers.SMALL_PATH}"
            p = subprocess.Popen(["perf", "trace", "-s", "-p", str(env.pg["haproxy-l7"].pid), "-o", "/tmp/syscalls-haproxy.txt",
                                  "--", "sleep", "5"])
            h = measure.wrk(hurl, env.report_lua, 64, 6, headers=(bearer,))
            p.wait()
            print(open("/tmp/syscalls-haproxy.txt").read())
            print(f"HAProxy jwt_verify: {h['requests']:,} requests in the 6 s run")
        elif mode == "perf":
            p = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", str(gw), "-o", "/tmp/perf.data", "--", "sleep", "8"])
            d = measure.wrk(url, env.report_lua, 64, 9, headers=(bearer,))
            p.wait()
        elif mode == "perf-open":
            # Call graphs from DWARF (the release build keeps no frame pointers), no auth, access log off.
            g3 = env.pg["gateway-lpar3"].pid
            u = f"https://127.0.0.1:{env.p['gw3']}/nginxopen{peers.SMALL_PATH}"
            p = subprocess.Popen(["perf", "record", "-F", "499", "--call-graph", "dwarf,16384", "-p", str(g3), "-o", "/tmp/perf-open.data",
                                  "--", "sleep", "4"])
            d = measure.wrk(u, env.report_lua, 64, 5)
            p.wait()
        else:
            c0 = cpu_ticks(gw)
            d = measure.wrk(url, env.report_lua, 64, 8, headers=(bearer,))
            d["cpu_us"] = (cpu_ticks(gw) - c0) / os.sysconf("SC_CLK_TCK") * 1e6 / max(1, d["requests"])
            h = measure.wrk(f"https://127.0.0.1:{env.p['hap_jwt']}{peers.SMALL_PATH}", env.report_lua, 64, 8, headers=(bearer,))
            print(f"HAProxy jwt_verify: {h['rps']:,.0f} req/s, p99 {h['p99_ms']:.2f} ms")
        cpu = f", CPU {d['cpu_us']:.1f} us a request" if "cpu_us" in d else ""
        print(f"gateway with token: {d['rps']:,.0f} req/s, p99 {d['p99_ms']:.2f} ms{cpu}, {d['errors']} errors, {d['non2xx']} non-2xx")
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
