#!/usr/bin/env bash
# Install the Debian packages whose commands are missing from PATH; nothing else comes from apt.
#   scripts/install-system-packages.sh PACKAGE=COMMAND[,COMMAND...] ...
# The Makefile runs it for espeak-ng (speaks the tridigits demo audio) and prometheus (promtool and a real
# Prometheus for tests/deploy); the Dockerfile's build stage runs the same espeak-ng line, so a dev box and
# the image install alike. Idempotent. Needs apt and root (or sudo) only when something is missing.
set -euo pipefail

missing=()
for spec in "$@"; do
  package=${spec%%=*}
  IFS=, read -r -a commands <<<"${spec#*=}"
  for command in "${commands[@]}"; do
    if ! command -v "$command" >/dev/null 2>&1; then
      missing+=("$package")
      break
    fi
  done
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${missing[*]}, and apt-get is unavailable: install them with your package manager" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# Only the binaries are wanted, never a daemon: where no policy-rc.d forbids it, the prometheus package
# would start a service on :9090. Forbid service starts for the length of this install.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod +x "$POLICY"
  trap '$SUDO rm -f "$POLICY"' EXIT
fi
# apt's lock may be held by another apt run for a while: wait for it instead of failing.
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
# --no-install-recommends: prometheus would pull in prometheus-node-exporter, another daemon
$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
