#!/usr/bin/env python3
"""Profile or cost one gateway under load (issue 14), with bench/run's set-up (release builds).

    python3 bench/profile.py perf   # perf record -g on gateway lpar1 for 8 s under wrk -c64 with a token
                                    # (then: perf report -i /tmp/perf.data --no-children --sort sym)
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
        if mode == "perf":
            p = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", str(gw), "-o", "/tmp/perf.data", "--", "sleep", "8"])
            d = measure.wrk(url, env.report_lua, 64, 9, headers=(bearer,))
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
