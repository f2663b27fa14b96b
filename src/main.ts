#!/usr/bin/env node
/**
 * The `flowcrypt-ekm` entry point. It checks the Node.js version before any other module loads:
 * the native addons (better-sqlite3, pkcs11js) are built for one Node.js ABI, and under another
 * Node.js they would fail with a loader error (or a crash) deep inside a store. A static import
 * would load, link and run the whole program before the first line here, so the command line is
 * imported only after the check.
 */

/** The Node.js major version the EKM runs on: package.json's engines and scripts/node24.sh say the same. */
const REQUIRED_NODE_MAJOR = 24;

const running = process.versions.node;
if (Number(running.split('.')[0]) !== REQUIRED_NODE_MAJOR) {
  process.stderr.write(`flowcrypt-ekm: needs Node.js ${REQUIRED_NODE_MAJOR}, but this is Node.js ${running}\n`);
  process.exit(1);
}

let commandLine: typeof import('./cli/command-line.js');
try {
  commandLine = await import('./cli/command-line.js');
} catch (e) {
  // A native addon built for another Node.js (ERR_DLOPEN_FAILED): Node's own explanation, which
  // names both ABI versions, on one line.
  if ((e as NodeJS.ErrnoException).code !== 'ERR_DLOPEN_FAILED') throw e;
  process.stderr.write(`flowcrypt-ekm: ${(e as Error).message.replace(/\s*\n\s*/g, ' ')}\n`);
  process.exit(1);
}
commandLine.runCommandLine(process.argv.slice(2));
