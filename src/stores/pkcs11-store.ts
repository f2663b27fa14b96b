import cluster from 'node:cluster';
import type { Pkcs11StoreConfig } from '../config/config.js';
import { StoreUnavailableError } from '../errors.js';
import { keyIdsOf } from '../keys/key-ids.js';
import type { EngineChannel } from './pkcs11/engine-protocol.js';
import { HostChannel } from './pkcs11/host-channel.js';
import { Pkcs11Engine } from './pkcs11/pkcs11-engine.js';
import type { OwnerKeyLimits } from './owner-key-limits.js';
import type { Store, StoreDependencies, StoredKey, UpsertResult } from './store.js';

/**
 * Opens the PKCS#11 store (`store.type=Pkcs11Store`): keys live on the HSM token as AES-256-GCM
 * records under a sensitive, non-extractable key generated in the token (see src/stores/pkcs11/).
 *
 * In a cluster worker it connects to the primary, which owns the PKCS#11 session (the primary must
 * have called startPkcs11Host from ./pkcs11/pkcs11-host.js before forking); a worker never loads the
 * module itself. Anywhere else (the primary, the command line tools, tests) it starts the engine
 * thread in this process. Throws ConfigError for operator mistakes, StoreUnavailableError for outages.
 */
export async function openPkcs11Store(config: Pkcs11StoreConfig, deps: StoreDependencies): Promise<Store> {
  if (cluster.isWorker) {
    const channel = await HostChannel.connect();
    return new Pkcs11Store(channel, async () => channel.close());
  }
  const engine = await Pkcs11Engine.acquire(config, deps.logger, { tolerateOutage: false });
  return new Pkcs11Store(engine, () => engine.release());
}

/** The Store contract over an engine channel; holds no state, so nothing can serve a deleted key. */
export class Pkcs11Store implements Store {
  readonly type = 'Pkcs11Store';
  private closed = false;

  constructor(
    private readonly channel: EngineChannel,
    private readonly onClose: () => Promise<void>,
  ) {}

  async probe(): Promise<void> {
    await this.engine().call({ op: 'probe' });
  }

  async listByEmail(email: string): Promise<StoredKey[]> {
    return this.engine().call({ op: 'list', email });
  }

  async listByKeyId(id: string): Promise<StoredKey[]> {
    return this.engine().call({ op: 'listByKeyId', id });
  }

  async upsert(key: StoredKey, limits?: OwnerKeyLimits): Promise<UpsertResult> {
    const keyIds = await keyIdsOf(key.fingerprint, key.publicKey);
    // Only the four fields cross the boundary, whatever else the caller's object carries.
    const request = { op: 'upsert', key: { email: key.email, fingerprint: key.fingerprint, privateKey: key.privateKey, publicKey: key.publicKey }, keyIds } as const;
    return this.engine().call(limits === undefined ? request : { ...request, limits: { maxKeys: limits.maxKeys, maxBytes: limits.maxBytes } });
  }

  async delete(email: string, fingerprint: string): Promise<boolean> {
    return this.engine().call({ op: 'delete', email, fingerprint });
  }

  async *all(): AsyncIterable<StoredKey> {
    const channel = this.engine();
    const cursor = await channel.call({ op: 'scanOpen' });
    let finished = false;
    try {
      for (;;) {
        const page = await channel.call({ op: 'scanNext', cursor });
        if (page.length === 0) break;
        yield* page;
      }
      finished = true;
    } finally {
      if (!finished) await channel.call({ op: 'scanClose', cursor }).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.onClose();
  }

  private engine(): EngineChannel {
    if (this.closed) throw new StoreUnavailableError('The PKCS#11 store is closed');
    return this.channel;
  }
}
