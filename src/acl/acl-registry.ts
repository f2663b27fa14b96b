import type { Config } from '../config/config.js';
import type { Acl } from './acl.js';
import { SimpleAcl } from './simple-acl.js';

/** The config name of each ACL (`acl.type`) and its factory. */
export const ACLS: Readonly<Record<Config['acl']['type'], (config: Config) => Acl>> = {
  SimpleAcl: (config) => new SimpleAcl(config.org.domains),
} as const;
