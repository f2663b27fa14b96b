import type Router from '@koa/router';
import type { Context } from 'koa';
import type { Acl } from '../../acl/acl.js';
import type { Authenticator, Identity } from '../../auth/authenticator.js';
import type { Config } from '../../config/config.js';
import { EkmError, MethodNotAllowedError } from '../../errors.js';
import { validatePrivateKey, type ClaimedKeyFacts } from '../../keys/private-key-policy.js';
import type { LogFields } from '../../logging/logger.js';
import type { Store } from '../../stores/store.js';
import type { EkmState } from '../ekm-state.js';
import { optionalStringField, readJsonObject, stringField } from '../json-body.js';

type Ctx = Context & { state: EkmState };

/**
 * The user's own private keys: `GET`/`PUT /v1/keys/private` and the legacy `/keys/private`.
 * Every read or write of key material is an audit entry (who, which fingerprints, from where,
 * result), never the material itself.
 */
export function privateKeyRoutes(router: Router<EkmState>, config: Config, authenticator: Authenticator, acl: Acl, store: Store): void {

  const authorize = async (ctx: Ctx): Promise<Identity> => {
    const identity = await authenticator.authenticate(ctx.get('Authorization') || undefined);
    acl.authorizePrivateKeys(identity, identity.email);
    return identity;
  };

  const get = async (ctx: Ctx) => {
    const identity = await authorize(ctx);
    await audited(ctx, 'private-key.read', identity, async () => {
      const keys = await store.listByEmail(identity.email);
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { privateKeys: keys.map((k) => ({ decryptedPrivateKey: k.privateKey })) };
      return { fingerprints: keys.map((k) => k.fingerprint) };
    });
  };

  const put = (legacy: boolean) => async (ctx: Ctx) => {
    const identity = await authorize(ctx);
    if (config.api.keyProvisioning === 'admin') {
      throw new MethodNotAllowedError(
        `No key has been generated for ${identity.email} yet. Please ask your administrator.`,
        'Keys are provisioned by an administrator',
        'ERR_CLIENT_UPLOAD_DISABLED',
      );
    }
    const body = await readJsonObject(ctx);
    await audited(ctx, 'private-key.write', identity, async () => {
      const armored = stringField(body, legacy ? 'decryptedPrivateKey' : 'privateKey');
      const claimed: ClaimedKeyFacts = legacy
        ? { publicKey: optionalStringField(body, 'publicKey'), fingerprint: optionalStringField(body, 'fingerprint'), longid: optionalStringField(body, 'longid') }
        : {};
      const key = await validatePrivateKey(armored, identity.email, claimed);
      const result = await store.upsert(key);
      ctx.set('Cache-Control', 'no-store');
      ctx.body = {};
      return { fingerprints: [key.fingerprint], result };
    });
  };

  router.get('/v1/keys/private', get);
  router.put('/v1/keys/private', put(false));
  router.get('/keys/private', get);
  router.put('/keys/private', put(true));
}

/** Runs a key operation and writes its audit entry, whatever the outcome. */
async function audited(ctx: Ctx, event: string, identity: Identity, op: () => Promise<LogFields>): Promise<void> {
  const entry = {
    audit: event,
    email: identity.email,
    clientAddress: ctx.ip,
    userAgent: ctx.get('User-Agent'),
  };
  try {
    const outcome = await op();
    ctx.state.logger.info(event, { ...entry, ...outcome, status: 200 });
  } catch (e) {
    ctx.state.logger.info(event, { ...entry, status: e instanceof EkmError ? e.status : 500, code: e instanceof EkmError ? e.code : 'ERR_INTERNAL' });
    throw e;
  }
}
