import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import * as openpgp from 'openpgp';
import { MAX_USER_IDS } from '../../src/keys/key-structure-check.js';
import { wkdHash } from '../../src/keys/wkd-hash.js';
import { request } from '../../testbed/http-client.js';
import { DaemonWithIdp } from '../support/daemon-with-idp.js';
import { HttpFlood } from '../support/http-flood.js';
import { makePrivateKey, withNewExpiry } from '../support/openpgp-keys.js';
import { percentile } from '../support/percentile.js';

/**
 * The largest allowed user: 10 keys (api.keys.max.per.user), each near the structure limits of one
 * key (MAX_USER_IDS user ids, 57 of the MAX_KEY_BYTES 64 KB: about 78 KB armored), with long user ids
 * of other addresses (what makes parsing a key slow). Ten such keys stay under the default 1 MB
 * budget, so the test sets a budget just above them.
 */
const EXTRA_USER_IDS = MAX_USER_IDS - 1;
const USER_ID_NAME = 'N'.repeat(1600);
/** api.keys.max.bytes.per.user here: 5 KB above the ten keys, less than a grown key adds. */
const BYTE_BUDGET = 785_000;
const MEASURE_MS = 8000;

/** A curve25519 key of `email` carrying `extra` more user ids of aliases with long names. */
async function bulkyKey(email: string, extra: number): Promise<{ armored: string; fingerprint: string }> {
  const aliases = Array.from({ length: extra }, (_, i) => ({ name: USER_ID_NAME, email: email.replace('@', `.alias${i}@`) }));
  const { privateKey } = await openpgp.generateKey({ userIDs: [{ name: 'Big User', email }, ...aliases], type: 'curve25519', format: 'armored' });
  const key = await openpgp.readPrivateKey({ armoredKey: privateKey });
  return { armored: privateKey, fingerprint: key.getFingerprint().toUpperCase() };
}

/** CPU seconds (user + system) used so far by these processes, from /proc. */
function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / 100;
}

