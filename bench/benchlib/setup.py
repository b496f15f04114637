"""Set-up shared by scenarios 1-3: nginx, HAProxy, plexgate's processes, tokens, checks."""

import os
import signal
import subprocess
import threading
import time

from benchlib import measure, peers, topology
from benchlib.common import FRESH_TOKENS, PASSWORD, PLEXBENCH, PLEXGATE, USER, Tls, login, request, wait_until
from benchlib.procs import free_port


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
        for k in ("dist_chain", "dist_chain_admin", "gw1", "gw2", "gw3", "cs", "dist_l4", "dist_l4_admin"):
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
        # The thread-per-core bare hyper proxy: the bound of the gateway's runtime shape (issue 14).
        self.p["bare_proxy"] = free_port()
        bp = self.procs.start("bare-proxy", [PLEXBENCH, "proxy", "--port", str(self.p["bare_proxy"]), "--cert", self.tls.server_pem,
                                             "--key", self.tls.server_key, "--upstream", f"127.0.0.1:{self.p['nginx']}"])
        self.procs.wait_port(bp, self.p["bare_proxy"])
        self.run.cmd("bare thread-per-core proxy", " ".join(bp.args))
        self.pg["bare-proxy"] = bp

    def start_plexgate(self):
        env = dict(os.environ)
        cs = self.procs.start("caching-service", [PLEXGATE, "caching-service", "-c", self.main_yaml, "--ha-instance", "lpar1"], cwd=self.tmp, env=env)
        self.procs.wait_port(cs, self.p["cs"])
        g1 = self.procs.start("gateway-lpar1", [PLEXGATE, "gateway", "-c", self.main_yaml, "--ha-instance", "lpar1"], cwd=self.tmp, env=env)
        g2 = self.procs.start("gateway-lpar2", [PLEXGATE, "gateway", "-c", self.main_yaml, "--ha-instance", "lpar2"], cwd=self.tmp, env=env)
        # lpar3: lpar1's settings with warnings-only logging (no access-log line per request).
        g3 = self.procs.start("gateway-lpar3", [PLEXGATE, "gateway", "-c", self.main_yaml, "--ha-instance", "lpar3"], cwd=self.tmp,
                              env=dict(env, PLEXGATE_LOG="warn"))
        self.procs.wait_port(g1, self.p["gw1"])
        self.procs.wait_port(g2, self.p["gw2"])
        self.procs.wait_port(g3, self.p["gw3"])
        self.pg.update({"caching-service": cs, "gateway-lpar1": g1, "gateway-lpar2": g2, "gateway-lpar3": g3})
        ctx = self.tls.ctx()
        for g in ("gw1", "gw2", "gw3"):
            wait_until(f"gateway {g} health", lambda g=g: request(self.p[g], "GET", "/application/health", ctx)[0] == 200)
            wait_until(f"gateway {g} route to nginx", lambda g=g: request(self.p[g], "GET", "/nginxopen" + peers.SMALL_PATH, ctx)[0] == 200)
        d = self.procs.start("distributor-chain", [PLEXGATE, "distributor", "-c", self.main_yaml], cwd=self.tmp, env=env)
        self.procs.wait_port(d, self.p["dist_chain"])
        d4 = self.procs.start("distributor-l4", [PLEXGATE, "distributor", "-c", self.l4_yaml], cwd=self.tmp, env=env)
        self.procs.wait_port(d4, self.p["dist_l4"])
        self.pg.update({"distributor-chain": d, "distributor-l4": d4})

    def stop(self):
        """Stops scenario 1-3 processes, newest first (distributors before gateways before the
        caching service), each signalled at once and then waited for."""
        for n, p in reversed(list(self.pg.items())):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for n, p in reversed(list(self.pg.items())):
            self.procs.stop(p)
        self.pg = {}

    def mint_tokens(self):
        ctx = self.tls.ctx()
        # Logins go to lpar2 (the cache-off gateway): an Argon2id check holds 19 MiB, which would
        # show in lpar1's memory figures (scenario 5 measures that effect on its own).
        self.token = wait_until("first login", lambda: login(self.p["gw2"], ctx), timeout=30)
        self.run.names[self.token] = "$TOKEN"
        tokens, lock = [], threading.Lock()

        def worker(n):
            for _ in range(n):
                t = login(self.p["gw2"], ctx)
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
