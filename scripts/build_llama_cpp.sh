#!/usr/bin/env bash
# Builds llama.cpp's own speculative-decoding programs (llama-speculative-simple, llama-lookup)
# from the llama.cpp source that llama-cpp-python vendors, for `hsd bench --forward llamacpp`'s
# contenders (h) and (h'). Same version as the Python binding (requirements-llamacpp.txt).
# Output: build/llama.cpp/bin/ (ignored by git). About 5 minutes on 2 cores. Needs cmake, a C++
# compiler and the package index (for the source archive); nothing is installed system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="$(sed -n 's/^llama-cpp-python==//p' requirements-llamacpp.txt)"
OUT="build/llama.cpp"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
mkdir -p "$OUT/src"
if [ ! -f "$OUT/src/llama_cpp_python-$VERSION.tar.gz" ]; then
  "$PY" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$OUT/src" -q
fi
if [ ! -d "$OUT/src/llama_cpp_python-$VERSION" ]; then
  tar -xzf "$OUT/src/llama_cpp_python-$VERSION.tar.gz" -C "$OUT/src"
fi
SRC="$OUT/src/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$SRC" -B "$OUT/cmake" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF >/dev/null
cmake --build "$OUT/cmake" --config Release -j "$(nproc)" --target llama-speculative-simple llama-lookup
mkdir -p "$OUT/bin"
cp "$OUT/cmake/bin/llama-speculative-simple" "$OUT/cmake/bin/llama-lookup" "$OUT/bin/"
ls -l "$OUT/bin"
