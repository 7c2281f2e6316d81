#!/usr/bin/env bash
# Builds llama.cpp's own OpenAI-compatible `llama-server` (from the llama.cpp tree that
# llama-cpp-python 0.3.36 vendors), so the `openai-compat:` adapter is tested against a
# real server that no one here wrote.
#
#   eval "$(scripts/llama-server.sh)"    # prints BRAINOPS_LLAMA_SERVER=<path to the binary>
#
# The build is cached under ~/.cache/brainops/llama-server (first run ~8 min on 2 cores);
# re-running prints the path at once.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${BRAINOPS_CACHE:-$HOME/.cache/brainops}/llama-server"
bin="$cache/build/bin/llama-server"

if [[ ! -x "$bin" ]]; then
  command -v cmake >/dev/null || { apt-get update -qq >&2 && apt-get install -y -qq cmake g++ >&2; }
  # The llama.cpp tree vendored in llama-cpp-python's source package (the crate's copy
  # leaves the server's sources out); the same version scripts/llama-bench.sh builds.
  version="0.3.36"
  src="$cache/src"
  if [[ ! -f "$src/tools/server/server.cpp" ]]; then
    rm -rf "$cache/dl" "$src"
    mkdir -p "$cache/dl"
    pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$cache/dl" >&2
    tar xzf "$cache/dl/llama_cpp_python-$version.tar.gz" -C "$cache/dl"
    mv "$cache/dl/llama_cpp_python-$version/vendor/llama.cpp" "$src"
    rm -rf "$cache/dl"
  fi
  mkdir -p "$cache"
  echo "building llama-server from $src (once)" >&2
  cmake -S "$src" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_OPENSSL=OFF >&2
  cmake --build "$cache/build" --target llama-server -j"$(nproc)" >&2
fi
echo "BRAINOPS_LLAMA_SERVER=$bin"
