"""plexgate's configuration files for the benchmark (Zowe's zowe.yaml format).

- `main.yaml` (scenarios 2 and 3): caching service (inMemory) on lpar1; gateway lpar1 with
  the default verified-token cache; gateway lpar2 with `tokenCacheSize: 0` (every request
  verifies its RS256 signature: the cache-miss path); the distributor on the virtual address
  with lpar1 as its one target (the whole path of scenario 3); gateway lpar3 = lpar1 run with
  `PLEXGATE_LOG=warn` (no access-log line per request), to show what the log costs.
- `l4.yaml` (scenario 1): a distributor whose one target is nginx itself (`address:`), so the
  L4 path is the same as HAProxy's. Its HTTPS health check cannot pass against plain-HTTP
  nginx, so the target is marked down after the first check; a down target is still tried
  when no other exists (select() puts it last), so every connection is forwarded. The check
  interval is set to 60 s so the failing check does not add load.
- `cache-<mode>.yaml` (scenario 4): one caching service per storage mode.
- scenario 5 uses the shipped examples/zowe.yaml unchanged, its ports moved by environment
  overrides (see bench.py).
"""

NGINX_SERVICE = """# Written by bench/run: nginx as an API service, once without and once with authentication.
services:
  - serviceId: nginxopen
    title: nginx (bypass)
    instanceBaseUrls: [http://127.0.0.1:{nginx}/]
    healthCheckRelativeUrl: /application/health
    routes:
      - gatewayUrl: api/v1
        serviceRelativeUrl: /api/v1
    authentication:
      scheme: bypass
  - serviceId: nginxjwt
    title: nginx (zoweJwt)
    instanceBaseUrls: [http://127.0.0.1:{nginx}/]
    healthCheckRelativeUrl: /application/health
    routes:
      - gatewayUrl: api/v1
        serviceRelativeUrl: /api/v1
    authentication:
      scheme: zoweJwt
"""


def main_yaml(ws, p):
    return f"""# bench/run, scenarios 2 and 3.
zowe:
  externalDomains: [127.0.0.1]
  externalPort: {p['dist_chain']}
  workspaceDirectory: {ws}
  verifyCertificates: STRICT
components:
  gateway:
    enabled: true
    port: {p['gw1']}
    apiml:
      security:
        auth:
          provider: users-file
  caching-service:
    enabled: true
    port: {p['cs']}
    storage:
      mode: inMemory
  distributor:
    method: hotStandby
    targets:
      - instance: lpar1
        role: preferred
    admin:
      address: 127.0.0.1
      port: {p['dist_chain_admin']}
haInstances:
  lpar1:
    hostname: 127.0.0.1
    components:
      gateway:
        port: {p['gw1']}
  lpar2:
    hostname: 127.0.0.1
    components:
      gateway:
        port: {p['gw2']}
        tokenCacheSize: 0
      caching-service:
        enabled: false
  lpar3:
    hostname: 127.0.0.1
    components:
      gateway:
        port: {p['gw3']}
      caching-service:
        enabled: false
"""


def l4_yaml(ws, p):
    return f"""# bench/run, scenario 1: the distributor in front of nginx.
zowe:
  externalDomains: [127.0.0.1]
  externalPort: {p['dist_l4']}
  workspaceDirectory: {ws}
components:
  gateway:
    enabled: false
    # Checked even when the gateway is disabled (the default provider, zosmf, needs zOSMF.host).
    apiml:
      security:
        auth:
          provider: users-file
  caching-service:
    enabled: false
  distributor:
    enabled: true
    method: hotStandby
    targets:
      - address: 127.0.0.1:{p['nginx']}
        role: preferred
    healthCheck:
      interval: 60s
    admin:
      address: 127.0.0.1
      port: {p['dist_l4_admin']}
"""


def cache_yaml(ws, mode, port, tmp, redis_port=None):
    extra = ""
    if mode == "durable":
        extra = f"\n      durable:\n        file: {tmp}/cache-durable.redb"
    if mode == "redis":
        extra = f"\n      redis:\n        masterNodeUri: 127.0.0.1:{redis_port}"
    return f"""# bench/run, scenario 4: the caching service on storage `{mode}`.
zowe:
  externalDomains: [127.0.0.1]
  workspaceDirectory: {ws}
components:
  gateway:
    enabled: false
    apiml:
      security:
        auth:
          provider: users-file
  caching-service:
    enabled: true
    port: {port}
    storage:
      mode: {mode}{extra}
"""


def replicated_yaml(ws, ports, tmp):
    """Scenario 4's replicated store: three replicas (haInstances r1..r3) of one Raft group."""
    instances = "".join(
        f"  r{i + 1}:\n    hostname: 127.0.0.1\n    components:\n      caching-service:\n        port: {p}\n"
        f"        storage:\n          replicated:\n            directory: {tmp}/replica-r{i + 1}\n"
        for i, p in enumerate(ports))
    return f"""# bench/run, scenario 4: the caching service on storage `replicated` (three replicas).
zowe:
  externalDomains: [127.0.0.1]
  workspaceDirectory: {ws}
components:
  gateway:
    enabled: false
    apiml:
      security:
        auth:
          provider: users-file
  caching-service:
    enabled: true
    storage:
      mode: replicated
  distributor:
    enabled: false
haInstances:
{instances}"""
