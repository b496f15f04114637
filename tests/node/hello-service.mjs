// A small API service onboarded with Zowe's Node.js enabler, unchanged from npm
// (@zowe/apiml-onboarding-enabler-nodejs): it serves HTTPS with the certificate named in
// config/service-configuration.yml (in its working directory), registers with the discovery
// services listed there, renews its lease, and on SIGTERM or SIGINT calls the enabler's
// unregisterFromEureka() and exits once the enabler says its DELETE is done (0; 1 if it failed).
//
//   node hello-service.mjs PORT        (APIML_ENABLER = the enabler's src/index.js)
//
// GET /<serviceId>/api/v1/greeting  -> {"greeting": ..., "instanceId": ..., "pid": ...}
// GET /<serviceId>/application/health -> {"status": "UP"}
import https from 'node:https';
import { pathToFileURL } from 'node:url';

const port = Number(process.argv[2]);
const enablerPath = process.env.APIML_ENABLER;
if (!port || !enablerPath) {
  console.error('usage: APIML_ENABLER=.../src/index.js node hello-service.mjs PORT');
  process.exit(2);
}
// The enabler reads its configuration when it is imported.
const enabler = await import(pathToFileURL(enablerPath).href);
const serviceId = process.env.SERVICE_ID || 'hello';
const instanceId = `127.0.0.1:${serviceId}:${port}`;

const server = https.createServer(enabler.getTlsOptions(), (req, res) => {
  const path = new URL(req.url, 'https://localhost').pathname;
  const send = (status, body) => {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (req.method === 'GET' && path === `/${serviceId}/api/v1/greeting`) {
    send(200, { greeting: `Hello from ${serviceId}, onboarded by the Node.js enabler`, instanceId, pid: process.pid });
  } else if (path === `/${serviceId}/application/health`) {
    send(200, { status: 'UP' });
  } else if (path === `/${serviceId}/application/info`) {
    send(200, { serviceId, instanceId });
  } else {
    send(404, { error: `no ${req.method} ${path}` });
  }
});

server.listen(port, '127.0.0.1', () => {
  console.log(`listening on https://127.0.0.1:${port}/${serviceId}`);
  enabler.connectToEureka();
});

// unregisterFromEureka() takes no callback and the process does not end by itself after it:
// the enabler never reads the body of its registration's 204, so that socket stays open. The
// enabler's own log line is the only sign that its DELETE finished; exit on it.
for (const level of ['info', 'warn']) {
  const original = console[level].bind(console);
  console[level] = (...args) => {
    original(...args);
    const line = args.map(String).join(' ');
    if (stopping && line.startsWith('de-registered with eureka')) process.exit(0);
    if (stopping && line.startsWith('Error deregistering')) process.exit(1);
  };
}

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`${signal}: stopping`);
  // Clears the heartbeat and registry timers and sends DELETE /eureka/apps/APP/instanceId.
  enabler.unregisterFromEureka();
  server.close();
  server.closeAllConnections();
  setTimeout(() => {
    console.log(`deregistration did not finish within 5 s; exiting (still active: ${process.getActiveResourcesInfo()})`);
    process.exit(1);
  }, 5000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
