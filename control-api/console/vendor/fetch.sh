#!/usr/bin/env bash
# Re-creates the vendored browser players in this directory from pinned npm tarballs.
# Each tarball's SHA-256 is checked before anything is extracted. Needs npm, tar, sha256sum.
# Usage: control-api/console/vendor/fetch.sh   (from any directory; network access to the npm registry)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

ASCIINEMA_VERSION=3.18.0
ASCIINEMA_TGZ=asciinema-player-3.18.0.tgz
ASCIINEMA_SHA256=18d9703510fae9209da9e26ce3d13c59f083b4abcff003a3bba958e03918a862
# solid-js: the UI runtime bundled inside asciinema-player (its dependency `^1.9.18`); only
# its licence text is taken.
SOLID_VERSION=1.9.18
SOLID_TGZ=solid-js-1.9.18.tgz
SOLID_SHA256=4c93cb8259aa05ea9812ae14aa5b22ce31eb8d886bd94034f28eedd0122127fc
NOVNC_VERSION=1.7.0
NOVNC_TGZ=novnc-novnc-1.7.0.tgz
NOVNC_SHA256=32689f18d6abe96bc6530828a6bd0b9ae33bda07c083a6575ed255b5a8f2e903

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Fetches name@version as a tarball into $tmp, checks its SHA-256, extracts it to $tmp/$3.
fetch() {
  local spec=$1 tgz=$2 dir=$3 sha=$4
  (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
  [ -f "$tmp/$tgz" ] || { echo "fetch.sh: npm pack $spec did not produce $tgz" >&2; exit 1; }
  echo "$sha  $tmp/$tgz" | sha256sum --check --quiet - \
    || { echo "fetch.sh: SHA-256 mismatch for $tgz" >&2; exit 1; }
  mkdir -p "$tmp/$dir"
  tar -xzf "$tmp/$tgz" -C "$tmp/$dir" --no-same-owner
}

fetch "asciinema-player@$ASCIINEMA_VERSION" "$ASCIINEMA_TGZ" asciinema "$ASCIINEMA_SHA256"
fetch "@novnc/novnc@$NOVNC_VERSION" "$NOVNC_TGZ" novnc "$NOVNC_SHA256"
fetch "solid-js@$SOLID_VERSION" "$SOLID_TGZ" solid "$SOLID_SHA256"

# asciinema-player: the self-contained IIFE bundle (global AsciinemaPlayer), its CSS, its licence.
a="$tmp/asciinema/package"
rm -rf "$here/asciinema-player"
mkdir -p "$here/asciinema-player"
cp "$a/dist/bundle/asciinema-player.min.js" "$a/dist/bundle/asciinema-player.css" "$a/LICENSE" \
  "$here/asciinema-player/"
cp "$tmp/solid/package/LICENSE" "$here/asciinema-player/LICENSE.solid-js"

# noVNC: the ES-module core/ tree plus the pako modules it imports, relative paths kept, so
# `import RFB from './novnc/core/rfb.js'` works; and the licence texts that apply to those files.
n="$tmp/novnc/package"
rm -rf "$here/novnc"
mkdir -p "$here/novnc/vendor/pako" "$here/novnc/docs"
cp -R "$n/core" "$here/novnc/"
cp -R "$n/vendor/pako/lib" "$here/novnc/vendor/pako/"
# Part of pako's zlib directory but imported by nothing in core/.
rm -f "$here/novnc/vendor/pako/lib/zlib/constants.js" "$here/novnc/vendor/pako/lib/zlib/gzheader.js"
cp "$n/LICENSE.txt" "$n/AUTHORS" "$here/novnc/"
cp "$n/docs/LICENSE.MPL-2.0" "$here/novnc/docs/"
cp "$n/vendor/pako/LICENSE" "$here/novnc/vendor/pako/"

chmod -R u=rwX,go=rX "$here/asciinema-player" "$here/novnc"
echo "vendored asciinema-player $ASCIINEMA_VERSION and @novnc/novnc $NOVNC_VERSION into $here"
