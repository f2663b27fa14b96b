import type { StoreConfig } from '../config/config.js';
import { openEncryptedDbStore } from './encrypted-db-store.js';
import { openKmipStore } from './kmip-store.js';
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
