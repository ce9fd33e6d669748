#!/usr/bin/env bash
# Install what the tests need, then run the default test suite (slow tests are opt-in: add `-m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
python3 -m pytest -q -p no:cacheprovider "$@"
