#!/usr/bin/env bash
# Installs every Debian 12 package deltatrain builds, tests and benchmarks with. Idempotent.
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config clang libclang-rt-14-dev
  libtorch-dev libopenblas0-pthread
  nlohmann-json3-dev libtomlplusplus-dev libcli11-dev libpcre2-dev
  libicu-dev
  libpng-dev libjpeg-dev libwebp-dev libexif-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-numpy python3-protobuf protobuf-compiler nodejs npm
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bash "$(dirname "$0")/npm_deps.sh"
