/** What the command line asked for. */
export interface Arguments {
  readonly command: 'serve' | 'version' | 'help' | 'test-store-connection' | 'export' | 'import' | 'reload';
  /** `--config=<file>`, when given. */
  readonly configFile: string | undefined;
  /** The file of `--export=<file>` / `--import=<file>`. */
  readonly file: string | undefined;
  /** `--export-passphrase-file=<file>` / `--import-passphrase-file=<file>`. */
  readonly passphraseFile: string | undefined;
  /** `--reload=<pid>`: the primary to reload; undefined: systemd's $MAINPID. */
  readonly pid: number | undefined;
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const USAGE = `Usage: flowcrypt-ekm [--config=<file>] [command]

Without a command, starts the Email Key Manager.

Commands:
  --version                  Print the version
  --help                     Print this help
  --test-store-connection    Connect to the configured store, search once, report the round trip latency,
                             and warn about stored keys whose owner email the email rule refuses
  --export=<file>            Write every stored key to <file> (JSON, mode 0600; holds decrypted private keys)
      --export-passphrase-file=<file>   encrypt the export to the passphrase in <file>
  --import=<file>            Import keys from a file written by --export (validated like PUT, upsert by fingerprint;
                             exits 1 when any key was refused, each refusal named with its reason)
      --import-passphrase-file=<file>   the passphrase of an encrypted export
  --reload[=<pid>]           Validate the config, then have the running service (its primary: <pid>, default
                             $MAINPID as systemctl reload sets it) reload it, and wait for the outcome

Options:
  --config=<file>            Config file. Default: ./flowcrypt-email-key-manager.properties,
                             else /etc/flowcrypt-ekm/flowcrypt-email-key-manager.properties
`;

/** Parses `--name` and `--name=value` arguments strictly: anything unknown is a UsageError. */
export function parseArguments(argv: readonly string[]): Arguments {
  let command = 'serve' as Arguments['command'];
  let configFile: string | undefined;
  let file: string | undefined;
  let passphraseFile: string | undefined;
  let passphraseFor: 'export' | 'import' | undefined;
  let pid: number | undefined;
  const setCommand = (c: Arguments['command']) => {
    if (command !== 'serve') throw new UsageError(`Give one command at a time (--${command} and --${c})`);
    command = c;
  };
  for (const arg of argv) {
    const m = /^--([a-z-]+)(?:=(.*))?$/s.exec(arg);
    if (m === null) throw new UsageError(`Unexpected argument '${arg}'`);
    const [, name, value] = m as unknown as [string, string, string | undefined];
    const needValue = () => {
      if (value === undefined || value === '') throw new UsageError(`--${name} needs a value: --${name}=<file>`);
      return value;
    };
    const noValue = () => {
      if (value !== undefined) throw new UsageError(`--${name} takes no value`);
    };
    switch (name) {
      case 'config':
        configFile = needValue();
        break;
      case 'version':
      case 'help':
      case 'test-store-connection':
        noValue();
        setCommand(name);
        break;
      case 'export':
      case 'import':
        file = needValue();
        setCommand(name);
        break;
      case 'reload':
        if (value !== undefined) {
          if (!/^[1-9]\d{0,9}$/.test(value)) throw new UsageError(`--reload takes a process id: --reload=<pid>`);
          pid = Number(value);
        }
        setCommand(name);
        break;
      case 'export-passphrase-file':
      case 'import-passphrase-file':
        passphraseFile = needValue();
        passphraseFor = name === 'export-passphrase-file' ? 'export' : 'import';
        break;
      default:
        throw new UsageError(`Unknown option '--${name}'`);
    }
  }
  if (passphraseFor !== undefined && command !== passphraseFor) {
    throw new UsageError(`--${passphraseFor}-passphrase-file goes with --${passphraseFor}=<file>`);
  }
  return { command, configFile, file, passphraseFile, pid };
}
