import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, it } from 'node:test';
import { USAGE } from '../../src/cli/arguments.js';
import { SCHEMA } from '../../src/config/schema.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const read = (path: string) => readFileSync(resolve(ROOT, path), 'utf8');
const GUIDE = 'docs/operator-guide.md';
const MAN_PAGE = 'debian/flowcrypt-ekm.1';
const REFERENCE = 'etc/flowcrypt-email-key-manager.properties';

/** The text from a heading line to the next heading of the same or a higher level. */
function section(text: string, heading: RegExp, file: string): string {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => heading.test(l));
  assert.notEqual(start, -1, `${file} has no section ${heading}`);
  const level = /^(#+|\.SH)/.exec(lines[start]!)![1]!;
  const ends = level === '.SH' ? (l: string) => l.startsWith('.SH ') : (l: string) => /^#+ /.test(l) && /^#+/.exec(l)![0].length <= level.length;
  const end = lines.findIndex((l, i) => i > start && ends(l));
  return lines.slice(start + 1, end === -1 ? undefined : end).join('\n');
}

const sorted = (names: Iterable<string>) => [...new Set(names)].sort();
const schemaNames = sorted(SCHEMA.map((p) => p.name));

/** Property names in the guide: the first cell of each row of the tables under "## Properties". */
function guideProperties(): string[] {
  return sorted([...section(read(GUIDE), /^## Properties$/, GUIDE).matchAll(/^\| `([a-z0-9.]+)` \|/gm)].map((m) => m[1]!));
}

/** Property names in the man page: each `.TP` entry of its PROPERTIES section. */
function manPageProperties(): string[] {
  return sorted([...section(read(MAN_PAGE), /^\.SH PROPERTIES$/, MAN_PAGE).matchAll(/^\.TP\n\.B ([a-z0-9.]+)$/gm)].map((m) => m[1]!));
}

/** Property names in the reference config, set or commented out. */
function referenceProperties(): string[] {
  return sorted([...read(REFERENCE).matchAll(/^#?([a-z][a-z0-9]*(?:\.[a-z0-9]+)+)=/gm)].map((m) => m[1]!));
}

/** Command-line options (`--name`), as `--help` prints them. */
const usageOptions = sorted([...USAGE.matchAll(/--([a-z][a-z-]*)/g)].map((m) => m[1]!));

/**
 * The operator guide (docs/operator-guide.md), the schema, the reference config and the man page
 * describe the same properties and commands: a property or command added to one and not the
 * others, or documented without existing, fails here with its name.
 */
describe('the documentation agrees with the code', () => {
  it('lists the schema properties in the guide, the man page and the reference config, and none other', () => {
    assert.ok(schemaNames.length > 30, 'the schema was read');
    assert.deepEqual(guideProperties(), schemaNames, `${GUIDE} (the tables under ## Properties)`);
    assert.deepEqual(manPageProperties(), schemaNames, `${MAN_PAGE} (.SH PROPERTIES)`);
    assert.deepEqual(referenceProperties(), schemaNames, REFERENCE);
  });

  it('gives each property its default where the schema has one', () => {
    const rows = new Map([...read(GUIDE).matchAll(/^\| `([a-z0-9.]+)` \| ([^|]*) \|/gm)].map((m) => [m[1]!, m[2]!.trim()]));
    for (const p of SCHEMA) {
      if (p.default === undefined || p.default === '') continue;
      assert.equal(rows.get(p.name), `\`${p.default}\``, `${GUIDE}: the default of ${p.name}`);
    }
  });

  it('documents every command-line option of --help in the guide and the man page, and none other', () => {
    assert.ok(usageOptions.includes('test-store-connection'), 'the usage was read');
    const guideOptions = sorted([...section(read(GUIDE), /^## Commands$/, GUIDE).matchAll(/^\| `--([a-z][a-z-]*)/gm)].map((m) => m[1]!));
    assert.deepEqual(guideOptions, usageOptions, `${GUIDE} (the table under ## Commands)`);
    const man = read(MAN_PAGE);
    const manOptions = sorted(
      [...section(man, /^\.SH OPTIONS$/, MAN_PAGE).matchAll(/^\.BI? \\-\\-([a-z](?:[a-z]|\\-)*)/gm)].map((m) => m[1]!.replaceAll('\\-', '-')),
    );
    assert.deepEqual(manOptions, usageOptions, `${MAN_PAGE} (.SH OPTIONS)`);
    const synopsis = sorted([...section(man, /^\.SH SYNOPSIS$/, MAN_PAGE).matchAll(/\\fB\\-\\-((?:[a-z]|\\-)+)/g)].map((m) => m[1]!.replaceAll('\\-', '-')));
    assert.deepEqual(synopsis, usageOptions, `${MAN_PAGE} (.SH SYNOPSIS)`);
  });

  it('links the guide from the README, and nothing outside the repository', () => {
    const readme = read('README.md');
    assert.match(readme, /\]\(docs\/operator-guide\.md\)/);
    const outside = [...readme.matchAll(/\]\((\.\.\/[^)]*)\)/g)].map((m) => m[1]);
    assert.deepEqual(outside, [], 'README links to files outside the repository');
    for (const [file, text] of [
      [GUIDE, read(GUIDE)],
      ['docs/security.md', read('docs/security.md')],
    ] as const) {
      for (const [, target] of text.matchAll(/\]\(([^)#:]+)(?:#[^)]*)?\)/g)) {
        assert.doesNotThrow(() => readFileSync(resolve(ROOT, 'docs', target!)), `${file} links to ${target}, which does not exist`);
      }
    }
  });
});
