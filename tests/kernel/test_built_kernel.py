"""The kernel that boots is the kernel that was built.

ccache in depend mode cannot see the files an assembler pulls in with
`.incbin` (arch/x86/boot/compressed/piggy.S is the compressed kernel), so
it once linked an earlier build's kernel into a new bzImage. These tests
reproduce that on the stand-in tree (tests/data/minikernel builds a real
bzImage: setup header + xz payload pulled in by piggy.S's .incbin), show
orch's compiler wrapper prevents it, and show each check that guards the
rest fails on what it should: the built image against its build, cached
entries from before the fix, the booted kernel against the built one.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXED, MINI, build_only, git, one_error_line, run_json, series

from orchestrator.core.models import GuestRun, Kernel
from orchestrator.guest import vm
from orchestrator.kernel import build, ccache_guard, kimage

PIGGY = "arch/x86/boot/compressed/piggy.S"


def _make(src: Path, out: Path, cc: str, ccache_dir: Path) -> None:
    e = {**os.environ, **build.build_env(), "CCACHE_DIR": str(ccache_dir)}
    for target in ("tinyconfig", "bzImage"):
        subprocess.run(["make", f"O={out}", f"CC={cc}", target], cwd=src, env=e, check=True,
                       capture_output=True)


def _two_builds(tmp_path: Path, cc: str) -> Path:
    """The baseline, then one new file: the second piggy.S has the same text
    as the first and another payload. The ccache starts empty."""
    src = tmp_path / "src"
    shutil.copytree(MINI, src)
    out, cache = tmp_path / "out", tmp_path / "ccache"
    _make(src, out, cc, cache)
    (src / "new.c").write_text(FIXED)
    _make(src, out, cc, cache)
    return out


def test_plain_ccache_links_the_previous_kernel(tmp_path):
    """The collision itself (what orch did before): the image's header is
    the new build's, its payload the old one's, and the check says so."""
    out = _two_builds(tmp_path, "ccache gcc")
    with pytest.raises(kimage.ImageError, match="a stale object was linked") as e:
        kimage.verify(out / build.IMAGE, out / "vmlinux")
    assert "#2 SMP" in str(e.value) and "payload is '0.1-mini #1 SMP" in str(e.value)


def test_orch_compiler_wrapper_links_the_new_kernel(tmp_path):
    out = _two_builds(tmp_path, ccache_guard.cc())
    banner = kimage.verify(out / build.IMAGE, out / "vmlinux")
    assert banner.version.startswith("#2 SMP")
    payload = kimage.decompress(kimage.read_header((out / build.IMAGE).read_bytes()).payload)
    assert b"mini_new" in payload      # the second build's code is in the image


def test_every_build_records_its_checked_banner(env, tmp_path, mini):
    mbox = series(mini, tmp_path, "s", [("mini: add mini_new", {"new.c": FIXED})])
    r, rd = build_only(env, tmp_path, mini, mbox)
    assert r.returncode == 0, r.stderr
    c = run_json(rd)["configs"][0]
    b, p = c["baseline"]["build"], c["patched"]["build"]
    assert b["banner"] != p["banner"]
    for side in (b, p):
        entry = Path(env["ORCH_CACHE"]) / "kernels" / side["key"]
        assert (entry / "banner").read_text().strip() == side["banner"]
        assert kimage.image_banner(entry / "bzImage").text == side["banner"]
        assert side["uncached"] == [PIGGY]
    # Read independently of orch's reader: the patched image holds the
    # patched code, the baseline's does not.
    def payload(key):
        img = (Path(env["ORCH_CACHE"]) / "kernels" / key / "bzImage").read_bytes()
        return lzma.LZMADecompressor().decompress(img[1024:])
    assert b"mini_new" in payload(p["key"]) and b"mini_new" not in payload(b["key"])


def test_a_stale_object_fails_the_build_and_is_never_cached(env, tmp_path, mini):
    """STALE keeps the baseline's piggy.o, as a cache serving it would."""
    mbox = series(mini, tmp_path, "s", [("mini: add mini_new", {"new.c": FIXED, "STALE": "1\n"})])
    r, rd = build_only(env, tmp_path, mini, mbox)
    assert r.returncode == 5, r.stderr
    line = one_error_line(r.stderr)
    assert "patched build of config base is not the kernel it built" in line
    assert "a stale object was linked" in line and "not cached, not booted" in line
    rec = run_json(rd)
    assert rec["verdict"] == "INFRA-ERROR"
    assert [c["patched"]["build"]["status"] for c in rec["configs"]] == ["failed"] * 2
    # Only the baselines (of both configs of the default matrix) are cached.
    kernels = {k.name for k in (Path(env["ORCH_CACHE"]) / "kernels").iterdir()}
    assert kernels == {c["baseline"]["build"]["key"] for c in rec["configs"]}
    # The next build relinks: a series without the stale object is fine.
    good = series(mini, tmp_path, "t", [("mini: add mini_new", {"new.c": FIXED})])
    r, rd = build_only(env, tmp_path, mini, good, rd_name="run2")
    assert r.returncode == 0, r.stderr


