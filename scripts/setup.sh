#!/usr/bin/env bash
# Set up orch on a Debian machine: the system packages it drives (QEMU,
# the kernel build tools, udev for virtme-ng's command channel), then a
# virtual environment in .venv with orch, b4, virtme-ng and pytest.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(qemu-system-x86 udev flex bison libelf-dev libssl-dev bc cpio ccache kmod
      gcc make git python3-venv e2fsprogs dosfstools util-linux xz-utils bubblewrap
      zstd lz4 lzop       # kimage: the banner inside a zstd/lz4/lzo-compressed bzImage
      rsync               # --kselftest: the selftests' lib.mk installs with rsync
      libnuma-dev libcap-dev liburing-dev   # --kselftest mm: -lnuma, -lcap (-luring if there)
      chromium systemd    # the tests: HTML reports in a real browser, systemd units verified
      redis-server        # the tests and bench: a shared ccache between two "runners"
      dpkg-dev gpg)       # the tests: a signed file:// apt repository (Debian version bumps)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm for the CI engine's install below, unless the machine has
# them already (a newer Node.js from elsewhere brings its own npm).
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true

# The CI engine tests/fanout/test_ci_engine.py runs orch's GitLab pipeline
# with: gitlab-ci-local, its whole dependency tree pinned by
# scripts/gitlab-ci-local/package-lock.json, in .tools/ (nothing global).
# It needs Node.js >= 20.19; where the machine's is older (Debian 12's is
# 18), a Node.js from the npm registry goes into .tools/node/, which the
# test puts first on its PATH.
node_new_enough() {
    node -e 'const [a, b] = process.versions.node.split(".").map(Number);
             process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' 2>/dev/null
}
PATH="$PWD/.tools/node/node_modules/.bin:$PATH"
if ! node_new_enough; then
    echo "setup: Node.js $(node --version 2>/dev/null || echo '(none)') is too old for" \
         "gitlab-ci-local: installing Node.js 22 into .tools/node"
    npm install -s --prefix .tools/node --no-audit --no-fund node@22.23.3
    hash -r
fi
if ! cmp -s scripts/gitlab-ci-local/package-lock.json .tools/package-lock.json \
        || [ ! -x .tools/node_modules/.bin/gitlab-ci-local ]; then
    echo "setup: installing gitlab-ci-local into .tools"
    mkdir -p .tools
    cp scripts/gitlab-ci-local/package.json scripts/gitlab-ci-local/package-lock.json .tools/
    npm ci -s --prefix .tools --no-audit --no-fund
fi
echo "gitlab-ci-local $(.tools/node_modules/.bin/gitlab-ci-local --version)"
.venv/bin/orch --version
