#!/usr/bin/env bash
# Installs every Debian 12 package deltatrain builds, tests and benchmarks with, and makes OpenBLAS
# the system BLAS. Idempotent; run as root (or with sudo available).
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config clang libclang-rt-14-dev
  libtorch-dev libgloo-dev libopenblas0-pthread
  nlohmann-json3-dev libtomlplusplus-dev libcli11-dev libpcre2-dev
  libicu-dev
  libpng-dev libjpeg-dev libwebp-dev libexif-dev libfreetype-dev fonts-dejavu-core
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-numpy python3-protobuf python3-torch protobuf-compiler nodejs
)
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Debian's npm package; a nodejs built elsewhere (e.g. NodeSource's) ships its own npm instead.
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# LibTorch calls BLAS through the libblas.so.3 / liblapack.so.3 alternatives; the reference BLAS
# (pulled in by libtorch-dev) is about 40x slower than OpenBLAS on an fp32 matmul.
arch=$(gcc -dumpmachine)
for lib in libblas.so.3 liblapack.so.3; do
  openblas=/usr/lib/$arch/openblas-pthread/$lib
  current=$(update-alternatives --query "$lib-$arch" 2>/dev/null | awk '/^Value:/ { print $2 }')
  if [ -e "$openblas" ] && [ "$current" != "$openblas" ]; then
    echo "using OpenBLAS for $lib"
    $SUDO update-alternatives --set "$lib-$arch" "$openblas" >/dev/null
  fi
done
bash "$(dirname "$0")/npm_deps.sh"
