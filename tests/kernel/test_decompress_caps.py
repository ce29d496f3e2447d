"""A kernel image whose payload is a decompression bomb costs orch neither
its memory nor a traceback (issue 25, item 9).

Every decoder kimage uses is streamed and cut off at kimage.MAX_PAYLOAD:
the external ones (zstd, lz4, lzop) are read as they write and killed
there, the Python ones (xz, gzip, bz2, lzma) give at most a chunk per call,
and the banner is searched chunk by chunk. Each bomb here is made in the
test (never stored), and checked in a child process with a 1 GiB address
space, whose peak memory (with its decoder's) is measured: a bomb that
was held whole would not fit.
"""

from __future__ import annotations

import bz2
import lzma
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import pytest
from helpers import FIXED, MINI, REPO, TESTS_DIR, one_error_line, series

from orchestrator.kernel import kimage

BANNER = (b"Linux version 7.2.13 (orch@orch) (gcc (Debian 12.2.0) 12.2.0) "
          b"#3 SMP Thu Nov 27 23:38:06 UTC 2026\n\0")
HEADER = "7.2.13 (orch@orch) #3 SMP Thu Nov 27 23:38:06 UTC 2026"
ZEROS = 64 << 20
AS_LIMIT = 1 << 30           # the child's address space: a held 4 GiB bomb cannot fit
PEAK_CHILD = TESTS_DIR / "peak_child.py"
RSS_LIMIT = 96 << 20         # the child's peak, its decoder's included (~30 MiB)

CHECK = """\
import sys
from pathlib import Path
from orchestrator.kernel import kimage
try:
    print("banner:", kimage.image_banner(Path(sys.argv[1])).text)
except kimage.ImageError as e:
    print("refused:", e)
"""


def _tool(argv: list[str], data: bytes) -> bytes:
    return subprocess.run(argv, input=data, capture_output=True, check=True).stdout


def _framed(argv: list[str], frames: int) -> bytes:
    """The banner in one frame, then `frames` frames of 64 MiB of zeros:
    the tools decode concatenated frames as one stream (4 GiB for 64)."""
    zeros = _tool(argv, bytes(ZEROS))
    return _tool(argv, b"\0" * 100 + BANNER) + zeros * frames


