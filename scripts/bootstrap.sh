#!/usr/bin/env bash
# Installs what the release gate and its tests need on a fresh Debian 12 machine:
# the real services from Debian's packages and a virtualenv with the Python packages.
# Idempotent: each part is skipped when it is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian package -> a file it installs; only the missing ones are installed.
declare -A wanted=(
  [postgresql-15]=/usr/lib/postgresql/15/bin/postgres
  [pgbouncer]=/usr/sbin/pgbouncer
  [prometheus]=/usr/bin/prometheus
  [prometheus-alertmanager]=/usr/bin/prometheus-alertmanager
  [prometheus-postgres-exporter]=/usr/bin/prometheus-postgres-exporter
  [chromium]=/usr/bin/chromium
  [chrony]=/usr/sbin/chronyd
  [faketime]=/usr/bin/faketime
  [make]=/usr/bin/make
)
missing=()
for pkg in "${!wanted[@]}"; do
  [ -e "${wanted[$pkg]}" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The venv is rebuilt only when pyproject.toml changed since the last install.
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing Python packages into .venv/"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[suites,dev]'
  touch "$stamp"
fi
