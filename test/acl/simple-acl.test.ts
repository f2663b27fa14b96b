import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SimpleAcl } from '../../src/acl/simple-acl.js';
import { ForbiddenError } from '../../src/errors.js';

describe('SimpleAcl', () => {
  const kate = { email: 'kate@example.com', hostedDomain: undefined };
  const forbidden = (fn: () => void) => assert.throws(fn, (e: unknown) => e instanceof ForbiddenError && e.status === 403);

  it("lets a user at the keys of their own email, in any ASCII case", () => {
    new SimpleAcl(undefined).authorizePrivateKeys(kate, 'kate@example.com');
    new SimpleAcl(['example.com']).authorizePrivateKeys(kate, 'Kate@EXAMPLE.com');
  });

  it('never lets a lookalike of an email stand for it, on either side', () => {
    const acl = new SimpleAcl(undefined);
    for (const lookalike of ['\u212Aate@example.com', '\uFF4Bate@example.com', 'kate\u0130@example.com', 'kate\0@example.com', 'kate\x1b@example.com', '"kate"@example.com']) {
      forbidden(() => acl.authorizePrivateKeys(kate, lookalike));
      forbidden(() => acl.authorizePrivateKeys({ email: lookalike, hostedDomain: undefined }, lookalike));
    }
  });

  it("checks the organisation's domains by hd, else by the email's domain", () => {
    const acl = new SimpleAcl(['example.com']);
    forbidden(() => acl.authorizePrivateKeys({ email: 'kate@example.org', hostedDomain: undefined }, 'kate@example.org'));
    forbidden(() => acl.authorizePrivateKeys({ email: 'kate@example.com', hostedDomain: 'example.org' }, 'kate@example.com'));
  });
});
