import type Router from '@koa/router';
import type { Context } from 'koa';
import type { Acl } from '../../acl/acl.js';
import type { Authenticator, Identity } from '../../auth/authenticator.js';
import type { Config } from '../../config/config.js';
import { EkmError, MethodNotAllowedError } from '../../errors.js';
import { unusableStateOf, validatePrivateKey, type ClaimedKeyFacts } from '../../keys/private-key-policy.js';
import { audit, type AuditEvent, type AuditRecord } from '../../logging/audit-trail.js';
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

  /** Authenticates and authorizes; a refusal is an audit entry of the attempted event. */
  const authorizeFor = async (ctx: Ctx, event: AuditEvent): Promise<Identity> => {
    let identity: Identity | undefined;
    try {
      identity = await authenticator.authenticate(ctx.get('Authorization') || undefined);
      acl.authorizePrivateKeys(identity, identity.email);
      return identity;
    } catch (e) {
      auditRefusal(ctx, event, identity, e);
      throw e;
    }
  };

  const get = async (ctx: Ctx) => {
    const identity = await authorizeFor(ctx, 'private-key.read');
    await audited(ctx, 'private-key.read', identity, async () => {
      const keys = await store.listByEmail(identity.email);
      ctx.set('Cache-Control', 'no-store');
      ctx.body = { privateKeys: keys.map((k) => ({ decryptedPrivateKey: k.privateKey })) };
      return { fingerprints: keys.map((k) => k.fingerprint) };
    });
  };

  const put = async (ctx: Ctx) => {
    const identity = await authorizeFor(ctx, 'private-key.write');
    // Refusals of the upload itself (provisioning policy, a bad or aborted body) are audited too.
    await audited(ctx, 'private-key.write', identity, async () => {
      if (config.api.keyProvisioning === 'admin') {
        // RFC 9110: a 405 says what is allowed.
        ctx.set('Allow', 'HEAD, GET');
        throw new MethodNotAllowedError(
          `No key has been generated for ${identity.email} yet. Please ask your administrator.`,
          'Keys are provisioned by an administrator',
          'ERR_CLIENT_UPLOAD_DISABLED',
        );
      }
      const body = await readJsonObject(ctx);
      const { armored, claimed } = submittedKey(body);
      // A revoked or expired key is taken only as an update of one the user holds (how a revocation reaches the apps).
      const held = async () => (await store.listByEmail(identity.email)).map((k) => k.fingerprint);
      const key = await validatePrivateKey(armored, identity.email, claimed, new Date(), held);
      const result = await store.upsert(key, config.api.keyLimits);
      ctx.set('Cache-Control', 'no-store');
      ctx.body = {};
      return { fingerprints: [key.fingerprint], change: result, keyState: unusableStateOf(key) };
    });
  };

  router.get('/v1/keys/private', get);
  router.put('/v1/keys/private', put);
  router.get('/keys/private', get);
  router.put('/keys/private', put);
}

/**
 * The key of a PUT body on either path: `{privateKey}` (current apps), or the older
 * `{decryptedPrivateKey, publicKey?, fingerprint?, longid?}` that the legacy path and browser
 * releases up to 8.3.2 send to /v1 too. `privateKey` wins when both are present; whatever the client
 * asserts about the key must match it.
 */
function submittedKey(body: Record<string, unknown>): { armored: string; claimed: ClaimedKeyFacts } {
  const armored = body.privateKey === undefined && body.decryptedPrivateKey !== undefined ? stringField(body, 'decryptedPrivateKey') : stringField(body, 'privateKey');
  return {
    armored,
    claimed: { publicKey: optionalStringField(body, 'publicKey'), fingerprint: optionalStringField(body, 'fingerprint'), longid: optionalStringField(body, 'longid') },
  };
}

/** What a key operation that succeeded tells its audit entry. */
type AuditedOutcome = Pick<AuditRecord, 'fingerprints' | 'change' | 'keyState'>;

/** Runs a key operation and writes its audit entry, whatever the outcome. */
async function audited(
  ctx: Ctx,
  event: AuditEvent,
  identity: Identity,
  op: () => Promise<AuditedOutcome>,
): Promise<void> {
  let outcome: AuditedOutcome;
  try {
    outcome = await op();
  } catch (e) {
    auditRefusal(ctx, event, identity, e);
    throw e;
  }
  audit(ctx.state.logger, { ...auditContext(ctx, event, identity), fingerprints: outcome.fingerprints, change: outcome.change, keyState: outcome.keyState, status: 200 });
}

/** The audit entry of a key operation that was refused or failed (identity undefined: before the token was verified). */
function auditRefusal(ctx: Ctx, event: AuditEvent, identity: Identity | undefined, e: unknown): void {
  const status = e instanceof EkmError ? e.status : 500;
  audit(ctx.state.logger, { ...auditContext(ctx, event, identity), fingerprints: [], status, code: e instanceof EkmError ? e.code : 'ERR_INTERNAL' });
}

function auditContext(ctx: Ctx, event: AuditEvent, identity: Identity | undefined) {
  return { event, email: identity?.email, clientAddress: ctx.state.clientAddress, userAgent: ctx.get('User-Agent') || undefined };
}
