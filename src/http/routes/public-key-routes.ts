import type Router from '@koa/router';
import type { Context } from 'koa';
import { BadRequestError } from '../../errors.js';
import { isEmailAddress } from '../../keys/email-address.js';
import { parseKeyId } from '../../keys/key-ids.js';
import type { Store } from '../../stores/store.js';
import type { EkmState } from '../ekm-state.js';

/**
 * Anyone's public keys, unauthenticated: `GET /v1/keys/public/:email` and the legacy `/keys/public/:email`;
 * `:email` may also be a fingerprint or long key id (see src/keys/key-ids.ts).
 */
export function publicKeyRoutes(router: Router<EkmState>, store: Store): void {
  const get = async (ctx: Context & { params: { email: string } }) => {
    const email = ctx.params.email.trim().toLowerCase();
    // Browser releases of 2020-03 to 2021-07 look recipients up by fingerprint or long key id.
    const keyId = parseKeyId(email);
    if (keyId === undefined && !isEmailAddress(email)) throw new BadRequestError('Not an email address');
    const keys = keyId === undefined ? await store.listByEmail(email) : await store.listByKeyId(keyId);
    ctx.body = { publicKeys: keys.map((k) => ({ publicKey: k.publicKey })) };
  };
  router.get('/v1/keys/public/:email', get);
  router.get('/keys/public/:email', get);
}
