import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Debian's interpreter, not whatever python3 is first on PATH. */
const PYTHON = '/usr/bin/python3';

/**
 * What systemd does with NOTIFY_SOCKET, as far as a service can tell: an AF_UNIX datagram socket
 * that reads sd_notify messages and closes the file descriptors of BARRIER=1 messages (which is how
 * systemd-notify learns its message was read). Node.js has no AF_UNIX datagrams, hence Python.
 */
const LISTENER = `
import array, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('listening', flush=True)
while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(16 * 4))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array('i')
            fds.frombytes(data[:len(data) - len(data) % 4])
            for fd in fds:
                os.close(fd)
    if msg != b'BARRIER=1':
        print(msg.decode().replace('\\n', '\\t'), flush=True)
`;

/** A fake service manager's notification socket; `messages` are the datagrams, fields joined by tabs. */
export class NotifySocket {
  readonly messages: string[] = [];

  private constructor(
    readonly path: string,
    private readonly dir: string,
    private readonly child: ChildProcess,
  ) {}

  static async start(): Promise<NotifySocket> {
    const dir = mkdtempSync(join(tmpdir(), 'ekm-notify-'));
    const path = join(dir, 'notify');
    const child = spawn(PYTHON, ['-c', LISTENER, path], { stdio: ['ignore', 'pipe', 'inherit'] });
    const socket = new NotifySocket(path, dir, child);
    let buffered = '';
    let listening: () => void;
    const started = new Promise<void>((r) => (listening = r));
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line === 'listening') listening();
        else socket.messages.push(line);
      }
    });
    await Promise.race([started, once(child, 'exit').then(() => Promise.reject(new Error('the notify listener exited')))]);
    return socket;
  }

  /** Resolves once a message matching `pattern` has arrived (after the first `after` messages). */
  async waitFor(pattern: RegExp, after = 0, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.slice(after).find((m) => pattern.test(m));
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`no notification matching ${pattern} in ${timeoutMs} ms: ${JSON.stringify(this.messages)}`);
      await sleep(50);
    }
  }

  async close(): Promise<void> {
    if (this.child.exitCode === null) {
      const exited = once(this.child, 'exit');
      this.child.kill('SIGTERM');
      await exited;
    }
    if (existsSync(this.dir)) rmSync(this.dir, { recursive: true, force: true });
  }
}
