#!/usr/bin/env bash
# Builds the Debian package from a checkout: dist/flowcrypt-ekm_<version>_<arch>.deb, and
# dist/ekm.deb, the name operators type (apt install ./ekm.deb).
#
# The package carries the Node.js 24 that runs this script (stripped) and the production
# node_modules, so it installs on Debian 12 and Ubuntu 22.04/24.04, whose own Node.js is too old and
# whose ABI would not match our native addons (better-sqlite3, pkcs11js) anyway. `npm run package`
# runs it through scripts/node24.sh, which provides that Node.js on any machine and rebuilds addons
# that another Node.js built.
#
# Environment:
#   EKM_DEB_VERSION  package version to build instead of package.json's (tests build an upgrade
#                    with it; a changelog entry is added for it)
#   EKM_DEB_COMPRESSION  dpkg-deb compression, "xz" (default, smallest) or "gzip" (faster)
#   EKM_DEB_DIST     output folder instead of dist/
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

die() { echo "package: $*" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps dpkg-parsechangelog strip gzip; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install dpkg-dev binutils)"
done

node_bin=$(readlink -f "$(command -v node)")
node_major=$(node -p 'process.versions.node.split(".")[0]')
# package.json's engines; the addons in node_modules must be compiled for this Node.js.
[ "$node_major" = 24 ] ||
  die "the bundled runtime must be Node.js 24 (package.json engines), not $(node --version): run npm run package (it goes through scripts/node24.sh)"

upstream_version=$(node -p 'require("./package.json").version')
changelog_version=$(sed -n '1s/^flowcrypt-ekm (\([^)]*\)).*/\1/p' debian/changelog)
[ "$changelog_version" = "$upstream_version" ] ||
  die "debian/changelog's latest entry is $changelog_version but package.json says $upstream_version: add a changelog entry"
version=${EKM_DEB_VERSION:-$upstream_version}
dpkg --validate-version "$version" || die "EKM_DEB_VERSION=$version is not a valid Debian version"
arch=$(dpkg --print-architecture)
compression=${EKM_DEB_COMPRESSION:-xz}

[ -d node_modules ] || npm ci --no-audit --no-fund
npm run --silent build

