import type Router from '@koa/router';
import type { Context } from 'koa';
import { BadRequestError } from '../../errors.js';
import { checkEmailAddress } from '../../keys/email-address.js';
import { parseKeyId } from '../../keys/key-ids.js';
import type { Store } from '../../stores/store.js';
import type { EkmState } from '../ekm-state.js';
import { StoredKeyAnswerCache } from '../stored-key-answer-cache.js';

/** Per worker: a user within the default byte budget answers well under a megabyte. */
const ANSWER_CACHE = { maxEntries: 2000, maxBytes: 32 * 1024 * 1024 } as const;

/**
 * Anyone's public keys, unauthenticated: `GET /v1/keys/public/:email` and the legacy `/keys/public/:email`;
 * `:email` may also be a fingerprint or long key id (see src/keys/key-ids.ts).
 */
export function publicKeyRoutes(router: Router<EkmState>, store: Store): void {
  // The JSON body is serialised once per content of the user's keys, not once per anonymous request.
  const answers = new StoredKeyAnswerCache(ANSWER_CACHE);
  const get = async (ctx: Context & { params: { email: string } }) => {
    // Browser releases of 2020-03 to 2021-07 look recipients up by fingerprint or long key id.
    const keyId = parseKeyId(ctx.params.email.trim());
    const keys = keyId === undefined ? await store.listByEmail(requireEmail(ctx.params.email)) : await store.listByKeyId(keyId);
    ctx.type = 'application/json';
    ctx.body = await answers.answer('public-keys', keys, async () => Buffer.from(JSON.stringify({ publicKeys: keys.map((k) => ({ publicKey: k.publicKey })) })));
  };
  router.get('/v1/keys/public/:email', get);
  router.get('/keys/public/:email', get);
}

function requireEmail(text: string): string {
  const { email, refusal } = checkEmailAddress(text);
  if (email === undefined) throw new BadRequestError('Not an email address this key manager accepts', `The email ${refusal}`, 'ERR_BAD_EMAIL');
  return email;
}
