#!/usr/bin/env bash
# One-time machine setup, idempotent and quiet:
#   1. the Debian packages the monitoring stack and its tests use: Prometheus (with promtool), the
#      Pushgateway, Alertmanager (with amtool) and Chromium (headless browser checks of the drift reports). Skipped when
#      already installed; `apt-get update` runs once, and only when something is missing.
#   2. uv, then the locked environment (bytecode compiled for fast imports).
set -euo pipefail
cd "$(dirname "$0")/.."

# package:command pairs: a package counts as installed when its command is on PATH
APT_PACKAGES=(prometheus:promtool prometheus-pushgateway:prometheus-pushgateway
  prometheus-alertmanager:prometheus-alertmanager chromium:chromium
  fonts-liberation:)

missing=()
for entry in "${APT_PACKAGES[@]}"; do
  package="${entry%%:*}" command="${entry#*:}"
  if [[ -n "$command" ]] && command -v "$command" >/dev/null 2>&1; then
    continue
  fi
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if ((${#missing[@]})); then
  as_root=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      as_root=(sudo)
    else
      echo "setup.sh: need root (or sudo) to install: ${missing[*]}" >&2
      exit 1
    fi
  fi
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  # The packages' services are not started: the tests and the stack start their own processes
  # on their own ports and storage (policy-rc.d 101 = "action forbidden", for this install only).
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
    "${as_root[@]}" chmod +x "$policy"
    trap '"${as_root[@]}" rm -f "$policy"' EXIT
  fi
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

export PATH="$HOME/.local/bin:$PATH"
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
fi
uv sync --frozen --quiet
# The feature engine is compiled by numba on first use and cached beside its module: compile it
# once here, so no test or service pays the 12-16 s.
uv run --frozen python -c "from tasks.core.features import compile_engine; compile_engine()"
