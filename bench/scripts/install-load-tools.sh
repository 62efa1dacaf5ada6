#!/usr/bin/env bash
# Installs what `rtpm latency --load stress-ng` and `--compare-cyclictest` run:
# stress-ng (load on the general cores) and rt-tests (cyclictest). Debian/Ubuntu, as root.
set -euo pipefail
need=()
command -v stress-ng >/dev/null 2>&1 || need+=(stress-ng)
command -v cyclictest >/dev/null 2>&1 || need+=(rt-tests)
if [ ${#need[@]} -eq 0 ]; then
  echo "install-load-tools: stress-ng and cyclictest are installed"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-load-tools: need ${need[*]}, and installing them needs root and apt-get" >&2
  exit 1
fi
echo "install-load-tools: installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
command -v stress-ng && command -v cyclictest
