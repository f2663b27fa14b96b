import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StoreUnavailableError } from '../../src/errors.js';
import { MeasuredStore } from '../../src/metrics/measured-store.js';
import { ReopeningStore } from '../../src/stores/reopening-store.js';
import type { Store, StoredKey } from '../../src/stores/store.js';
import { makeKey } from './store-conformance.js';

type Method = Exclude<keyof Store, 'type'>;

/**
 * One call per Store method, each argument present and distinct. Typed over every method of the
 * interface: a method added to Store does not compile until it is listed here, and so tested.
 */
const key: StoredKey = makeKey('decorated@example.com');
const CALLS: { readonly [M in Method]-?: Parameters<NonNullable<Store[M]>> } = {
  probe: [],
  probeWrites: [],
  listByEmail: ['decorated@example.com'],
  listByKeyId: ['0123456789ABCDEF'],
  upsert: [key, { maxKeys: 7, maxBytes: 12345 }],
  delete: ['decorated@example.com', key.fingerprint],
  count: [],
  all: [],
  close: [],
};
/** Optional methods a decorator leaves out on purpose, with the reason. */
const NOT_PASSED: Partial<Record<string, Partial<Record<Method, string>>>> = {
  MeasuredStore: { count: 'read through keyCount()' },
  ReopeningStore: { count: 'only the metrics count keys' },
};

/** A store that records each call it gets, with its arguments. */
function recordingStore(): { store: Store; calls: [string, unknown[]][] } {
  const calls: [string, unknown[]][] = [];
  const record = (name: string, result: unknown) => (...args: unknown[]) => {
    calls.push([name, args]);
    return result;
  };
  const store: Store = {
    type: 'RecordingStore',
    probe: record('probe', Promise.resolve()),
    probeWrites: record('probeWrites', Promise.resolve('up')),
    listByEmail: record('listByEmail', Promise.resolve([])),
    listByKeyId: record('listByKeyId', Promise.resolve([])),
    upsert: record('upsert', Promise.resolve('added')),
    delete: record('delete', Promise.resolve(true)),
    count: record('count', Promise.resolve(0)),
    all: record('all', (async function* () {
      // no keys
    })()),
    close: record('close', Promise.resolve()),
  } as Store;
  return { store, calls };
}

async function callEvery(store: Store, skip: Partial<Record<Method, string>>): Promise<void> {
  for (const [method, args] of Object.entries(CALLS) as [Method, unknown[]][]) {
    if (skip[method] !== undefined) continue;
    const fn: unknown = Reflect.get(store, method);
    assert.equal(typeof fn, 'function', `${store.constructor.name} has no ${method}`);
    const result = (fn as (...a: unknown[]) => unknown).apply(store, args);
    if (method === 'all') for await (const _ of result as AsyncIterable<StoredKey>);
    else await result;
  }
}

describe('store decorators pass every Store method on, with all its arguments', () => {
  const decorators: [string, (inner: Store) => Promise<Store>][] = [
    ['MeasuredStore', async (inner) => new MeasuredStore(inner)],
    [
      'ReopeningStore',
      async (inner) => {
        const reopening = new ReopeningStore('RecordingStore', async () => inner, new StoreUnavailableError('not yet'));
        // It opens the store on the first call after its retry interval.
        await new Promise((r) => setTimeout(r, 1050));
        return reopening;
      },
    ],
  ];
  for (const [name, decorate] of decorators) {
    it(name, async () => {
      const { store, calls } = recordingStore();
      const skip = NOT_PASSED[name] ?? {};
      await callEvery(await decorate(store), skip);
      const expected = (Object.entries(CALLS) as [Method, unknown[]][]).filter(([m]) => skip[m] === undefined);
      assert.deepEqual(calls, expected);
    });
  }
});
