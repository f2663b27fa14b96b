import { LIST_FORMATS, type ListFormat } from './list-keys.js';

/** What the command line asked for. */
export interface Arguments {
  readonly command: 'serve' | 'version' | 'help' | 'test-store-connection' | 'export' | 'import' | 'list' | 'delete' | 'rotate-store-key' | 'reload';
  /** `--config=<file>`, when given. */
  readonly configFile: string | undefined;
  /** The file of `--export=<file>` / `--import=<file>`; what `--delete=` names. */
  readonly file: string | undefined;
  /** `--export-passphrase-file=<file>` / `--import-passphrase-file=<file>` / `--new-passphrase-file=<file>`. */
  readonly passphraseFile: string | undefined;
  /** `--format=` of `--list`. */
  readonly format: ListFormat;
  /** `--yes`: `--delete` removes without asking. */
  readonly yes: boolean;
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
  --list                     One line per stored key (email, fingerprint, algorithm and size, created, expires,
                             last written; never key material) and a summary line
      --format=table|json    table (default), or one JSON document on stdout for scripts (logs go to stderr)
  --delete=<email|fingerprint|file>
                             Remove a user's keys, one key by fingerprint, or the keys of every email in <file>
                             (one a line); lists them and asks on a terminal; audited as private-key.delete
      --yes                  remove without asking (required when stdin is not a terminal)
  --rotate-store-key         Re-encrypt every record of the store under new keys while the service runs
                             (EncryptedDbStore); resumable: run it again after an interruption
      --new-passphrase-file=<file>      EncryptedDbStore: the new passphrase (then set store.db.encryption.key)
  --reload[=<pid>]           Validate the config, then have the running service (its primary: <pid>, default
                             $MAINPID as systemctl reload sets it) reload it, and wait for the outcome

Examples:
  flowcrypt-ekm --list --format=json | jq -r '.keys[] | select(.expires != null) | .email'
  flowcrypt-ekm --delete=alice@example.com
  flowcrypt-ekm --delete=departed.txt --yes
  flowcrypt-ekm --rotate-store-key --new-passphrase-file=/root/new-passphrase

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
  let passphraseFor: 'export' | 'import' | 'rotate-store-key' | undefined;
  let format: ListFormat | undefined;
  let yes = false;
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
      case 'list':
      case 'rotate-store-key':
        noValue();
        setCommand(name);
        break;
      case 'export':
      case 'import':
        file = needValue();
        setCommand(name);
        break;
      case 'delete':
        if (value === undefined || value === '') throw new UsageError('--delete needs a value: --delete=<email|fingerprint|file of emails>');
        file = value;
        setCommand(name);
        break;
      case 'format': {
        const f = needValue();
        if (!(LIST_FORMATS as readonly string[]).includes(f)) throw new UsageError(`--format must be one of ${LIST_FORMATS.join(', ')}, not '${f}'`);
        format = f as ListFormat;
        break;
      }
      case 'yes':
        noValue();
        yes = true;
        break;
      case 'new-passphrase-file':
        passphraseFile = needValue();
        passphraseFor = 'rotate-store-key';
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
  if (passphraseFor === 'rotate-store-key' && command !== passphraseFor) throw new UsageError('--new-passphrase-file goes with --rotate-store-key');
  if (passphraseFor !== undefined && command !== passphraseFor) {
    throw new UsageError(`--${passphraseFor}-passphrase-file goes with --${passphraseFor}=<file>`);
  }
  if (format !== undefined && command !== 'list') throw new UsageError('--format goes with --list');
  if (yes && command !== 'delete') throw new UsageError('--yes goes with --delete');
  return { command, configFile, file, passphraseFile, format: format ?? 'table', yes, pid };
}
