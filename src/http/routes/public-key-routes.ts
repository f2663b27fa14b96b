import type Router from '@koa/router';
import type { Context } from 'koa';
import { BadRequestError } from '../../errors.js';
import { checkEmailAddress } from '../../keys/email-address.js';
import type { Store } from '../../stores/store.js';
import type { EkmState } from '../ekm-state.js';

/** Anyone's public keys, unauthenticated: `GET /v1/keys/public/:email` and the legacy `/keys/public/:email`. */
export function publicKeyRoutes(router: Router<EkmState>, store: Store): void {
  const get = async (ctx: Context & { params: { email: string } }) => {
    const { email, refusal } = checkEmailAddress(ctx.params.email);
    if (email === undefined) throw new BadRequestError('Not an email address this key manager accepts', `The email ${refusal}`, 'ERR_BAD_EMAIL');
    const keys = await store.listByEmail(email);
    ctx.body = { publicKeys: keys.map((k) => ({ publicKey: k.publicKey })) };
  };
  router.get('/v1/keys/public/:email', get);
  router.get('/keys/public/:email', get);
}