describe('per-user limits and an anonymous flood on the largest allowed user (real daemon, 2 workers, EncryptedDbStore)', () => {
  let e2e: DaemonWithIdp;
  let bigToken: string;
  const bigKeys: { armored: string; fingerprint: string }[] = [];
  const victims: { email: string; token: string }[] = [];
  const wkdUrl = () => `${e2e.ekm.baseUrl}/.well-known/openpgpkey/example.com/hu/${wkdHash('big')}?l=big`;
  const publicUrl = () => `${e2e.ekm.baseUrl}/v1/keys/public/big@example.com`;
  const putKey = (token: string, privateKey: string) => e2e.putKey(token, privateKey);

  before(async () => {
    e2e = await DaemonWithIdp.start({
      orgId: 'limits-e2e.org',
      audience: 'ekm-limits-e2e',
      properties: {
        'api.keys.max.bytes.per.user': String(BYTE_BUDGET),
        // Access log lines of the flood would cost the measuring process more than the measured one.
        'logger.default.level': 'warn',
      },
    });
    bigToken = await e2e.token('big@example.com');
    let total = 0;
    for (let i = 0; i < 10; i++) {
      const key = await bulkyKey('big@example.com', EXTRA_USER_IDS);
      total += Buffer.byteLength(key.armored);
      const answer = await putKey(bigToken, key.armored);
      assert.equal(answer.status, 200, answer.text);
      bigKeys.push(key);
    }
    assert.ok(total > BYTE_BUDGET - 10_000 && total < BYTE_BUDGET, `the largest allowed user holds ${total} bytes`);
    for (let i = 0; i < 4; i++) {
      const email = `victim${i}@example.com`;
      const token = await e2e.token(email);
      const answer = await putKey(token, (await makePrivateKey(email)).armored);
      assert.equal(answer.status, 200, answer.text);
      victims.push({ email, token });
    }
  });

  after(() => e2e?.close());

  /** Other users fetching their own private keys, two at a time over keep-alive connections, for `ms`; their latencies. */
  const victimFetches = async (ms: number): Promise<number[]> => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    const latencies: number[] = [];
    const until = performance.now() + ms;
    await Promise.all(
      [0, 1].map(async (loop) => {
        for (let i = loop; performance.now() < until; i += 2) {
          const victim = victims[i % victims.length]!;
          const start = performance.now();
          const status = await new Promise<number>((resolve, reject) => {
            http
              .get(`${e2e.ekm.baseUrl}/v1/keys/private`, { agent, headers: { authorization: `Bearer ${victim.token}` } }, (res) => {
                res.resume();
                res.on('end', () => resolve(res.statusCode ?? 0));
              })
              .on('error', reject);
          });
          latencies.push(performance.now() - start);
          assert.equal(status, 200);
        }
      }),
    );
    agent.destroy();
    return latencies;
  };

  it("keeps other users' key fetch p99 under 5x normal while 6 anonymous WKD and 2 public-key clients hammer the largest allowed user", async () => {
    assert.equal((await request(wkdUrl())).status, 200);
    await victimFetches(1000);
    const normal = await victimFetches(MEASURE_MS);

    const flood = await HttpFlood.start({ urls: [{ url: wkdUrl(), connections: 6 }, { url: publicUrl(), connections: 2 }] });
    let flooded: number[];
    try {
      await new Promise((r) => setTimeout(r, 1000));
      flooded = await victimFetches(MEASURE_MS);
    } finally {
      const result = await flood.stop();
      assert.equal(result.failures, 0);
      assert.deepEqual(Object.keys(result.answers), ['200']);
    }

    // The cost of one WKD answer for this user: the workers' CPU over a WKD-only flood.
    const workers = e2e.ekm.workerPids();
    const wkdOnly = await HttpFlood.start({ urls: [{ url: wkdUrl(), connections: 6 }] });
    const cpuBefore = cpuSeconds(workers);
    await new Promise((r) => setTimeout(r, 4000));
    const cpuAfter = cpuSeconds(workers);
    const wkd = await wkdOnly.stop();
    const wkdRequests = wkd.answers['200'] ?? 0;

    const figures = {
      normal: { samples: normal.length, p50: percentile(normal, 50), p99: percentile(normal, 99) },
      flooded: { samples: flooded.length, p50: percentile(flooded, 50), p99: percentile(flooded, 99) },
      wkd: { requests: wkdRequests, cpuMsPerRequest: wkdRequests === 0 ? Infinity : ((cpuAfter - cpuBefore) * 1000) / wkdRequests },
    };
    console.log(`per-user limits flood figures: ${JSON.stringify(figures)}`);
    assert.ok(figures.flooded.p99 < 5 * figures.normal.p99, JSON.stringify(figures));
  });

  it('refuses an 11th new fingerprint with the message the apps show', async () => {
    const answer = await putKey(bigToken, (await makePrivateKey('big@example.com')).armored);
    assert.equal(answer.status, 400, answer.text);
    assert.deepEqual(answer.json, { code: 400, message: 'at most 10 keys per user: ask your administrator to remove old ones', details: answer.json.details });
    assert.equal(typeof answer.json.details, 'string');
  });

  it('refuses an update that grows a held key past the byte budget', async () => {
    const privateKey = await openpgp.readPrivateKey({ armoredKey: bigKeys[1]!.armored });
    // Longer names on the same user ids: about 8 KB more, still within one key's structure limits.
    const userIDs = [{ name: 'Big User', email: 'big@example.com' }, ...Array.from({ length: EXTRA_USER_IDS }, (_, i) => ({ name: `${USER_ID_NAME}${'M'.repeat(200)}`, email: `big.alias${i}@example.com` }))];
    const { privateKey: grown } = await openpgp.reformatKey({ privateKey, userIDs, format: 'armored' });
    const answer = await putKey(bigToken, grown);
    assert.equal(answer.status, 400, answer.text);
    assert.equal(answer.json.code, 400);
    assert.equal(answer.json.message, `at most ${BYTE_BUDGET} bytes of keys per user: ask your administrator to remove old ones`);
  });

  it('accepts an update of a held fingerprint at the limit, and every worker serves the new public key at once', async () => {
    // Fresh connections take turns over the two workers: several in a row reach both.
    const answers = async (url: string) => Promise.all(Array.from({ length: 6 }, () => request(url)));
    const before = await answers(publicUrl());
    const wkdBefore = await answers(wkdUrl());
    const answer = await putKey(bigToken, await withNewExpiry(bigKeys[0]!.armored, 'big@example.com'));
    assert.equal(answer.status, 200, answer.text);
    for (const after of await answers(publicUrl())) {
      assert.equal(after.status, 200);
      assert.equal(after.json.publicKeys.length, 10);
      assert.notEqual(after.json.publicKeys[0].publicKey, before[0]!.json.publicKeys[0].publicKey);
      assert.deepEqual(after.json.publicKeys.slice(1), before[0]!.json.publicKeys.slice(1));
    }
    for (const wkd of await answers(wkdUrl())) {
      assert.equal(wkd.status, 200);
      assert.notEqual(wkd.text, wkdBefore[0]!.text);
    }
  });
});
