#!/usr/bin/env bash
# Checks the machine for what `make` cannot install into the project folder, and installs the
# missing Debian packages when run as root. Usage: tools/ensure-system.sh [--browser]
# --browser adds what only the tests need: chromium (the page's browser tests) and nginx (the tests of
# `python -m dashboard.cluster`, which puts nginx in front of several dashboards).
set -euo pipefail

need_apt=()
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || {
  echo "Python 3.10 or newer is needed (found: $(python3 -V 2>&1))." >&2; exit 1; }
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ -z "${KAFKA_HOME:-}" ]; then
  command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || [ -f broker/.work/libs/.pom-sha256 ] || need_apt+=(maven)
fi
command -v npm >/dev/null || need_apt+=(npm)
if [ "${1:-}" = "--browser" ]; then
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
  # /usr/sbin is not on every user's PATH, so look for Debian's binary by its path.
  [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need_apt+=(nginx)
fi

[ ${#need_apt[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing system packages: ${need_apt[*]}. Install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${need_apt[*]}" >&2
  echo "then run make again." >&2
  exit 1
fi
echo "Installing system packages: ${need_apt[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
