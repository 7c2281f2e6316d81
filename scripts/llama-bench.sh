#!/usr/bin/env bash
# Builds llama.cpp's own `llama-bench` from the llama.cpp tree vendored in the PyPI
# source package of llama-cpp-python, and runs it on the local model's GGUF, so the
# engine's in-process figures (benches/llm.rs, `local_model` group) can be set next to
# llama.cpp's own on the same file and thread counts.
#
#   scripts/llama-bench.sh [THREADS...]      default threads: 1 2
#
# The build is cached under ~/.cache/brainops/llama-bench (first run ~6 min on 2 cores).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="0.3.36"
cache="${BRAINOPS_CACHE:-$HOME/.cache/brainops}/llama-bench"
bin="$cache/build/bin/llama-bench"
threads=("${@:-1 2}")

if [[ ! -x "$bin" ]]; then
  command -v cmake >/dev/null || { apt-get update -qq && apt-get install -y -qq cmake g++; }
  mkdir -p "$cache"
  if [[ ! -d "$cache/src" ]]; then
    pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$cache/dl"
    tar xzf "$cache/dl/llama_cpp_python-$version.tar.gz" -C "$cache"
    mv "$cache/llama_cpp_python-$version/vendor/llama.cpp" "$cache/src"
    rm -rf "$cache/llama_cpp_python-$version" "$cache/dl"
  fi
  cmake -S "$cache/src" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  cmake --build "$cache/build" --target llama-bench -j"$(nproc)" >/dev/null
fi

model="$(eval "$("$here/local-model.sh")"; echo "$BRAINOPS_LOCAL_MODEL")"
t_list="$(echo ${threads[*]} | tr ' ' ',')"
# pp64/tg64 match the prompt and output sizes the engine's bench uses.
"$bin" -m "$model" -t "$t_list" -p 64 -n 64 -r 5 -o md
