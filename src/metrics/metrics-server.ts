import cluster from 'node:cluster';
import http from 'node:http';
import { Counter, Gauge } from 'prom-client';
import type { Config } from '../config/config.js';
import type { Logger } from '../logging/logger.js';
import { ClusterMetrics } from './cluster-metrics.js';
import { registry } from './ekm-metrics.js';

/**
 * In the primary: the Prometheus listener (plain HTTP, its own address and port, `GET /metrics`)
 * and the primary's own series, workers alive and worker restarts. Resolves once it listens;
 * rejects when it cannot (a port in use is a start failure, not a silent lack of metrics).
 */
export async function startMetricsServer(config: Config, logger: Logger): Promise<http.Server | undefined> {
  const settings = config.api.metrics;
  if (settings === undefined) return undefined;
  new Gauge({
    name: 'ekm_workers_alive',
    help: 'Worker processes running.',
    registers: [registry],
    collect() {
      this.set(Object.values(cluster.workers ?? {}).filter((w) => w !== undefined && !w.isDead()).length);
    },
  });
  const restarts = new Counter({ name: 'ekm_worker_restarts_total', help: 'Workers forked to replace one that exited.', registers: [registry] });
  let forks = 0;
  cluster.on('fork', () => {
    if (++forks > config.api.workers) restarts.inc();
  });
  const metrics = new ClusterMetrics();
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not found: the metrics are at GET /metrics\n');
      return;
    }
    metrics.scrape().then(
      (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
      (e: unknown) => {
        logger.error('Metrics scrape failed', { reason: e instanceof Error ? e.message : String(e) });
        res.writeHead(500, { 'Content-Type': 'text/plain' }).end('Metrics could not be collected\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(new Error(`Cannot listen for metrics on ${settings.hostname}:${settings.port} (api.metrics.port, api.metrics.hostname): ${e.code ?? e.message}`)),
    );
    server.listen(settings.port, settings.hostname, resolve);
  });
  logger.info(`Prometheus metrics on http://${settings.hostname}:${settings.port}/metrics`);
  return server;
}
