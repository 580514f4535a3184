#!/usr/bin/env bash
# The Debian 12 libraries deltatrain builds with, as a folder that travels to a machine without them
# (a GPU machine with its own CUDA LibTorch, where nothing can be installed):
#   scripts/bundle.sh download   fetch the packages' .deb files into .bundle/debs (~27 MB: what travels)
#   scripts/bundle.sh unpack     unpack them into .bundle/root without installing (dpkg -x, or ar + tar
#                                where dpkg is missing) and drop what no build reads (docs, unused
#                                static libraries)
# then configure with -DDT_BUNDLE=$PWD/.bundle/root: every library is found there first, and the
# binaries find its shared libraries through their RPATH. LibTorch is not bundled: each machine
# builds against its own (Debian's here, the CUDA one there).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.bundle

# The -dev packages of scripts/deps.sh's libraries and the runtime libraries they link to (Debian 12
# names; the runtime zlib, libc and C++ libraries are on every machine).
packages=(
  nlohmann-json3-dev libcli11-dev
  libtomlplusplus-dev libtomlplusplus3
  libpcre2-dev libpcre2-8-0
  libicu-dev libicu72
  libpng-dev libpng16-16
  libjpeg-dev libjpeg62-turbo-dev libjpeg62-turbo
  libwebp-dev libwebp7 libwebpdemux2 libwebpmux3
  libexif-dev libexif12
  libfreetype-dev libfreetype6 libbrotli1 fonts-dejavu-core
  zlib1g-dev
  libgloo-dev
  libgtest-dev libgmock-dev
  libbenchmark-dev libbenchmark1debian
)

case "${1:-}" in
  download)
    # Every library package deps.sh installs must travel too.
    for p in $(sed -n '/^packages=(/,/^)/p' scripts/deps.sh | tr ' ' '\n' | grep -E -- '-dev$' | grep -v '^libtorch-dev$' | grep -v '^libclang'); do
      [[ " ${packages[*]} " == *" $p "* ]] || { echo "scripts/bundle.sh: $p (scripts/deps.sh) is not in the bundle's list" >&2; exit 1; }
    done
    rm -rf "$dir/debs.tmp" && mkdir -p "$dir/debs.tmp"
    (cd "$dir/debs.tmp" && apt-get download "${packages[@]}" >/dev/null)
    rm -rf "$dir/debs" && mv "$dir/debs.tmp" "$dir/debs"
    du -sh "$dir/debs"
    ;;
  unpack)
    [ -d "$dir/debs" ] || { echo "scripts/bundle.sh: no $dir/debs (run: scripts/bundle.sh download)" >&2; exit 1; }
    rm -rf "$dir/root.tmp" && mkdir -p "$dir/root.tmp"
    for deb in "$dir"/debs/*.deb; do
      if command -v dpkg >/dev/null; then
        dpkg -x "$deb" "$dir/root.tmp"
      else
        work=$(mktemp -d)
        (cd "$work" && ar x "$(realpath "$OLDPWD/$deb")" && tar -xf data.tar.* -C "$(realpath "$OLDPWD/$dir/root.tmp")")
        rm -rf "$work"
      fi
    done
    lib="$dir/root.tmp/usr/lib/$(gcc -dumpmachine)"
    rm -rf "$dir/root.tmp/usr/share/doc" "$dir/root.tmp/usr/share/man" "$dir/root.tmp/usr/share/lintian"
    # Shared libraries are linked; static ones only where a package ships no other (GoogleTest's).
    find "$lib" -name '*.a' ! -name 'libgtest*.a' ! -name 'libgmock*.a' ! -name 'libbenchmark_main.a' -delete
    rm -rf "$dir/root" && mv "$dir/root.tmp" "$dir/root"
    du -sh "$dir/root"
    ;;
  *)
    echo "usage: scripts/bundle.sh download | unpack" >&2
    exit 2
    ;;
esac
