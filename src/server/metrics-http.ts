import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { inheritedSockets } from './listener.js';

/** At most this many scrapers at once: a scrape is small, and nobody needs more. */
const MAX_CONNECTIONS = 16;
/** A scraper that has not sent its request within this is dropped (ms). */
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * Serves the Prometheus text at GET /metrics over HTTP: on the socket pagerd-metrics.socket hands
 * over under systemd (so the service itself needs no network: PrivateNetwork=yes,
 * RestrictAddressFamilies=AF_UNIX), else on `address` (HOST:PORT). Other paths answer 404, other
 * methods 405. Answers undefined when neither is configured.
 */
export async function serveMetrics(address: string, text: () => Promise<string>, contentType: string, log: Logger): Promise<Server | undefined> {
  const fd = inheritedSockets().metrics;
  if (fd === undefined && address === '') return undefined;
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('pagerd serves /metrics only\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('GET /metrics\n');
      return;
    }
    text().then(
      (body) => res.writeHead(200, { 'content-type': contentType }).end(req.method === 'HEAD' ? undefined : body),
      (err: unknown) => {
        log.error({ err }, 'collecting metrics failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('collecting metrics failed\n');
      },
    );
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.headersTimeout = REQUEST_TIMEOUT_MS;
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (fd !== undefined) server.listen({ fd }, resolve);
    else {
      const { host, port } = parseHostPort(address);
      server.listen({ host, port }, resolve);
    }
  });
  server.on('error', (err) => log.warn({ err }, 'the metrics listener failed'));
  log.info({ metrics: fd !== undefined ? `inherited socket ${fd}` : address }, 'serving metrics over HTTP at /metrics');
  return server;
}

/** HOST:PORT or [IPv6]:PORT, as metricsListen's schema allows. */
function parseHostPort(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(':');
  return { host: address.slice(0, at).replace(/^\[(.*)\]$/, '$1'), port: Number(address.slice(at + 1)) };
}
