import { hostname, userInfo } from 'node:os';

/**
 * Who ran an administrative command, for its audit entries: the local user and the host. Run as
 * root, the packaged `flowcrypt-ekm` switches to the service user first, so it passes on who that
 * was (`sudo`'s user, else root) in FLOWCRYPT_EKM_INVOKED_BY: recorded as `invokedBy` beside the
 * real user, never in its place, since anyone can set an environment variable.
 */
export function operatorFields(env: NodeJS.ProcessEnv = process.env): { operator: string; host: string; invokedBy?: string } {
  const invokedBy = env.FLOWCRYPT_EKM_INVOKED_BY;
  const fields = { operator: userInfo().username, host: hostname() };
  // At most a login name's worth, printable: an environment variable is input too.
  return invokedBy === undefined || invokedBy === '' ? fields : { ...fields, invokedBy: invokedBy.replace(/[^\x20-\x7e]/g, '?').slice(0, 64) };
}
