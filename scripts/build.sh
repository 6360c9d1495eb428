#!/usr/bin/env bash
# Configure and build one flavour into build/ (default), build-asan/ or build-tsan/.
# Usage: scripts/build.sh [release|asan|tsan] [ninja targets...]
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
shift || true
case "$flavour" in
  release) dir=build; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  asan) dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=Debug -DMXRELAY_SANITIZE=address -DMXRELAY_BENCHMARKS=OFF) ;;
  tsan) dir=build-tsan; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DMXRELAY_SANITIZE=thread -DMXRELAY_BENCHMARKS=OFF) ;;
  *) echo "usage: $0 [release|asan|tsan] [targets...]" >&2; exit 2 ;;
esac
if [ ! -f "$dir/build.ninja" ]; then
  # ccache (optional, not installed by install-deps.sh) makes rebuilds in
  # several checkouts of the tree cheap; CI builds without it.
  if command -v ccache >/dev/null 2>&1; then
    flags+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  fi
  cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
fi
jobs=$(nproc)
ninja -C "$dir" -j"$jobs" "$@"
