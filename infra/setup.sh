#!/usr/bin/env bash
# One-time machine setup: uv, then the locked environment (bytecode compiled for fast imports).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
fi
export PATH="$HOME/.local/bin:$PATH"
uv sync --frozen
