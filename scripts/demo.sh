#!/usr/bin/env bash
# The demo: set up, then test RFC v3 ported to Debian's linux-source 7.2.13
# (patches/) against the unpatched 7.2.13. First run: about 15 minutes on
# 2 cores (it imports the tree and builds two kernels); later runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# --config base: the quick demo; without it orch builds the whole default
# matrix (kconfigs/matrix: base and debug), about twice as long.
exec .venv/bin/orch test --offline-mode --mbox patches/blk-dontcache-v3-port-7.2.13.mbox --config base "$@"
