#!/usr/bin/env bash
# Refreshes the third-party files the console serves (src/server/console/vendor/) from the
# npm registry, at pinned versions checked against the registry's integrity hashes. The
# results are committed: building or running the server never reaches the network.
#
#   scripts/console-vendor.sh            # then review `git diff src/server/console/vendor`
set -euo pipefail
cd "$(dirname "$0")/.."
DAGRE=3.1.4      # layered graph layout (MIT)
GRAPHLIB=4.0.8   # bundled into dagre.min.js (MIT)
OUT=src/server/console/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  # `npm pack` checks each tarball against the registry's sha512 integrity.
  npm pack --silent "@dagrejs/dagre@$DAGRE" "@dagrejs/graphlib@$GRAPHLIB" >/dev/null
  mkdir dagre graphlib
  tar xzf "dagrejs-dagre-$DAGRE.tgz" -C dagre
  tar xzf "dagrejs-graphlib-$GRAPHLIB.tgz" -C graphlib
)
cp "$work/dagre/package/dist/dagre.min.js" "$OUT/dagre.min.js"
{
  echo "Third-party code served by the BrainOps console (/ui/vendor/), fetched and checked by"
  echo "scripts/console-vendor.sh from the npm registry at the pinned versions below."
  echo
  echo "== @dagrejs/dagre $DAGRE (dagre.min.js) =="
  cat "$work/dagre/package/LICENSE"
  echo
  echo "== @dagrejs/graphlib $GRAPHLIB (bundled into dagre.min.js) =="
  cat "$work/graphlib/package/LICENSE"
} > "$OUT/LICENSES.txt"
echo "vendored: dagre $DAGRE, graphlib $GRAPHLIB into $OUT" >&2