def _splice(header_from: Path, payload_from: Path, out: Path) -> None:
    """A stand-in bzImage with one image's setup and another's payload."""
    a, b = header_from.read_bytes(), payload_from.read_bytes()
    setup = bytearray(a[:1024])
    setup[0x24C:0x250] = (len(b) - 1024).to_bytes(4, "little")
    out.write_bytes(bytes(setup) + b[1024:])


def test_stale_entry_cached_before_the_check_is_rebuilt(env, tmp_path, mini):
    mbox = series(mini, tmp_path, "s", [("mini: add mini_new", {"new.c": FIXED})])
    r, rd = build_only(env, tmp_path, mini, mbox)
    c = run_json(rd)["configs"][0]
    kernels = Path(env["ORCH_CACHE"]) / "kernels"
    entry = kernels / c["patched"]["build"]["key"]
    # As the old orch kept it: new header, the baseline's payload, a
    # checksum that matches, no banner record.
    _splice(entry / "bzImage", kernels / c["baseline"]["build"]["key"] / "bzImage",
            entry / "bzImage")
    (entry / "sha256").write_text(hashlib.sha256((entry / "bzImage").read_bytes()).hexdigest())
    (entry / "banner").unlink()
    # An unstale old entry (the baseline's) is checked once and kept.
    (kernels / c["baseline"]["build"]["key"] / "banner").unlink()
    r, rd = build_only(env, tmp_path, mini, mbox, rd_name="run2")
    assert r.returncode == 0, r.stderr
    c2 = run_json(rd)["configs"][0]
    assert c2["baseline"]["build"]["status"] == "cached"
    assert c2["patched"]["build"]["status"] == "ok"            # rebuilt
    log = (rd / "logs" / "build-base-patched.log").read_text()
    assert "a stale object was linked; rebuilding" in log
    assert kimage.image_banner(entry / "bzImage").text == c2["patched"]["build"]["banner"]
    # Its payload is no longer the baseline's. (A series' build starts from
    # the baseline's directory each run, so its build number, and within the
    # same second its whole banner, are what the first build's were.)
    assert c2["patched"]["build"]["banner"] != c["baseline"]["build"]["banner"]


# --- the reader itself, on images it must refuse ---------------------------

def _mini_image(tmp_path: Path, version: str, payload: bytes) -> Path:
    (tmp_path / "payload").write_bytes(payload)
    out = tmp_path / "bzImage"
    subprocess.run([sys.executable, str(MINI / "scripts" / "mkbzimage.py"), version,
                    str(tmp_path / "payload"), str(out)], check=True)
    return out


BANNER = b"Linux version 7.2.13 (orch@orch) (gcc (Debian 12.2.0) 12.2.0) #3 SMP Thu Nov 27 23:38:06 UTC 2026\n\0"
HEADER = "7.2.13 (orch@orch) #3 SMP Thu Nov 27 23:38:06 UTC 2026"


@pytest.mark.parametrize("compress", [lzma.compress, gzip.compress, bz2.compress])
def test_reader_agrees_with_a_consistent_image(tmp_path, compress):
    placeholder = BANNER.replace(b"#3 SMP Thu Nov 27 23:38:06 UTC 2026", b"# SMP ")
    img = _mini_image(tmp_path, HEADER, compress(b"\0" * 100 + placeholder + BANNER + b"\0" * 100)
                      + b"SIZE")
    assert kimage.image_banner(img).version == "#3 SMP Thu Nov 27 23:38:06 UTC 2026"


@pytest.mark.parametrize("header,payload,error", [
    (HEADER.replace("#3", "#4"), lzma.compress(BANNER), "a stale object was linked"),
    (HEADER.replace("7.2.13", "7.2.14"), lzma.compress(BANNER), "a stale object was linked"),
    (HEADER, lzma.compress(b"no banner here"), "no kernel banner"),
    # init/version.o's weak placeholder (no build number) is not a banner
    (HEADER, lzma.compress(BANNER.replace(b"#3 SMP", b"# SMP")), "no kernel banner"),
    (HEADER, lzma.compress(BANNER + BANNER.replace(b"#3", b"#2")), "2 different kernel banners"),
    (HEADER, b"\x11\x22\x33\x44junk", "unknown payload compression"),
    (HEADER, lzma.compress(BANNER)[:40], "does not decompress"),
])
def test_reader_refuses(tmp_path, header, payload, error):
    with pytest.raises(kimage.ImageError, match=error):
        kimage.image_banner(_mini_image(tmp_path, header, payload))


def test_reader_refuses_what_is_not_a_bzimage(tmp_path):
    (tmp_path / "x").write_bytes(b"\0" * 4096)
    with pytest.raises(kimage.ImageError, match="not a bzImage"):
        kimage.image_banner(tmp_path / "x")


