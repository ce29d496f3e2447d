#!/usr/bin/env bash
# Set up, then run the whole test suite: fast tests against a loopback lore,
# real b4 and real git, and one real end-to-end run (kernel build + boot).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m pytest -v -rs tests "$@"
