import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { registry } from './ekm-metrics.js';

/**
 * prom-client's default metrics include gauges named `nodejs_active_{handles,requests,resources}_total`,
 * which Prometheus' naming rules (and `promtool check metrics`) keep for counters; the same counts
 * are exported by type without the suffix (`nodejs_active_handles{type=...}`), so they are left out.
 */
function isWellNamed(metric: WorkerMetrics[number]): boolean {
  // The JSON carries the type as a string ('gauge'); prom-client's typings declare a numeric enum.
  return !(String(metric.type) === 'gauge' && metric.name.endsWith('_total'));
}

/** A worker that does not answer within this is left out of the scrape (it may be starting or dying). */
const WORKER_ANSWER_TIMEOUT_MS = 2_000;

type WorkerMetrics = MetricObjectWithValues<MetricValue<string>>[];

/** The primary asks a worker for its series. */
export interface MetricsRequest {
  readonly type: 'metrics-request';
  readonly id: number;
}

/** A worker's series, as prom-client's JSON. */
export interface MetricsAnswer {
  readonly type: 'metrics';
  readonly id: number;
  readonly metrics: WorkerMetrics;
}

/** In a worker: answers the primary's metrics requests over the cluster IPC channel. */
export function answerMetricsRequests(): void {
  process.on('message', (m: { type?: unknown; id?: unknown } | null) => {
    if (m?.type !== 'metrics-request' || typeof m.id !== 'number') return;
    const id = m.id;
    void registry.getMetricsAsJSON().then(
      (metrics) => process.send?.({ type: 'metrics', id, metrics } satisfies MetricsAnswer),
      () => process.send?.({ type: 'metrics', id, metrics: [] } satisfies MetricsAnswer),
    );
  });
}

/**
 * In the primary: the series of every live worker and of the primary itself, aggregated as
 * prom-client's AggregatorRegistry does (counters and histograms summed, gauges by their declared
 * aggregator). A worker that does not answer in time is left out rather than failing the scrape.
 */
export class ClusterMetrics {
  private nextId = 1;
  private readonly waiting = new Map<number, (metrics: WorkerMetrics) => void>();

  constructor() {
    cluster.on('message', (_worker: Worker, m: Partial<MetricsAnswer> | null) => {
      if (m?.type !== 'metrics' || typeof m.id !== 'number' || !Array.isArray(m.metrics)) return;
      this.waiting.get(m.id)?.(m.metrics);
    });
  }

  /** The scrape: Prometheus text format. */
  async scrape(): Promise<string> {
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w?.isConnected() === true);
    const answers = await Promise.all(workers.map((w) => this.ask(w)));
    const own = (await registry.getMetricsAsJSON()) as WorkerMetrics;
    const all = [own, ...answers.filter((a): a is WorkerMetrics => a !== undefined)].map((metrics) => metrics.filter(isWellNamed));
    return AggregatorRegistry.aggregate(all).metrics();
  }

  private ask(worker: Worker): Promise<WorkerMetrics | undefined> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        resolve(undefined);
      }, WORKER_ANSWER_TIMEOUT_MS);
      this.waiting.set(id, (metrics) => {
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(metrics);
      });
      try {
        worker.send({ type: 'metrics-request', id } satisfies MetricsRequest);
      } catch {
        // The channel closed between the check and the send: the worker is going away.
        clearTimeout(timer);
        this.waiting.delete(id);
        resolve(undefined);
      }
    });
  }
}
