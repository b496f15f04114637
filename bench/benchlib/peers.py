"""Configurations of the peers: nginx (the one upstream of every scenario) and HAProxy.

HAProxy runs as two processes, like plexgate's distributor and gateway: `l4` (mode tcp) and
`l7` (mode http, TLS terminated with the gateway's own certificate, optional jwt_verify on the
gateway's RS256 key). Both with `nbthread 2`, the number of tokio workers plexgate runs here.
"""

import resource

SMALL_BODY = "hello from nginx\n"
# HAProxy's connection limit: 20,000 (the many-clients scenario opens 10,000), or what the
# open-files limit allows (HAProxy refuses to start when it cannot have 2 descriptors each).
def maxconn():
    return max(1000, min(20000, (resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 100) // 2))
BIG_PATH = "/api/v1/big/1m.bin"
SMALL_PATH = "/api/v1/small"


def nginx_conf(tmp, port, workers=2):
    return f"""# nginx: the upstream of every scenario (and "direct").
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/logs/nginx-error.log warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path {tmp}/nginx-tmp;
  proxy_temp_path {tmp}/nginx-tmp;
  fastcgi_temp_path {tmp}/nginx-tmp;
  uwsgi_temp_path {tmp}/nginx-tmp;
  scgi_temp_path {tmp}/nginx-tmp;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    root {tmp}/www;
    location = {SMALL_PATH} {{ default_type text/plain; return 200 "{SMALL_BODY.strip()}\\n"; }}
    location = /application/health {{ default_type application/json; return 200 '{{"status":"UP"}}'; }}
  }}
}}
"""


def haproxy_l4(tmp, fe_nginx, fe_chain, nginx_port, l7_jwt_port):
    return f"""# HAProxy mode tcp: the peer of plexgate's distributor.
global
  nbthread 2
  maxconn {maxconn()}
  pidfile {tmp}/haproxy-l4.pid
defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  maxconn {maxconn()}
# scenario 1: straight to nginx
frontend l4_nginx
  bind 127.0.0.1:{fe_nginx}
  default_backend nginx
backend nginx
  server nginx 127.0.0.1:{nginx_port}
# scenario 3: to HAProxy http + jwt_verify (the gateway's peer)
frontend l4_chain
  bind 127.0.0.1:{fe_chain}
  default_backend l7
backend l7
  server l7 127.0.0.1:{l7_jwt_port}
"""


def haproxy_l7(tmp, pem, pubkey, fe_open, fe_jwt, nginx_port):
    return f"""# HAProxy mode http with TLS (the gateway's certificate): the peer of plexgate's gateway.
global
  nbthread 2
  maxconn {maxconn()}
  pidfile {tmp}/haproxy-l7.pid
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  maxconn {maxconn()}
# scenario 2a: routed GET, no authentication
frontend l7_open
  bind 127.0.0.1:{fe_open} ssl crt {pem} alpn h2,http/1.1
  default_backend nginx
# scenario 2b/3: RS256 bearer token checked with jwt_verify on the gateway's public key
frontend l7_jwt
  bind 127.0.0.1:{fe_jwt} ssl crt {pem} alpn h2,http/1.1
  http-request deny status 401 content-type application/json string '{{"error":"no bearer token"}}' unless {{ http_auth_bearer -m found }}
  http-request set-var(txn.alg) http_auth_bearer,jwt_header_query('$.alg')
  http-request set-var(txn.iss) http_auth_bearer,jwt_payload_query('$.iss')
  http-request set-var(txn.exp) http_auth_bearer,jwt_payload_query('$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny status 401 content-type application/json string '{{"error":"algorithm"}}' unless {{ var(txn.alg) -m str RS256 }}
  http-request deny status 401 content-type application/json string '{{"error":"issuer"}}' unless {{ var(txn.iss) -m str APIML }}
  http-request deny status 401 content-type application/json string '{{"error":"signature"}}' unless {{ http_auth_bearer,jwt_verify(txn.alg,"{pubkey}") -m int 1 }}
  http-request deny status 401 content-type application/json string '{{"error":"expired"}}' if {{ var(txn.exp),sub(txn.now) -m int lt 0 }}
  default_backend nginx
backend nginx
  server nginx 127.0.0.1:{nginx_port}
"""
