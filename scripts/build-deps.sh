#!/usr/bin/env bash
# What building Sluice needs besides a Rust toolchain: the LLM engine vendors llama.cpp, which
# `llama-cpp-sys-2` builds with cmake and binds with bindgen (libclang). Installs them with
# apt-get when they are missing and this runs as root; otherwise says what to install.
set -euo pipefail
missing=()
command -v cmake >/dev/null || missing+=(cmake)
# bindgen loads libclang.so or libclang-N.so (package libclang1-N); libclang-cpp.so, which other
# packages bring, does not count.
ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* >/dev/null 2>&1 \
  || [ -n "${LIBCLANG_PATH:-}" ] || missing+=(libclang-dev)
command -v c++ >/dev/null || missing+=(g++)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} (to build llama.cpp)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "error: building Sluice needs ${missing[*]}: sudo apt-get install ${missing[*]} (or your system's packages)" >&2
  exit 1
fi
