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
.venv/bin/orch --version
