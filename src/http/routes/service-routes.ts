import type Router from '@koa/router';
import type { Config } from '../../config/config.js';
import { EkmError } from '../../errors.js';
import type { Store } from '../../stores/store.js';
import type { EkmState } from '../ekm-state.js';

/** `/` (is the node up), `/health` (can it reach the store), `/error` (does error alerting work). */
export function serviceRoutes(router: Router<EkmState>, config: Config, store: Store): void {
  router.get('/', (ctx) => {
    ctx.body = { service: 'email-key-manager', orgId: config.org.id, authenticator: config.auth.type, acl: config.acl.type, store: store.type };
  });
  router.get('/health', async (ctx) => {
    const started = process.hrtime.bigint();
    try {
      await store.probe();
      ctx.body = { storeType: store.type, storeStatus: 'up', latencyMs: Number(process.hrtime.bigint() - started) / 1e6 };
    } catch (e) {
      const details = e instanceof EkmError ? e.details : 'Store probe failed';
      ctx.state.logger.warn('Health check: store is down', { storeType: store.type, details });
      ctx.status = 503;
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { code: 503, message: 'Key store is unavailable', details, storeType: store.type, storeStatus: 'down' };
    }
  });
  router.get('/error', (ctx) => {
    const message = 'Intentional unhandled exception to test logging integration';
    ctx.state.logger.error(message, { stack: new Error(message).stack });
    ctx.status = 500;
    ctx.body = { code: 500, message, details: `Request id: ${ctx.state.requestId}` };
  });
}