# --- the headers scan: what the wrapper cannot see per compile -------------

def test_header_with_incbin_is_found_comments_and_other_arches_are_not(tmp_path):
    t = tmp_path / "t"
    (t / "include").mkdir(parents=True)
    (t / "arch" / "arm64" / "include").mkdir(parents=True)
    (t / "include" / "blob.h").write_text('asm(".incbin \\"blob.bin\\"");\n')
    (t / "include" / "note.h").write_text('/* from C via asm(".include <x.h>") */\n')
    (t / "arch" / "arm64" / "include" / "a.h").write_text('asm(".incbin \\"a\\"");\n')
    git(t, "init", "-q")
    git(t, "add", ".")
    assert ccache_guard.headers_with_directives(t, "t1") == ("include/blob.h",)


def test_a_header_with_incbin_turns_ccache_off_for_that_build(env, tmp_path, mini):
    mbox = series(mini, tmp_path, "s", [("mini: a blob", {
        "blob.bin": "the blob\n",
        "blob.h": 'asm(".section .rodata\\n.incbin \\"blob.bin\\"\\n.previous");\n',
        "new.c": '#include "blob.h"\n' + FIXED})])
    r, rd = build_only(env, tmp_path, mini, mbox)
    assert r.returncode == 0, r.stderr
    p = run_json(rd)["configs"][0]["patched"]["build"]
    assert "ccache off for this build" in (rd / "logs" / "build-base-patched.log").read_text()
    assert p["ccache"]["hits"] + p["ccache"]["misses"] == 0


# --- the booted kernel against the built one --------------------------------

BUILT = BANNER[:-2].decode()


def _guest(tmp_path: Path, console: str, proc_version: str | None) -> GuestRun:
    res = tmp_path / "results"
    res.mkdir(exist_ok=True)
    (tmp_path / "console.log").write_text(console)
    if proc_version is not None:
        (res / "proc-version").write_text(proc_version)
    (res / "junit.xml").write_text("<testsuite/>")
    g = GuestRun(True, "tcg", 1.0, tmp_path / "console.log", res / "junit.xml",
                 [])
    kernel = Kernel("base", tmp_path / "bzImage", tmp_path / "config", True, 0, None,
                    banner=BUILT)
    return vm.check_booted(g, kernel, res)


def test_booted_kernel_matches(tmp_path):
    g = _guest(tmp_path, f"[    0.000000] {BUILT}\r\nrest\n", BUILT + "\n")
    assert g.ok and g.banner == BUILT


@pytest.mark.parametrize("console,proc_version,why", [
    (f"[    0.000000] {BUILT.replace('#3', '#2')}\n", BUILT + "\n", "its console says"),
    (f"[    0.000000] {BUILT}\n", BUILT.replace("#3", "#2") + "\n", "its /proc/version says"),
    (f"[    0.000000] {BUILT}\n", None, "did not report /proc/version"),
])
def test_booted_kernel_differs(tmp_path, console, proc_version, why):
    g = _guest(tmp_path, console, proc_version)
    assert not g.ok
    assert g.error.startswith("booted kernel is not the one built") and why in g.error


def test_guest_proc_version_is_not_followed_through_a_link(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(BUILT + "\n")
    res = tmp_path / "results"
    res.mkdir()
    (res / "proc-version").symlink_to(secret)
    g = _guest(tmp_path, f"{BUILT}\n", None)
    assert not g.ok and "did not report /proc/version" in g.error


def test_a_crashed_guest_is_still_checked_by_its_console(tmp_path):
    g = GuestRun(False, "tcg", 1.0, tmp_path / "console.log", None, [], "kernel panicked: x")
    (tmp_path / "console.log").write_text(f"{BUILT.replace('#3', '#2')}\nKernel panic\n")
    k = Kernel("base", tmp_path / "bzImage", tmp_path / "config", True, 0, None, banner=BUILT)
    g = vm.check_booted(g, k, tmp_path)
    assert g.error.startswith("booted kernel is not the one built")


def test_kvm_probe_needs_a_kernel_that_really_runs(tmp_path, monkeypatch):
    """KVM that runs a 16-bit firmware but no kernel (as on this machine)
    must not be used: the kernel probe fails on a kernel that prints
    nothing (here: not a kernel at all), and its answer is kept by boot id."""
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path))
    monkeypatch.setattr(vm, "KERNEL_PROBE", 5)
    junk = tmp_path / "bzImage"
    junk.write_bytes(b"\0" * 65536)
    ok, why = vm._probe_kernel(str(junk))
    assert not ok and why.startswith("KVM runs no kernel here") and why.endswith("using TCG")
    kept = json.loads((tmp_path / "kvm-probe.json").read_text())
    assert kept["ok"] is False and kept["boot_id"]
