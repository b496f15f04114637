"""Processes the benchmark starts, and loopback ports.

Every child runs in its own session (process group), so stopping it also stops what it
started (nginx workers, the children of `plexgate up`). Only groups this module started are
ever signalled, by their id. `stop_all` runs at exit, on SIGINT/SIGTERM and on errors.
"""

import os
import signal
import socket
import subprocess
import time

_used_ports = set()


def free_port():
    """A loopback port that nothing listens on now (the kernel's choice for port 0)."""
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _used_ports:
            _used_ports.add(port)
            return port


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def busy_builds():
    """Names of cargo/rustc processes running now (another engineer's build or test)."""
    out = []
    for name in ("cargo", "rustc"):
        r = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
        if r.stdout.strip():
            out.append(name)
    return out


class Procs:
    def __init__(self, logdir):
        self.logdir = logdir
        os.makedirs(logdir, exist_ok=True)
        self.started = []  # (name, Popen)

    def log_path(self, name):
        return os.path.join(self.logdir, f"{name}.log")

    def start(self, name, cmd, cwd=None, env=None, stdout=None):
        log = open(self.log_path(name), "ab")
        p = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else log,
            stderr=log,
            start_new_session=True,
        )
        p.bench_name = name
        self.started.append((name, p))
        return p

    def tail(self, name, lines=15):
        try:
            with open(self.log_path(name), "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""

    def wait_port(self, p, port, timeout=60):
        """Waits until `port` accepts connections; fails early when `p` exits."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if p.poll() is not None:
                raise RuntimeError(f"{p.bench_name} exited ({p.returncode}) before listening on {port}:\n{self.tail(p.bench_name)}")
            if port_open(port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{p.bench_name} did not listen on {port} within {timeout}s:\n{self.tail(p.bench_name)}")

    def stop(self, p, timeout=45, only_leader=False):
        """SIGTERM (to the leader only, or its whole group), then SIGKILL to the group."""
        if p.poll() is None:
            try:
                if only_leader:
                    os.kill(p.pid, signal.SIGTERM)
                else:
                    os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if p.poll() is None:
            p.wait(5)
        self.started = [(n, q) for (n, q) in self.started if q is not p]

    def stop_all(self):
        live = [(n, p) for (n, p) in self.started if p.poll() is None]
        for _, p in reversed(live):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        for _, p in live:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
        for _, p in self.started:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.started = []


def children(pid):
    """Direct children of `pid` (from /proc)."""
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return out


def status_kb(pid, field):
    """`VmRSS`, `VmHWM`, ... of /proc/<pid>/status, in kB (None when gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def thread_names(pid):
    names = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                n = f.read().strip()
            names[n] = names.get(n, 0) + 1
    except OSError:
        pass
    return names


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def cpu_busy(seconds=1.0):
    """Fraction of all CPUs busy over `seconds` (from /proc/stat), whoever uses them."""
    import time as _time

    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return idle, sum(v)

    i0, t0 = sample()
    _time.sleep(seconds)
    i1, t1 = sample()
    return 0.0 if t1 == t0 else 1.0 - (i1 - i0) / (t1 - t0)


def listen_overflows():
    """The kernel's count of connections dropped because a listen queue was full."""
    with open("/proc/net/netstat") as f:
        lines = [l.split() for l in f if l.startswith("TcpExt:")]
    names, values = lines[0], lines[1]
    return int(values[names.index("ListenOverflows")])


def backlog(port):
    """The accept-queue limit a listener on 127.0.0.1:`port` asked for (ss's Send-Q)."""
    r = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True)
    cols = r.stdout.split()
    return int(cols[2]) if len(cols) > 2 else None


def _cpu_ticks_by_pid():
    """{pid: (ppid, utime+stime+cutime+cstime in clock ticks)} of every process now."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        # after the command: state ppid ... utime(12) stime(13) cutime(14) cstime(15), 0-based from state
        out[int(d)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    return out


def cpu_seconds(pid):
    """CPU time (user + sys, all threads) process `pid` has used so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _steal_ticks():
    """CPU time the hypervisor gave to someone else (all CPUs), in clock ticks."""
    with open("/proc/stat") as f:
        v = f.readline().split()[1:]
    return int(v[7]) if len(v) > 7 else 0


class ForeignCpu:
    """CPU seconds used by processes outside this benchmark's process tree between `start()`
    and `stop()` (other sessions' builds and tests that began after the pre-measurement check),
    plus the time the hypervisor stole from this VM. Processes that exit in between are counted
    through their parent's children-time."""

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK")
        self.before = {}

    def _foreign(self):
        procs = _cpu_ticks_by_pid()
        mine, changed = {os.getpid()}, True
        while changed:
            changed = False
            for pid, (ppid, _) in procs.items():
                if ppid in mine and pid not in mine:
                    mine.add(pid)
                    changed = True
        return {pid: t for pid, (_, t) in procs.items() if pid not in mine}

    def start(self):
        self.before = self._foreign()
        self.steal = _steal_ticks()

    def stop(self):
        after = self._foreign()
        ticks = sum(max(0, t - self.before.get(pid, 0)) for pid, t in after.items())
        return (ticks + _steal_ticks() - self.steal) / self.tick
