import type { Config } from './config.js';
import { configFromProperties, readConfigFile } from './load-config.js';
import { SCHEMA, type RawProperties } from './schema.js';
import { loadKeystore } from '../tls/pkcs12.js';

/** A configuration in force: the validated Config and the properties it was built from. */
export interface RunningConfig {
  readonly config: Config;
  readonly properties: RawProperties;
}

/** What a reload will serve with, and what it changes. */
export interface PreparedReload extends RunningConfig {
  /** Properties whose new value takes effect now. */
  readonly changed: readonly string[];
  /** Properties changed in the file that keep their running value until a restart (`restartOnly`). */
  readonly keptUntilRestart: readonly string[];
}

/**
 * Re-reads the running config's file and validates it as a restart would load it, then builds what
 * a reload serves with: the new values, except that every `restartOnly` property keeps its running
 * value (present or absent). Checks what the primary checks at start for the reloadable part: the
 * HTTPS keystore opens with its password. Throws ConfigError with one line, and changes nothing.
 */
export function prepareReload(running: RunningConfig): PreparedReload {
  const file = running.config.file;
  const written = readConfigFile(file);
  // The file as a restart would load it: an error in a restart-only property is reported now, not
  // at the next restart.
  configFromProperties(written, file);
  const properties = new Map<string, string>();
  const changed: string[] = [];
  const keptUntilRestart: string[] = [];
  for (const def of SCHEMA) {
    const before = running.properties.get(def.name);
    const after = written.get(def.name);
    const kept = def.restartOnly === true ? before : after;
    if (kept !== undefined) properties.set(def.name, kept);
    if (before === after) continue;
    (def.restartOnly === true ? keptUntilRestart : changed).push(def.name);
  }
  const config = configFromProperties(properties, file);
  if (config.api.https) loadKeystore(config.api.https);
  return { config, properties, changed, keptUntilRestart };
}
