#!/usr/bin/env bash
# Install the offline deploy-validation tools that do not come from PyPI: Debian's `prometheus` package
# (promtool checks deploy/prometheus/*, and the prometheus binary scrapes a real server in
# tests/deploy/test_prometheus_live.py). kubectl (kustomize), hadolint, kubernetes-validate and the Compose
# schema (check-jsonschema) are PyPI packages in pyproject's `dev` extra.
# Idempotent: does nothing when both binaries are on PATH. Needs root (or sudo) and apt.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "promtool/prometheus missing and apt-get unavailable: install Prometheus 2.x (promtool on PATH)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# Only the binaries are wanted, not a running daemon: where no policy-rc.d forbids it, the package would
# start a Prometheus service on :9090. Forbid it for the length of this install.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod +x "$POLICY"
  trap '$SUDO rm -f "$POLICY"' EXIT
fi
# apt's lock may be held by another apt run for a while: wait for it instead of failing.
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
# --no-install-recommends: skips prometheus-node-exporter, another daemon
$SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus >/dev/null
promtool --version | head -n 1
