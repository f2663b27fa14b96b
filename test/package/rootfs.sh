#!/usr/bin/env bash
# Prints the path of a cached tarball of a minimal, bootable Debian 12 root file system, building it
# with debootstrap when it is missing. The package test boots a throwaway copy of it with
# systemd-nspawn. The cache lives outside the repository and is reused between runs: building it
# takes one to two minutes, extracting it a few seconds.
#
# The mirror is the one this machine's own apt sources use for bookworm, so the test downloads from
# wherever the machine is allowed to.
#
# Environment: EKM_TEST_CACHE_DIR (default /var/cache/flowcrypt-ekm-test).
set -euo pipefail

suite=bookworm
# What a stock Debian 12 server has that minbase lacks and the package or the test relies on:
# systemd as PID 1, a system bus for systemctl, curl for the HTTP probes, and adduser, which the
# package depends on (every stock Debian/Ubuntu install has it; including it here keeps `apt install
# ./ekm.deb` offline), and man-db, which `systemd-analyze verify` uses to check the unit's
# Documentation= man page.
include=systemd,systemd-sysv,dbus,curl,ca-certificates,adduser,man-db
cache_dir=${EKM_TEST_CACHE_DIR:-/var/cache/flowcrypt-ekm-test}
arch=$(dpkg --print-architecture)
# The name carries the inputs, so changing the include list builds a new cache instead of reusing a
# stale one.
tarball="$cache_dir/$suite-$arch-minbase-$(printf %s "$include" | sha256sum | cut -c1-12).tar"

# The first URI of this machine's apt sources that serves $suite (deb822 .sources or one-line .list).
find_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    awk -v suite="$suite" '
      function flush() { if (uri != "" && deb && has_suite) { print uri; found = 1; exit } uri = ""; deb = 0; has_suite = 0 }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]*#/ { next }
      tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) has_suite = 1 }
      END { if (!found) flush() }
    ' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    # deb [options] uri suite components...
    sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2 }'
  done
}

if [ ! -s "$tarball" ]; then
  mirror=$(find_mirror | head -n1)
  if [ -z "$mirror" ]; then
    echo "rootfs.sh: no apt source for $suite in /etc/apt/sources.list{,.d}; cannot debootstrap" >&2
    exit 1
  fi
  mkdir -p "$cache_dir"
  work=$(mktemp -d "$cache_dir/build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "rootfs.sh: debootstrap $suite ($include) from $mirror into $work (cached as $tarball)" >&2
  start=$SECONDS
  if ! debootstrap --variant=minbase --include="$include" "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    [ -f "$work/root/debootstrap/debootstrap.log" ] && tail -n 30 "$work/root/debootstrap/debootstrap.log" >&2
    exit 1
  fi
  # Caches the test does not need; a smaller tarball extracts faster.
  rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*_Packages
  tar -C "$work/root" --numeric-owner --xattrs -cf "$work/rootfs.tar" .
  mv "$work/rootfs.tar" "$tarball"
  # Caches of earlier include lists are never used again.
  find "$cache_dir" -maxdepth 1 -name "$suite-$arch-minbase-*.tar" ! -path "$tarball" -delete
  echo "rootfs.sh: built in $((SECONDS - start)) s" >&2
fi
echo "$tarball"
