import { configFromProperties } from '../config/load-config.js';
import type { RunningConfig } from '../config/reload-config.js';
import type { PrimaryMessage, WorkerMessage } from './messages.js';

/**
 * In a worker: asks the primary for the configuration to serve with and waits for it. The listener
 * is in place before the question goes out, so the answer cannot be missed.
 */
export function configFromPrimary(): Promise<RunningConfig> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: PrimaryMessage | null) => {
      if (m?.type !== 'config') return;
      process.off('message', onMessage);
      const properties = new Map(m.properties);
      try {
        resolve({ config: configFromProperties(properties, m.file), properties });
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    };
    process.on('message', onMessage);
    const request: WorkerMessage = { type: 'config-request' };
    process.send?.(request);
  });
}