stage=$(mktemp -d "${TMPDIR:-/tmp}/flowcrypt-ekm-package.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
lib=$root/usr/lib/flowcrypt-ekm
doc=$root/usr/share/doc/flowcrypt-ekm
install -d "$lib/bin" "$lib/build" "$doc/examples" "$root/usr/bin" "$root/usr/share/man/man1" \
  "$root/usr/share/flowcrypt-ekm" "$root/usr/share/lintian/overrides" "$root/lib/systemd/system" \
  "$root/etc/default" "$root/DEBIAN"

# The program: compiled sources only (no tests, no source maps), and package.json, which marks the
# files as ES modules and carries the version --version prints.
cp -r build/src "$lib/build/src"
find "$lib/build" -name '*.map' -delete
# main.js is started by /usr/bin/flowcrypt-ekm and the unit with the bundled node, never through its
# "#!/usr/bin/env node" line, which would pick the system's Node.js if it had one. The line becomes a
# comment, so stack traces keep their line numbers.
sed -i '1s|^#!.*|// Run by /usr/bin/flowcrypt-ekm with /usr/lib/flowcrypt-ekm/bin/node.|' "$lib/build/src/main.js"
cp package.json "$lib/"

# Production dependencies: pruned from the installed tree (no network, and the native addons stay
# the ones built and tested here).
cp -a node_modules "$lib/node_modules"
cp package-lock.json "$lib/"
(cd "$lib" && npm prune --omit=dev --no-audit --no-fund --loglevel=error >/dev/null)
rm -f "$lib/package-lock.json"
rm -rf "$lib/node_modules/.bin" "$lib/node_modules/.package-lock.json"
# Dot files are the packages' own development settings (.eslintrc, .npmignore, .gitattributes...):
# never loaded at run time.
find "$lib/node_modules" -name '.*' -type f -delete
# Native addons: keep the loadable module, drop the compiler's intermediates and the bundled C
# sources (better-sqlite3 ships SQLite's amalgamation in deps/).
for addon in "$lib"/node_modules/better-sqlite3 "$lib"/node_modules/pkcs11js; do
  [ -d "$addon/build/Release" ] || die "$addon has no build/Release: were the native addons built (npm ci)?"
  find "$addon/build" -mindepth 1 -maxdepth 1 ! -name Release -exec rm -rf {} +
  find "$addon/build/Release" -mindepth 1 ! -name '*.node' -exec rm -rf {} +
  rm -f "$addon/build/Release/test_extension.node"
  rm -rf "$addon/deps" "$addon/src"
done
find "$lib/node_modules" -name '*.node' -exec strip --strip-unneeded {} +
strip --strip-unneeded -o "$lib/bin/node" "$node_bin"
# The bundled runtime loads the bundled addons (an addon built for another Node.js fails here, at
# build time, instead of at the first key request).
(cd "$lib" && "$lib/bin/node" -e '
  const { createRequire } = require("node:module");
  const load = createRequire(process.cwd() + "/");
  new (load("better-sqlite3"))(":memory:").close();
  load("pkcs11js");
') || die "the bundled Node.js cannot load the native addons in node_modules: rebuild them with it (scripts/node24.sh npm ci)"

# Everything readable by all, executable only where it is a program.
find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f -exec chmod 0644 {} +
chmod 0755 "$lib/bin/node"

install -m 0755 debian/flowcrypt-ekm.sh "$root/usr/bin/flowcrypt-ekm"
install -m 0644 systemd/flowcrypt-ekm.service "$root/lib/systemd/system/"
install -m 0644 debian/flowcrypt-ekm.default "$root/etc/default/flowcrypt-ekm"
node build/scripts/package-config.js etc/flowcrypt-email-key-manager.properties \
  "$root/usr/share/flowcrypt-ekm/flowcrypt-email-key-manager.properties"
install -m 0644 debian/flowcrypt-ekm.lintian-overrides "$root/usr/share/lintian/overrides/flowcrypt-ekm"
gzip -9n <debian/flowcrypt-ekm.1 >"$root/usr/share/man/man1/flowcrypt-ekm.1.gz"

# Documentation.
install -m 0644 debian/README.Debian "$doc/"
[ -f README.md ] && install -m 0644 README.md "$doc/"
# The operator guide: the man page and README.Debian point at it.
install -m 0644 docs/operator-guide.md docs/security.md "$doc/"
install -m 0644 etc/flowcrypt-email-key-manager.properties "$doc/examples/"
install -m 0644 etc/haproxy/flowcrypt-ekm.cfg "$doc/examples/haproxy-flowcrypt-ekm.cfg"
changelog=$stage/changelog
if [ "$version" != "$upstream_version" ]; then
  {
    printf 'flowcrypt-ekm (%s) stable; urgency=medium\n\n  * Built with EKM_DEB_VERSION=%s.\n\n -- %s  %s\n\n' \
      "$version" "$version" "$(sed -n 's/^Maintainer: //p' debian/control)" "$(date -R)"
    cat debian/changelog
  } >"$changelog"
else
  cp debian/changelog "$changelog"
fi
gzip -9n <"$changelog" >"$doc/changelog.gz"
node_license=
# The runtime's own LICENSE: next to it (official builds), or its Debian package's for /usr/bin/node.
node_prefix=$(dirname "$(dirname "$node_bin")")
candidates=("$node_prefix/LICENSE" "$node_prefix/share/doc/node/LICENSE")
[ "$node_bin" = /usr/bin/node ] && candidates+=(/usr/share/doc/nodejs/LICENSE)
for candidate in "${candidates[@]}"; do
  if [ -f "$candidate" ]; then node_license=$candidate; break; fi
done
[ -n "$node_license" ] || die "cannot find the LICENSE of $node_bin (looked for ${candidates[*]})"
node build/scripts/package-copyright.js debian/copyright "$lib/node_modules" "$node_license" "$doc/copyright"
find "$doc" -type f -exec chmod 0644 {} +

# Control files. Depends: what the ELF files link against, as dpkg-shlibdeps computes it from the
# symbol versions they use (only glibc, libstdc++ and libgcc).
shlibs_depends=$(
  cd "$stage" && mkdir -p debian && : >debian/control &&
    dpkg-shlibdeps -O -e"root/usr/lib/flowcrypt-ekm/bin/node" $(cd "$stage" && find root -name '*.node' -printf ' -e%p') 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p'
)
[ -n "$shlibs_depends" ] || die "dpkg-shlibdeps found no dependencies"
installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$installed_size/" \
  -e "s/@SHLIBS_DEPENDS@/$shlibs_depends/" debian/control >"$root/DEBIAN/control"
install -m 0644 debian/conffiles "$root/DEBIAN/conffiles"
install -m 0755 debian/postinst debian/prerm debian/postrm "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

dist=${EKM_DEB_DIST:-dist}
mkdir -p "$dist"
deb=$dist/flowcrypt-ekm_${version}_${arch}.deb
# SOURCE_DATE_EPOCH: the same inputs give the same package.
SOURCE_DATE_EPOCH=$(date -d "$(dpkg-parsechangelog -l "$changelog" -S Date)" +%s) \
  dpkg-deb --root-owner-group -Z"$compression" --build "$root" "$deb" >/dev/null
cp "$deb" "$dist/ekm.deb"
echo "package: $deb ($(du -h "$deb" | cut -f1), installed $((installed_size / 1024)) MiB) and $dist/ekm.deb"
