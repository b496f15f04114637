"""Load generators: wrk (closed loop), plexbench (open model, and mutual TLS), redis-benchmark.

Each returns a dict of numbers; `cmd` holds the exact command line that ran.
"""

import json
import os
import shlex
import subprocess

# Printed by wrk at the end of a run, read back here (exact counts, latencies in us).
REPORT_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""

# Cycles through the tokens in $BENCH_TOKENS (one per line): every request carries the next.
TOKENS_LUA = r"""
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS")) do
  if #line > 0 then tokens[#tokens + 1] = line end
end
local i = 0
init = function(args)
  i = math.random(#tokens)
end
request = function()
  i = i % #tokens + 1
  return wrk.format(nil, nil, {["Authorization"] = "Bearer " .. tokens[i]})
end
"""


def write_scripts(dirname):
    report = os.path.join(dirname, "report.lua")
    tokens = os.path.join(dirname, "tokens.lua")
    with open(report, "w") as f:
        f.write(REPORT_LUA)
    with open(tokens, "w") as f:
        f.write(TOKENS_LUA + REPORT_LUA)
    return report, tokens


def wrk(url, script, connections, seconds, threads=2, headers=(), env=None, timeout_s=10):
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s", "-s", script]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60)
    line = next((l for l in r.stdout.splitlines() if l.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result (exit {r.returncode}): {r.stdout[-500:]} {r.stderr[-500:]}")
    d = json.loads(line[len("WRKJSON "):])
    secs = d["duration_us"] / 1e6
    errors = d["connect"] + d["read"] + d["write"] + d["timeout"]
    return {
        "rps": d["requests"] / secs,
        "mibps": d["bytes"] / secs / (1 << 20),
        "p50_ms": d["p50_us"] / 1000,
        "p90_ms": d["p90_us"] / 1000,
        "p99_ms": d["p99_us"] / 1000,
        "errors": errors,
        "non2xx": d["status"],
        "requests": d["requests"],
        "cmd": shlex.join(cmd),
    }


def plexbench(tool, url, connections, seconds, rate=0, warmup=1, threads=2, headers=(), method="GET", body=None,
              cacert=None, cert=None, key=None):
    cmd = [tool, "load", url, "--connections", str(connections), "--duration", str(seconds), "--warmup", str(warmup),
           "--threads", str(threads), "--method", method]
    if rate:
        cmd += ["--rate", str(rate)]
    for h in headers:
        cmd += ["-H", h]
    if body is not None:
        cmd += ["--body", body]
    if cacert:
        cmd += ["--cacert", cacert]
    if cert:
        cmd += ["--cert", cert, "--key", key]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + warmup + 60)
    if r.returncode != 0:
        raise RuntimeError(f"plexbench failed: {r.stderr.strip()}")
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return {
        "rps": d["rps"],
        "p50_ms": d["p50_us"] / 1000,
        "p90_ms": d["p90_us"] / 1000,
        "p99_ms": d["p99_us"] / 1000,
        "p999_ms": d["p999_us"] / 1000,
        "max_ms": d["max_us"] / 1000,
        **({"lag_ms": d.get("send_lag_p99_us", 0) / 1000} if rate else {}),
        "errors": d["errors"],
        "non2xx": d["non2xx"],
        "requests": d["requests"],
        "cmd": shlex.join(cmd),
    }


def redis_benchmark(port, requests=200000, clients=32):
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "get,set", "-n", str(requests), "-c", str(clients),
           "-d", "64", "--csv"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    out = {}
    rows = [l for l in r.stdout.splitlines() if l.startswith('"')]
    header = [h.strip('"') for h in rows[0].split(",")] if rows else []
    for row in rows[1:]:
        cols = [c.strip('"') for c in row.split(",")]
        rec = dict(zip(header, cols))
        name = rec.get("test", cols[0])
        out[name] = {"rps": float(rec.get("rps", cols[1])), "p50_ms": float(rec.get("p50_latency_ms", "nan")),
                     "p99_ms": float(rec.get("p99_latency_ms", "nan"))}
    if not out:
        raise RuntimeError(f"redis-benchmark printed nothing usable: {r.stdout[-300:]} {r.stderr[-300:]}")
    return out, shlex.join(cmd)
