"""What a bzImage really holds: the banner of the kernel inside it.

A bzImage is the real-mode setup (whose header names a version string) and
the compressed kernel (the payload, which holds `linux_banner`). The two
are linked from different objects: when a stale object is linked (ccache
serving an old arch/x86/boot/compressed/piggy.o, say) the header is new and
the payload old. So orch reads the banner out of the payload itself and
compares it with the banner the build just produced (vmlinux's), and with
the header; a boot is checked against it again (kernel console, /proc/version).

Layout (Documentation/arch/x86/boot.rst): setup_sects at 0x1f1, "HdrS" at
0x202, kernel_version (a pointer, +0x200) at 0x20e, payload_offset and
payload_length at 0x248 and 0x24c, relative to the protected-mode code,
which starts after the (setup_sects + 1) setup sectors.
"""

from __future__ import annotations

import bz2
import lzma
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

# A decompressed kernel is tens of MiB; a payload that grows past this is
# not a kernel (or is a decompression bomb from an untrusted tree).
MAX_PAYLOAD = 1 << 30
MAX_IMAGE = 512 << 20
# linux_banner: "Linux version RELEASE (USER@HOST) (COMPILER) UTS_VERSION\n\0"
_BANNER = re.compile(rb"Linux version (\d[\x20-\x7e]{0,500})\n\x00")
_PARTS = re.compile(r"^Linux version (\S+) \((\S+)\) \((.*)\) (#\d+ .*)$")
_HEADER = re.compile(r"^(\S+) \((\S+)\) (#\d+ .*)$")


class ImageError(Exception):
    """The image cannot be read, or does not agree with itself or its build."""


@dataclass(frozen=True)
class Banner:
    text: str        # the whole line, without its newline
    release: str     # 7.2.13
    builder: str     # orch@orch
    version: str     # #3 SMP PREEMPT_DYNAMIC Thu Nov 27 23:38:06 UTC 2026

    @classmethod
    def parse(cls, text: str) -> "Banner":
        text = text.rstrip("\n")
        m = _PARTS.match(text)
        if not m:
            raise ImageError(f"not a kernel banner: {text[:120]!r}")
        return cls(text, m.group(1), m.group(2), m.group(4))

    def short(self) -> str:
        return f"{self.release} {self.version}"


def banner_in(data: bytes, what: str) -> Banner:
    """The one linux_banner in `data` (a vmlinux, or a decompressed payload).

    init/version.o also holds a weak placeholder banner, built with a
    temporary UTS_VERSION that has no build number ("# SMP ..."); the
    linker takes init/version-timestamp.o's real one, and only that one has
    "#N". The placeholder is left aside."""
    found = {m.group(0)[:-2].decode("ascii") for m in _BANNER.finditer(data)}
    real = {b for b in found if _PARTS.match(b)}
    if not real:
        raise ImageError(f"no kernel banner in {what}")
    if len(real) > 1:
        raise ImageError(f"{len(real)} different kernel banners in {what}")
    return Banner.parse(real.pop())


@dataclass(frozen=True)
class Header:
    version: str      # the setup header's kernel_version string
    payload: bytes    # compressed


def read_header(image: bytes) -> Header:
    if len(image) < 0x250 or image[0x202:0x206] != b"HdrS":
        raise ImageError("not a bzImage (no HdrS setup header)")
    proto, = struct.unpack_from("<H", image, 0x206)
    if proto < 0x208:
        raise ImageError(f"boot protocol {proto:#x} has no payload fields")
    setup_sects = image[0x1F1] or 4
    ptr, = struct.unpack_from("<H", image, 0x20E)
    start = ptr + 0x200
    end = image.find(b"\0", start, start + 512)
    if not ptr or end < 0:
        raise ImageError("the setup header names no kernel version")
    version = image[start:end].decode("ascii", errors="replace")
    off, length = struct.unpack_from("<II", image, 0x248)
    begin = (setup_sects + 1) * 512 + off
    if length == 0 or begin + length > len(image):
        raise ImageError("payload lies outside the image")
    return Header(version, image[begin:begin + length])


def _external(argv: list[str], data: bytes, name: str) -> bytes:
    if not shutil.which(argv[0]):
        raise ImageError(f"cannot check a {name}-compressed kernel: {argv[0]} is not installed")
    r = subprocess.run(argv, input=data, capture_output=True, timeout=120)
    if not r.stdout:
        raise ImageError(f"{argv[0]} could not decompress the payload")
    return r.stdout[:MAX_PAYLOAD]


def decompress(payload: bytes) -> bytes:
    """The kernel appends its uncompressed size after the stream: every
    decoder here stops at the end of the first stream and ignores the rest.
    A stream that does not end (truncated, or past MAX_PAYLOAD) is refused."""
    if payload.startswith(b"\xfd7zXZ\x00"):
        d = lzma.LZMADecompressor(lzma.FORMAT_XZ)
    elif payload.startswith(b"\x1f\x8b"):
        d = zlib.decompressobj(wbits=31)
    elif payload.startswith(b"BZh"):
        d = bz2.BZ2Decompressor()
    elif payload.startswith(b"\x5d\x00\x00"):
        d = lzma.LZMADecompressor(lzma.FORMAT_ALONE)
    elif payload.startswith(b"\x28\xb5\x2f\xfd"):
        return _external(["zstd", "-dcq"], payload, "zstd")
    elif payload.startswith(b"\x02\x21\x4c\x18"):
        return _external(["lz4", "-dcq"], payload, "lz4")
    elif payload.startswith(b"\x89LZO"):
        return _external(["lzop", "-dcq"], payload, "lzo")
    else:
        raise ImageError(f"unknown payload compression (magic {payload[:4].hex()})")
    try:
        out = d.decompress(payload, MAX_PAYLOAD)
    except (lzma.LZMAError, zlib.error, OSError, EOFError) as e:
        raise ImageError(f"the payload does not decompress: {e}") from None
    if not d.eof:
        raise ImageError("the payload does not decompress: its stream is truncated "
                         f"or larger than {MAX_PAYLOAD >> 20} MiB")
    return out


def image_banner(image: Path) -> Banner:
    """The banner inside the image's payload, checked against its header."""
    if image.stat().st_size > MAX_IMAGE:
        raise ImageError(f"{image} is larger than {MAX_IMAGE >> 20} MiB")
    hdr = read_header(image.read_bytes())
    inside = banner_in(decompress(hdr.payload), "the bzImage payload")
    m = _HEADER.match(hdr.version)
    if not m or (m.group(1), m.group(2), m.group(3)) != \
            (inside.release, inside.builder, inside.version):
        raise ImageError(f"the bzImage header says {hdr.version!r} but its payload is "
                         f"{inside.short()!r}: a stale object was linked")
    return inside


def verify(image: Path, vmlinux: Path) -> Banner:
    """The image holds the kernel this build linked (vmlinux's banner)."""
    built = banner_in(vmlinux.read_bytes(), str(vmlinux))
    inside = image_banner(image)
    if inside != built:
        raise ImageError(f"the bzImage holds {inside.short()!r} but the build made "
                         f"{built.short()!r}: a stale object was linked")
    return built


_CONSOLE = re.compile(r"Linux version (\d[\x20-\x7e]{0,500})")


def booted_banner(console_text: str) -> str | None:
    """The first banner the kernel printed on its console (it prints
    linux_banner before anything else can): the kernel QEMU really booted."""
    for line in console_text.splitlines():
        m = _CONSOLE.search(line)
        if m:
            return "Linux version " + m.group(1).rstrip()
    return None
