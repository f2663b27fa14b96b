import { execFile } from 'node:child_process';
import type { Logger } from '../logging/logger.js';

/** How long one notification may take (systemd-notify waits until systemd has read it). */
const NOTIFY_TIMEOUT_MS = 10_000;

/**
 * Tells systemd (the unit's Type=notify) what the service is doing: READY=1 once every worker
 * listens, RELOADING=1 then READY=1 around a reload, STOPPING=1 on shutdown, STATUS= for
 * `systemctl status`. Nothing happens outside systemd (no NOTIFY_SOCKET).
 *
 * Why `systemd-notify` (with NotifyAccess=all in the unit) rather than an addon: the protocol is an
 * AF_UNIX datagram, which Node.js cannot send, and a notification is sent four times in a service's
 * life, so a process per notification costs nothing, while a native addon (our own N-API module, or a
 * package such as sd-notify linking libsystemd) would be one more thing to compile for every Node.js
 * ABI, ship and audit. systemd 252's systemd-notify waits on a barrier until systemd has processed
 * the message, so the message is attributed to the unit even though its sender exits at once
 * (systemd-notify(1)); that is why it is never given --no-block.
 */
export function notifyServiceManager(fields: Readonly<Record<string, string>>, logger: Logger): Promise<void> {
  if (!process.env.NOTIFY_SOCKET) return Promise.resolve();
  const args = Object.entries(fields).map(([name, value]) => `${name}=${value.replace(/\n/g, ' ')}`);
  return new Promise((resolve) => {
    execFile('systemd-notify', args, { timeout: NOTIFY_TIMEOUT_MS }, (error, _stdout, stderr) => {
      if (error !== null) logger.warn('Could not notify systemd', { notification: args.join(' '), reason: stderr.trim() || error.message });
      resolve();
    });
  });
}
