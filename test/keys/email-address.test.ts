import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkEmailAddress, displayEmail, isSameMailbox, normalizeDomain, normalizeEmailAddress } from '../../src/keys/email-address.js';

/** Lookalikes and break-outs of kate@example.com, each with what the refusal must name. */
const HOSTILE: readonly [string, string, RegExp][] = [
  ['U+212A KELVIN SIGN', '\u212Aate@example.com', /U\+212A, which is not printable ASCII/],
  ['U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE', 'kate.\u0130@example.com', /U\+0130/],
  ['fullwidth k', '\uFF4Bate@example.com', /U\+FF4B/],
  ['fullwidth K in the domain', 'kate@\uFF25xample.com', /U\+FF25/],
  ['U+017F LONG S', 'kate\u017F@example.com', /U\+017F/],
  ['a combining dot', 'kate\u0307@example.com', /U\+0307/],
  ['ESC', 'kate\x1b[31m@example.com', /control character U\+001B/],
  ['NUL', 'kate\0@example.com', /control character U\+0000/],
  ['DEL', 'kate\x7f@example.com', /control character U\+007F/],
  ['a newline', 'kate@example.com\n', /control character U\+000A/],
  ['a double quote', '"kate"@example.com', /character " \(U\+0022\)/],
  ['a single quote', "o'kate@example.com", /character ' \(U\+0027\)/],
  ['a backquote', 'k`ate@example.com', /character ` \(U\+0060\)/],
  ['a backslash', 'ka\\te@example.com', /U\+005C/],
  ['angle brackets', 'kate@example.com>', /U\+003E/],
  ['a space', 'kate @example.com', /a space/],
  ['a slash', '../kate@example.com', /U\+002F/],
  ['an astral character', 'kate\u{1D55C}@example.com', /U\+1D55C/],
  ['a lone surrogate', 'kate\uD800@example.com', /U\+D800/],
];

describe('email address rule', () => {
  it('lowercases ASCII only and keeps the dot-atom characters', () => {
    assert.equal(normalizeEmailAddress('Kate@Example.COM'), 'kate@example.com');
    assert.equal(normalizeEmailAddress('first.last+tag@sub.example.co.uk'), 'first.last+tag@sub.example.co.uk');
    assert.equal(normalizeEmailAddress("a!#$%&*+-=?^_{|}~z@x-1.example"), "a!#$%&*+-=?^_{|}~z@x-1.example");
    assert.equal(normalizeEmailAddress('root@localhost'), 'root@localhost');
    assert.equal(normalizeEmailAddress('user@xn--bcher-kva.example'), 'user@xn--bcher-kva.example', 'an IDN in its ASCII form');
  });

  for (const [name, email, reason] of HOSTILE) {
    it(`refuses ${name}, naming the character, never echoing the input`, () => {
      const check = checkEmailAddress(email);
      assert.equal(check.email, undefined);
      assert.match(check.refusal, reason);
      assert.equal(/[^\x20-\x7e]/.test(check.refusal), false, 'the reason is printable ASCII');
      assert.equal(check.refusal.includes('kate'), false);
      assert.equal(isSameMailbox(email, 'kate@example.com'), false);
    });
  }

  it('refuses what is not local@domain', () => {
    const cases: [string, RegExp][] = [
      ['', /has no @/],
      ['kate', /has no @/],
      ['kate@a@example.com', /more than one @/],
      ['@example.com', /empty local part/],
      ['kate@', /empty domain/],
      ['.kate@example.com', /leading, trailing or doubled dot/],
      ['kate.@example.com', /leading, trailing or doubled dot/],
      ['ka..te@example.com', /leading, trailing or doubled dot/],
      ['kate@example..com', /not a domain name/],
      ['kate@example.com.', /not a domain name/],
      ['kate@-example.com', /not a domain name/],
      ['kate@example_x.com', /not a domain name/],
      ['kate@[192.0.2.1]', /U\+005B/],
      [`${'k'.repeat(65)}@example.com`, /local part longer than 64/],
      [`kate@${'a'.repeat(64)}.com`, /not a domain name/],
      [`${'k'.repeat(64)}@${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(62)}`, /longer than 254/],
      ['x'.repeat(100_000), /longer than 254/],
    ];
    for (const [email, reason] of cases) {
      const check = checkEmailAddress(email);
      assert.equal(check.email, undefined, JSON.stringify(email));
      assert.match(check.refusal, reason, JSON.stringify(email));
    }
    assert.equal(normalizeEmailAddress(`${'k'.repeat(64)}@${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(61)}`)?.length, 254);
  });

  it('accepts only emails that NFKC and Unicode lowercasing leave as they are', () => {
    // Every BMP character in every position: whatever is accepted is a fixed point of both.
    for (let code = 0; code <= 0xffff; code++) {
      const c = String.fromCharCode(code);
      for (const raw of [`${c}ate@example.com`, `ka${c}e@example.com`, `kate@${c}xample.com`]) {
        const email = normalizeEmailAddress(raw);
        if (email === undefined) continue;
        assert.equal(email.normalize('NFKC'), email, `U+${code.toString(16)}`);
        assert.equal(email.toLowerCase(), email, `U+${code.toString(16)}`);
        assert.equal(email.toUpperCase().toLowerCase(), email, `U+${code.toString(16)}`);
        assert.ok(code < 0x7f, `U+${code.toString(16)} accepted`);
      }
    }
  });

  it('names one mailbox by one spelling only', () => {
    assert.ok(isSameMailbox('Kate@EXAMPLE.com', 'kate@example.com'));
    assert.ok(!isSameMailbox('\u212Aate@example.com', 'kate@example.com'));
    assert.ok(!isSameMailbox('kate@example.com', 'Kate@example.com'), 'the owner is already normalised');
    assert.ok(!isSameMailbox(undefined, 'kate@example.com'));
    assert.ok(!isSameMailbox('', ''));
  });

  it('checks domains with the same rule', () => {
    assert.equal(normalizeDomain('Example.COM'), 'example.com');
    assert.equal(normalizeDomain('\u212Aexample.com'), undefined);
    assert.equal(normalizeDomain('example.com:443'), undefined);
    assert.equal(normalizeDomain('exa mple.com'), undefined);
    assert.equal(normalizeDomain(''), undefined);
    assert.equal(normalizeDomain(`${'a.'.repeat(125)}com`)?.length, 253);
    assert.equal(normalizeDomain(`${'a.'.repeat(125)}co.m`), undefined, 'longer than 253');
  });

  it('displays refused emails escaped, so a lookalike shows as what it is', () => {
    assert.equal(displayEmail('\u212Aate@example.com'), '\\u212Aate@example.com');
    assert.equal(displayEmail('kate\x1b[31m\0@example.com'), 'kate\\u001B[31m\\u0000@example.com');
    assert.equal(displayEmail('ka\\u0041te@x'), 'ka\\\\u0041te@x', 'a literal backslash cannot fake an escape');
    assert.equal(displayEmail('\u{1D55C}@x'), '\\u{1D55C}@x');
    assert.equal(displayEmail('x'.repeat(1000)), `${'x'.repeat(254)}...`);
  });
});
