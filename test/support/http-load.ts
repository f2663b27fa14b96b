import http from 'node:http';
import https from 'node:https';

/** A bounded closed-loop load: `connections` clients on keep-alive connections, each sending its next request when the answer is read. */
export interface LoadPlan {
  /** The URLs asked for, in turn. */
  readonly urls: readonly string[];
  readonly connections: number;
  /** At least this long, and on until `until` settles when given. */
  readonly durationMs: number;
  readonly until?: Promise<unknown>;
  readonly headers?: Readonly<Record<string, string>>;
  /** The CA of an HTTPS server. */
  readonly ca?: string;
  /** A request without an answer this long counts as hanging (and failed). */
  readonly requestTimeoutMs?: number;
}

/** What the load got. A failed request is one without an answer or with a status outside `ok`. */
export interface LoadFigures {
  readonly requests: number;
  readonly failures: number;
  /** Requests that ended in ECONNRESET or EPIPE. */
  readonly resets: number;
  /** Requests left without an answer for requestTimeoutMs. */
  readonly hanging: number;
  readonly statuses: Readonly<Record<string, number>>;
  /** The first few failures, described. */
  readonly samples: readonly string[];
}

/** Runs the plan to its end; answers with the statuses in `ok` count as successes. */
export async function runLoad(plan: LoadPlan, ok: readonly number[] = [200]): Promise<LoadFigures> {
  const secure = plan.urls[0]!.startsWith('https:');
  const agent = secure ? new https.Agent({ keepAlive: true, maxSockets: plan.connections, ca: plan.ca }) : new http.Agent({ keepAlive: true, maxSockets: plan.connections });
  const statuses: Record<string, number> = {};
  const samples: string[] = [];
  let requests = 0;
  let failures = 0;
  let resets = 0;
  let hanging = 0;
  const deadline = Date.now() + plan.durationMs;
  let settled = plan.until === undefined;
  plan.until?.finally(() => (settled = true)).catch(() => undefined);
  const going = () => Date.now() < deadline || !settled;
  const fail = (what: string) => {
    failures++;
    if (samples.length < 10) samples.push(`${new Date().toISOString()} ${what}`);
  };
  const loop = async (n: number) => {
    let i = n;
    while (going()) {
      const url = plan.urls[i++ % plan.urls.length]!;
      requests++;
      try {
        const status = await send(url, agent, plan.headers ?? {}, plan.requestTimeoutMs ?? 15_000);
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (!ok.includes(status)) fail(`${url}: status ${status}`);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
        if (code === 'ECONNRESET' || code === 'EPIPE') resets++;
        if (code === 'ETIMEDOUT') hanging++;
        fail(`${url}: ${code}`);
      }
    }
  };
  await Promise.all(Array.from({ length: plan.connections }, (_, n) => loop(n)));
  agent.destroy();
  return { requests, failures, resets, hanging, statuses, samples };
}

function send(url: string, agent: http.Agent, headers: Readonly<Record<string, string>>, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? https.get : http.get;
    const req = get(url, { agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('no answer'), { code: 'ETIMEDOUT' })), timeoutMs);
    req.on('close', () => clearTimeout(timer));
    req.on('error', reject);
  });
}

/** One line of figures for the test output. */
export function describeLoad(name: string, f: LoadFigures): string {
  return `${name}: ${f.requests} requests, ${f.failures} failed, ${f.resets} resets, ${f.hanging} hanging; statuses ${JSON.stringify(f.statuses)}`;
}
