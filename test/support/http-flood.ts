import http from 'node:http';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

/** What one flood thread does: `connections` closed-loop clients, each GETting its URL again as soon as the answer is read. */
export interface FloodPlan {
  readonly urls: readonly { readonly url: string; readonly connections: number }[];
}

/** What a flood did: answers by status, and failed requests. */
export interface FloodResult {
  readonly answers: Readonly<Record<string, number>>;
  readonly failures: number;
}

/**
 * Anonymous clients hammering URLs over keep-alive connections, in a thread of their own, so that
 * reading their answers does not delay the measuring thread's own requests. `stop()` resolves with
 * what they got.
 */
export class HttpFlood {
  private constructor(private readonly worker: Worker) {}

  static async start(plan: FloodPlan): Promise<HttpFlood> {
    const worker = new Worker(new URL(import.meta.url), { workerData: plan });
    await new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', reject);
    });
    return new HttpFlood(worker);
  }

  async stop(): Promise<FloodResult> {
    const result = new Promise<FloodResult>((resolve, reject) => {
      this.worker.once('message', (m: FloodResult) => resolve(m));
      this.worker.once('error', reject);
    });
    this.worker.postMessage('stop');
    const answer = await result;
    await this.worker.terminate();
    return answer;
  }
}

async function flood(plan: FloodPlan): Promise<void> {
  let stopping = false;
  const answers: Record<string, number> = {};
  let failures = 0;
  const loops: Promise<void>[] = [];
  for (const { url, connections } of plan.urls) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
    for (let i = 0; i < connections; i++) {
      loops.push(
        (async () => {
          while (!stopping) {
            try {
              const status = await get(url, agent);
              answers[status] = (answers[status] ?? 0) + 1;
            } catch {
              failures++;
            }
          }
        })(),
      );
    }
  }
  parentPort!.once('message', () => {
    stopping = true;
    void Promise.all(loops).then(() => parentPort!.postMessage({ answers, failures } satisfies FloodResult));
  });
  parentPort!.postMessage('started');
}

function get(url: string, agent: http.Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, timeout: 30_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

if (!isMainThread && (workerData as FloodPlan | undefined)?.urls !== undefined) void flood(workerData as FloodPlan);