def _one_stream(compressor, mib: int) -> bytes:
    """The Python decoders stop at the end of the first stream: one stream
    of the banner, then `mib` MiB of zeros."""
    out = [compressor.compress(b"\0" * 100 + BANNER)]
    out += [compressor.compress(bytes(ZEROS)) for _ in range(mib // 64)]
    return b"".join(out) + compressor.flush()


def _lzma_wants_3_gib() -> bytes:
    """An .lzma header (props 0x5d) whose dictionary is 3 GiB: liblzma
    allocates the whole dictionary before it decodes a byte."""
    return b"\x5d\x00\x00\x00\xc0" + b"\xff" * 8 + b"\0" * 64


BOMBS = {
    "zstd": (lambda: _framed(["zstd", "-q", "-c"], 64), "zstd"),
    "lz4": (lambda: _framed(["lz4", "-l", "-q", "-c"], 64), "lz4"),
    "lzo": (lambda: _framed(["lzop", "-q", "-c"], 64), "lzop"),
    "gzip": (lambda: _one_stream(zlib.compressobj(1, wbits=31), 320), None),
    "xz": (lambda: _one_stream(lzma.LZMACompressor(preset=0), 320), None),
    "bz2": (lambda: _one_stream(bz2.BZ2Compressor(9), 320), None),
    "lzma": (lambda: _one_stream(lzma.LZMACompressor(lzma.FORMAT_ALONE, preset=0), 320), None),
}


def _image(tmp_path: Path, payload: bytes) -> Path:
    (tmp_path / "payload").write_bytes(payload)
    out = tmp_path / "bzImage"
    subprocess.run([sys.executable, str(MINI / "scripts" / "mkbzimage.py"), HEADER,
                    str(tmp_path / "payload"), str(out)], check=True)
    (tmp_path / "payload").unlink()
    return out


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def run_measured(argv: list[str], env: dict, cwd: Path | None = None,
                 limit: bool = True) -> tuple[int, str, str, int]:
    """(exit status, stdout, stderr, peak RSS in bytes of the Python process
    `argv` starts and of every process it waited for), the address space
    capped when `limit`. The peak is measured inside it (peak_child.py)."""
    assert argv[0] == sys.executable and argv[1] in ("-c", "-m"), argv
    with tempfile.TemporaryDirectory() as d:
        peak_file = Path(d) / "peak"
        p = subprocess.run([sys.executable, str(PEAK_CHILD), *argv[1:]], capture_output=True,
                           env={**env, "PEAK_FILE": str(peak_file)}, cwd=cwd,
                           preexec_fn=_limited if limit else None)
        peak = int(peak_file.read_text()) if peak_file.exists() else 0
    return (p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"),
            peak)


def test_the_peak_is_the_childs_own_not_pytests(tmp_path):
    """The measurement itself, against its mutant: pytest holding 256 MiB
    does not make a small child look big (wait4's ru_maxrss did), and a
    child that takes 200 MiB is seen taking it."""
    ballast = bytearray(256 << 20)
    ballast[::4096] = b"x" * len(ballast[::4096])     # resident, not just mapped
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    _rc, _out, _err, small = run_measured([sys.executable, "-c", "pass"], env)
    _rc, _out, _err, big = run_measured(
        [sys.executable, "-c", "b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096])"],
        env)
    assert small < 64 << 20, small >> 20
    assert big > 200 << 20, big >> 20
    with tempfile.TemporaryFile() as fo:
        p = subprocess.Popen([sys.executable, "-c", "pass"], stdout=fo, preexec_fn=_limited)
        _pid, _status, usage = os.wait4(p.pid, 0)
    assert usage.ru_maxrss * 1024 > 256 << 20     # the old way: pytest's size, not the child's
    del ballast


@pytest.mark.parametrize("fmt", list(BOMBS))
def test_a_bomb_payload_is_refused_in_bounded_memory(tmp_path, fmt):
    make, tool = BOMBS[fmt]
    if tool and not shutil.which(tool):
        pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")
    image = _image(tmp_path, make())
    env = {**os.environ, "PYTHONPATH": str(REPO), "MALLOC_ARENA_MAX": "2"}
    rc, out, err, peak = run_measured([sys.executable, "-c", CHECK, str(image)], env)
    assert rc == 0 and "Traceback" not in err, err[-2000:]
    assert peak < RSS_LIMIT, f"{peak >> 20} MiB, {out}"
    assert out.strip() == ("refused: the payload decompresses to more than 256 MiB: not a "
                           "kernel (a decompression bomb?)"), out


def test_a_dictionary_bigger_than_a_kernel_needs_is_refused(tmp_path):
    image = _image(tmp_path, _lzma_wants_3_gib())
    env = {**os.environ, "PYTHONPATH": str(REPO), "MALLOC_ARENA_MAX": "2"}
    rc, out, err, peak = run_measured([sys.executable, "-c", CHECK, str(image)], env)
    assert rc == 0 and "Traceback" not in err, err[-2000:]
    assert out.strip() == "refused: the payload's decoder asks for more than " \
        f"{kimage.DECODER_MEMORY >> 20} MiB of memory: not a kernel", out


COMPRESS = {
    "zstd": lambda data: _tool(["zstd", "-q", "-c"], data),
    "lz4": lambda data: _tool(["lz4", "-l", "-q", "-c"], data),
    "lzo": lambda data: _tool(["lzop", "-q", "-c"], data),
    "gzip": lambda data: zlib.compress(data, wbits=31),
    "xz": lzma.compress,
    "bz2": bz2.compress,
    "lzma": lambda data: lzma.compress(data, lzma.FORMAT_ALONE),
}


@pytest.mark.parametrize("fmt", list(COMPRESS))
def test_a_banner_across_two_chunks_is_found_once(tmp_path, fmt):
    """The banner is searched chunk by chunk: one that straddles a chunk's
    end is found (once), and a second one still refuses the image."""
    tool = {"zstd": "zstd", "lz4": "lz4", "lzo": "lzop"}.get(fmt)
    if tool and not shutil.which(tool):
        pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")
    placeholder = BANNER.replace(b"#3 SMP Thu Nov 27 23:38:06 UTC 2026", b"# SMP ")
    chunk = getattr(kimage, "CHUNK", 1 << 20)     # where the decoders cut their output
    kernel = os.urandom(chunk - 60) + placeholder + BANNER + os.urandom(4096)
    img = _image(tmp_path, COMPRESS[fmt](kernel) + b"SIZE")
    assert kimage.image_banner(img).text == BANNER[:-2].decode()
    other = BANNER.replace(b"#3", b"#2")
    img = _image(tmp_path, COMPRESS[fmt](kernel + bytes(chunk) + other))
    with pytest.raises(kimage.ImageError, match="2 different kernel banners"):
        kimage.image_banner(img)


# --- the same through orch: a series whose build makes a zstd bomb ----------

BOMB_RULE = (
    "\t@zstd -q -c $< > $(Z)/vmlinux.bin.xz; head -c 64M /dev/zero | zstd -q -c > "
    "$(Z)/zeros.zst; \\\n"
    "\t  for i in $$(seq 32); do cat $(Z)/zeros.zst; done >> $(Z)/vmlinux.bin.xz\n")


def test_a_series_that_builds_a_zstd_bomb_is_one_line(env, tmp_path, mini):
    """The series' Makefile compresses its kernel with zstd and appends
    2 GiB of zeros (32 frames): orch refuses the image in one line and
    keeps its memory."""
    if not shutil.which("zstd"):
        pytest.skip("zstd is not installed (scripts/setup.sh installs it)")
    makefile = (MINI / "Makefile").read_text()
    xz = "\t@xz -c --check=crc32 $< > $(Z)/vmlinux.bin.xz\n"
    assert xz in makefile
    mbox = series(mini, tmp_path, "bomb", [("mini: zstd bomb", {
        "Makefile": makefile.replace(xz, BOMB_RULE), "new.c": FIXED})])
    rd = tmp_path / "run"
    rc, out, err, peak = run_measured(
        [sys.executable, "-m", "orchestrator.cli", "test", "--offline-mode", "--build-only",
         "--config", "base", "--mbox", str(mbox), "--tree", str(mini), "--run-dir", str(rd)],
        {**env, "MALLOC_ARENA_MAX": "2"}, tmp_path, limit=False)
    assert rc != 0, f"exit 0, peak {peak >> 20} MiB: {err[-1500:]}"
    line = one_error_line(err)
    assert "patched build of config base is not the kernel it built: the payload " \
        "decompresses to more than 256 MiB" in line, line
    assert peak < 400 << 20, f"{peak >> 20} MiB"
