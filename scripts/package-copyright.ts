/**
 * Writes the package's DEP-5 copyright file (https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/):
 * debian/copyright with one Files paragraph per npm package bundled under node_modules, and the
 * Node.js runtime's own LICENSE as the text of the `Node.js` license.
 *
 * Fails when a bundled package declares a license that debian/copyright has no License paragraph
 * for, so that a new dependency cannot ship under an unlisted license.
 *
 * Usage: node build/scripts/package-copyright.js <debian/copyright> <node_modules dir> <Node.js LICENSE> <output>
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const MARKER = '@BUNDLED_NPM_PACKAGES@';
/** SPDX identifiers that the Debian copyright format spells differently (section 7.2). */
const DEP5_NAMES: Readonly<Record<string, string>> = { MIT: 'Expat', 'GPL-2.0': 'GPL-2', 'GPL-2.0-only': 'GPL-2' };

interface BundledPackage {
  readonly dir: string;
  readonly name: string;
  readonly version: string;
  readonly license: string;
  readonly copyright: readonly string[];
}

function main(argv: readonly string[]): void {
  const [template, nodeModules, nodeLicense, output] = argv;
  if (template === undefined || nodeModules === undefined || nodeLicense === undefined || output === undefined) {
    throw new TypeError('usage: package-copyright <debian/copyright> <node_modules dir> <Node.js LICENSE> <output>');
  }
  const head = readFileSync(template, 'utf8');
  if (!head.includes(MARKER)) throw new Error(`${template} has no ${MARKER} line`);
  const known = new Set([...head.matchAll(/^License: (\S+)\n /gm)].map((m) => m[1]!));
  const packages = findPackages(nodeModules);
  // The Files patterns are relative to the installed root; nested packages come after their parent,
  // so that the later, more specific paragraph applies (copyright format, "Files" field).
  const base = 'usr/lib/flowcrypt-ekm/node_modules';
  const paragraphs = packages.map((p) => {
    const license = dep5License(p, known);
    return [
      `Files: ${base}/${relative(nodeModules, p.dir)}/*`,
      `Copyright: ${p.copyright.join('\n ')}`,
      `License: ${license}`,
      `Comment: npm package ${p.name} ${p.version}`,
    ].join('\n');
  });
  const nodeText = readFileSync(nodeLicense, 'utf8')
    .split('\n')
    .map((line) => (line.trim() === '' ? ' .' : ` ${line.replace(/\s+$/, '')}`))
    .join('\n')
    .replace(/(\n \.)+$/, '');
  const text = `${head.replace(MARKER, paragraphs.join('\n\n')).trimEnd()}\n\nLicense: Node.js\n${nodeText}\n`;
  writeFileSync(output, text);
}

function findPackages(nodeModules: string): BundledPackage[] {
  const found: BundledPackage[] = [];
  const visit = (dir: string) => {
    for (const entry of readdirSync(dir).sort()) {
      if (entry.startsWith('.')) continue;
      const path = join(dir, entry);
      if (entry.startsWith('@')) {
        visit(path);
        continue;
      }
      const manifest = join(path, 'package.json');
      if (!existsSync(manifest)) continue;
      const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string; version?: string; license?: unknown; author?: unknown };
      found.push({
        dir: path,
        name: pkg.name ?? entry,
        version: pkg.version ?? '',
        license: typeof pkg.license === 'string' ? pkg.license : '',
        copyright: copyrightHolders(path, pkg.name ?? entry, pkg.author),
      });
      if (existsSync(join(path, 'node_modules'))) visit(join(path, 'node_modules'));
    }
  };
  visit(nodeModules);
  return found.sort((a, b) => (a.dir < b.dir ? -1 : a.dir > b.dir ? 1 : 0));
}

/** The "Copyright ..." lines of the package's license file, else its author, else a generic holder. */
function copyrightHolders(dir: string, name: string, author: unknown): string[] {
  const licenseFile = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
  if (licenseFile !== undefined) {
    const lines = readFileSync(join(dir, licenseFile), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => /^(copyright|\(c\)|©)\s*(\(c\)|©)?\s*\d/i.test(l) || /^copyright (\(c\)|©)/i.test(l));
    const unique = [...new Set(lines)].slice(0, 5);
    if (unique.length > 0) return unique;
  }
  const authorName = typeof author === 'string' ? author : (author as { name?: string } | undefined)?.name;
  return [authorName !== undefined && authorName.trim() !== '' ? authorName.trim() : `the authors of ${name}`];
}

/** The package's SPDX expression in the copyright format's syntax, checked against the known paragraphs. */
function dep5License(p: BundledPackage, known: ReadonlySet<string>): string {
  const expression = p.license.replace(/^\((.*)\)$/, '$1');
  const parts = expression.split(/\s+(OR|AND)\s+/);
  const out = parts.map((part, i) => {
    if (i % 2 === 1) return part.toLowerCase();
    const name = DEP5_NAMES[part] ?? part;
    if (!known.has(name)) {
      throw new Error(
        `${p.name}@${p.version} (${p.dir}) is licensed '${p.license}', and debian/copyright has no 'License: ${name}' paragraph. ` +
          'Add one (check the license allows shipping it), then build again.',
      );
    }
    return name;
  });
  return out.join(' ');
}

main(process.argv.slice(2));
