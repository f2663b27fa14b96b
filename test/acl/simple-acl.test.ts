import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Identity } from '../../src/auth/authenticator.js';
import { SimpleAcl } from '../../src/acl/simple-acl.js';
import { ForbiddenError } from '../../src/errors.js';

const user = (email: string, hostedDomain?: string): Identity => ({ email, hostedDomain });

/** Passes when the ACL refuses with a 403 in the error hierarchy; names the case that got through. */
function assertForbidden(acl: SimpleAcl, identity: Identity, ownerEmail: string, because: RegExp): void {
  assert.throws(
    () => acl.authorizePrivateKeys(identity, ownerEmail),
    (e: unknown) => e instanceof ForbiddenError && e.status === 403 && e.code === 'ERR_FORBIDDEN' && because.test(e.message),
    `${identity.email} (hd ${identity.hostedDomain}) was let at the keys of ${ownerEmail}`,
  );
}

function assertAllowed(acl: SimpleAcl, identity: Identity, ownerEmail: string): void {
  assert.doesNotThrow(() => acl.authorizePrivateKeys(identity, ownerEmail), `${identity.email} (hd ${identity.hostedDomain}) was refused their own keys (${ownerEmail})`);
}

// The routes always pass the caller's own email; these call the ACL as a route with a bug, or a
// future admin route, would: with someone else's.
describe('SimpleAcl', () => {
  it("lets a user at their own keys only, never another user's", () => {
    const acl = new SimpleAcl(undefined);
    assertAllowed(acl, user('alice@example.com'), 'alice@example.com');
    assertAllowed(acl, user('alice@example.com'), 'Alice@Example.COM');
    for (const other of ['bob@example.com', 'alice@example.org', 'alice@example.com.evil.example', 'xalice@example.com', '']) {
      assertForbidden(acl, user('alice@example.com'), other, /only access your own/);
    }
  });

  it("admits only the organisation's domains, by the hd claim when the IdP sends one", () => {
    const acl = new SimpleAcl(['example.com', 'example.org']);
    assertAllowed(acl, user('alice@example.com'), 'alice@example.com');
    assertAllowed(acl, user('carol@example.org', 'example.org'), 'carol@example.org');
    // A Workspace account of the organisation whose address is on another domain (an alias domain).
    assertAllowed(acl, user('dora@alias.example', 'example.com'), 'dora@alias.example');
    // By the email's domain when there is no hd claim: exact domains only.
    for (const email of ['eve@evil.example', 'eve@sub.example.com', 'eve@example.com.evil.example', 'eve@notexample.com']) {
      assertForbidden(acl, user(email), email, /not in a domain this key manager serves/);
    }
    // The hd claim decides when present: an organisation address in another Workspace is refused.
    assertForbidden(acl, user('mallory@example.com', 'evil.example'), 'mallory@example.com', /not in a domain/);
    // Within the organisation, still only one's own keys.
    assertForbidden(acl, user('alice@example.com'), 'carol@example.org', /only access your own/);
    assertForbidden(acl, user('dora@alias.example', 'example.com'), 'alice@example.com', /only access your own/);
  });

  it('never lets a lookalike of an email stand for it, on either side (the one email rule)', () => {
    const acl = new SimpleAcl(undefined);
    for (const lookalike of ['\u212Aate@example.com', '\uFF4Bate@example.com', 'kate\u0130@example.com', 'kate\0@example.com', 'kate\x1b@example.com', '"kate"@example.com']) {
      assertForbidden(acl, user('kate@example.com'), lookalike, /only access your own/);
      assertForbidden(acl, user(lookalike), lookalike, /only access your own/);
    }
  });
});
