import type Router from '@koa/router';
import type { Authenticator } from '../../auth/authenticator.js';
import type { Config } from '../../config/config.js';
import { EkmError } from '../../errors.js';
import type { Store } from '../../stores/store.js';
import type { DrainState } from '../drain-state.js';
import type { EkmState } from '../ekm-state.js';

/** What the service routes look at. */
export interface ServiceRouteParts {
  readonly config: Config;
  readonly store: Store;
  readonly authenticator: Authenticator;
  readonly drain: DrainState | undefined;
}

/**
 * `/` (is the node up), `/health` (can it read and write the store, can it reach the identity
 * provider, is it staying), `/error` (does error alerting work).
 */
export function serviceRoutes(router: Router<EkmState>, parts: ServiceRouteParts): void {
  const { config, store, authenticator, drain } = parts;
  router.get('/', (ctx) => {
    ctx.body = { service: 'email-key-manager', orgId: config.org.id, authenticator: config.auth.type, acl: config.acl.type, store: store.type };
  });
  router.get('/health', async (ctx) => {
    const started = process.hrtime.bigint();
    ctx.set('Cache-Control', 'no-store');
    if (drain?.serviceStopping) {
      // Before the store: a stopping node must leave the balancer whatever its store says.
      ctx.status = 503;
      ctx.body = { code: 503, message: 'This node is stopping', details: 'Draining: requests are still answered; send new ones to another node', storeType: store.type, draining: true };
      return;
    }
    // The identity provider is checked beside the store and reported on its own: without it no
    // token verifies, but public keys and cached tokens are still served, so the status code stays
    // about the store (alert on idpStatus).
    const idp = authenticator.identityProviderStatus?.() ?? Promise.resolve(undefined);
    try {
      await store.probe();
    } catch (e) {
      const details = e instanceof EkmError ? e.details : 'Store probe failed';
      ctx.state.logger.warn('Health check: store is down', { storeType: store.type, details });
      ctx.status = 503;
      ctx.body = { code: 503, message: 'Key store is unavailable', details, storeType: store.type, storeStatus: 'down', storeWrites: 'failing', idpStatus: await idp };
      return;
    }
    const latencyMs = Number(process.hrtime.bigint() - started) / 1e6;
    const writes = await probeWrites(store);
    if (writes.status === 'failing') ctx.state.logger.warn('Health check: store writes are failing', { storeType: store.type, details: writes.details });
    // 200 while reads work: the node still serves every key fetch, so a balancer must keep it.
    ctx.body = {
      storeType: store.type,
      storeStatus: 'up',
      storeWrites: writes.status,
      ...(writes.status === 'failing' ? { storeWritesCode: writes.code, storeWritesDetails: writes.details } : {}),
      latencyMs,
      idpStatus: await idp,
    };
  });
  router.get('/error', (ctx) => {
    const message = 'Intentional unhandled exception to test logging integration';
    ctx.state.logger.error(message, { stack: new Error(message).stack });
    ctx.status = 500;
    ctx.body = { code: 500, message, details: `Request id: ${ctx.state.requestId}` };
  });
}

/** "up", "failing" with the stable code and cause, or "unchecked" for a store that cannot tell. */
async function probeWrites(store: Store): Promise<{ status: 'up' | 'unchecked' } | { status: 'failing'; code: string; details: string }> {
  try {
    return { status: (await store.probeWrites?.()) ?? 'unchecked' };
  } catch (e) {
    return e instanceof EkmError ? { status: 'failing', code: e.code, details: e.details } : { status: 'failing', code: 'ERR_STORE_UNAVAILABLE', details: 'Write probe failed' };
  }
}
