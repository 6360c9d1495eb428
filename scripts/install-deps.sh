#!/usr/bin/env bash
# Installs every build and test dependency from Debian 12 packages.
# Idempotent: re-running it installs nothing new. Needs root (or sudo).
set -euo pipefail

PKGS=(
  # build
  build-essential cmake ninja-build pkg-config git
  # libraries
  liburing-dev libssl-dev libabsl-dev librocksdb-dev libc-ares-dev
  libcurl4-openssl-dev  # MTA-STS policy fetch over HTTPS (delivery/sts_fetch.cc)
  libtomlplusplus-dev libcrypt-dev libspdlog-dev libfmt-dev libcli11-dev
  prometheus-cpp-dev libcivetweb-dev libcap-dev libgtest-dev libgmock-dev libbenchmark-dev
  # RE2: linear-time regexes on remote reply text (delivery/automation.h, delivery/classify.h)
  libre2-dev
  # DKIM: OpenDKIM's library for the differential unit test (dkim/opendkim_diff_test.cc)
  libopendkim-dev
  # HTTP injection API (api/): JSON (header-only); MIME: GMime builds messages
  # (api/) and parses complaint reports (feedback/); webhooks: libcurl multi
  nlohmann-json3-dev libgmime-3.0-dev libcurl4-openssl-dev
  # sanitizers / fuzzing
  clang libclang-rt-14-dev
  # test peers and tools (each named by the test that needs it; on a bare
  # Debian 12 these are what the suite would otherwise skip or fail on)
  python3 openssl swaks libnet-ssleay-perl libio-socket-ssl-perl libauthen-sasl-perl postfix sasl2-bin dnsmasq-base whois prometheus procps iproute2 strace rocksdb-tools
  python3-dkim opendkim-tools  # test_dkim: independent DKIM verifiers (dkimpy, opendkim-testmsg)
  python3-jsonschema  # test_mta_sts: TLS-RPT reports validated against the RFC 8460 schema
  python3-yaml   # test_deploy: compose, Kubernetes, Grafana provisioning, alert YAML
  systemd        # test_deploy: systemd-analyze verify / syscall-filter of deploy/systemd
  util-linux mount  # test_privileges: setpriv; test_faults: mount/umount of a tmpfs
  stress-ng      # scripts/stress-integration.sh: background load for flake hunting
  haproxy        # test_proxy_protocol: a real HAProxy sending PROXY v2 (send-proxy-v2) in front
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# postfix asks questions on install; answer "No configuration" so it does not
# start a system MTA (our tests run private instances of its tools only).
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The prometheus package starts a system service; tests run their own on loopback.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  $SUDO systemctl disable --now haproxy >/dev/null 2>&1 || true  # tests run their own
fi
echo "install-deps: done"
