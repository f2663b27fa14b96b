import type { StoreConfig } from '../config/config.js';
import { openEncryptedDbStore } from './encrypted-db-store.js';
import { openKmipStore } from './kmip-store.js';
import type { Logger } from '../logging/logger.js';
import { startPkcs11Host } from './pkcs11/pkcs11-host.js';
import { openPkcs11Store } from './pkcs11-store.js';
import type { Store, StoreDependencies } from './store.js';

type StoreFactory<T extends StoreConfig['type']> = (
  config: Extract<StoreConfig, { type: T }>,
  deps: StoreDependencies,
) => Promise<Store>;

/** The config name of each store and the factory that opens it. Adding a store: one file, one line. */
export const STORE_FACTORIES: { readonly [T in StoreConfig['type']]: StoreFactory<T> } = {
  EncryptedDbStore: openEncryptedDbStore,
  Pkcs11Store: openPkcs11Store,
  KmipStore: openKmipStore,
} as const;

/** Opens the configured store; throws ConfigError for operator mistakes, StoreUnavailableError for outages. */
export function openStore(config: StoreConfig, deps: StoreDependencies): Promise<Store> {
  const factory = STORE_FACTORIES[config.type] as StoreFactory<StoreConfig['type']>;
  return factory(config, deps);
}

/** A backend session owned by the primary and shared with the workers over IPC. */
export interface StoreHost {
  close(): Promise<void>;
}

/**
 * Starts, in the primary, what the configured store needs one process per host to own before
 * workers fork: the PKCS#11 session (SoftHSM2 and vendor modules count sessions per process, and
 * SoftHSM2 hides one process's writes from another). Other stores need none.
 */
export async function startStoreHost(config: StoreConfig, logger: Logger): Promise<StoreHost | undefined> {
  return config.type === 'Pkcs11Store' ? startPkcs11Host(config, logger) : undefined;
}
