#!/usr/bin/env bash
# Build the Debian package from this tree (packaging/deb/README.md):
#   scripts/build-deb.sh      ->  build-deb/mxrelay_<version>-<release>_<arch>.deb
# The binary is compiled with Debian's hardening flags (dpkg-buildflags), its
# runtime dependencies are computed by dpkg-shlibdeps (CPack DEB generator).
# Environment: MXRELAY_DEB_RELEASE (Debian revision, default 1),
#              MXRELAY_DEB_BUILD_DIR (default build-deb).
# Installs the build dependencies it lacks (Debian 12 packages; root or sudo):
# only what the binary and the package need, not the test tools of
# scripts/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
release=${MXRELAY_DEB_RELEASE:-1}
dir=${MXRELAY_DEB_BUILD_DIR:-build-deb}

PKGS=(
  build-essential cmake ninja-build pkg-config git dpkg-dev file
  liburing-dev libssl-dev libabsl-dev librocksdb-dev libc-ares-dev
  libtomlplusplus-dev libcrypt-dev libspdlog-dev libfmt-dev libcli11-dev
  prometheus-cpp-dev libcivetweb-dev libcap-dev libgtest-dev libgmock-dev
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "build-deb: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# Compiler flags are read from the environment at the first configure only.
eval "$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --export=sh)"
export CFLAGS CXXFLAGS LDFLAGS
CXXFLAGS="$CPPFLAGS $CXXFLAGS"
CFLAGS="$CPPFLAGS $CFLAGS"
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMXRELAY_BENCHMARKS=OFF \
      -DCMAKE_INSTALL_PREFIX=/usr -DMXRELAY_DEB_RELEASE="$release" >/dev/null
ninja -C "$dir" -j"$(nproc)" mxrelay
rm -f "$dir"/mxrelay_*.deb
(cd "$dir" && cpack -G DEB >/dev/null)
ls "$dir"/mxrelay_*.deb
