#!/usr/bin/env bash
# The one command that runs the relay on a fresh Debian 12 machine:
# installs dependencies, builds, and starts mxrelay with its embedded default
# configuration (or pass -c FILE). State goes to ./mxrelay-data.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh release mxrelay
exec ./build/main/mxrelay run "$@"
