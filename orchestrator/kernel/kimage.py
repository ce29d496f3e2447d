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

The image comes from a build of untrusted code, so its payload may be a
decompression bomb: every decoder is streamed, its output searched for the
banner chunk by chunk (never held whole) and cut off past MAX_PAYLOAD; an
external decoder (zstd, lz4, lzop) is killed there.
"""

from __future__ import annotations

import bz2
import contextlib
import errno
import lzma
import os
import re
import select
import shutil
import stat
import struct
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator

from orchestrator.core import untrusted

# A decompressed x86-64 kernel (vmlinux.bin plus relocations) is 5-15 MiB
# for orch's configs (tinyconfig-based) and 60-100 MiB for a distribution's;
# 256 MiB leaves that a 2.5x margin. A payload that grows past it is not a
# kernel but a decompression bomb: it is refused. The cap bounds time (a
# zstd bomb reaches it in a fraction of a second), not memory: the banner
# search holds one CHUNK at a time, whatever the cap.
MAX_PAYLOAD = 256 << 20
MAX_IMAGE = 512 << 20
MAX_VMLINUX = 4 << 30       # read in chunks: a vmlinux with debug info is up to ~1 GiB
CHUNK = 1 << 20
# The kernel's xz is made with a 128 MiB dictionary (scripts/xz_wrap.sh in
# 7.2: the in-kernel decoder needs none, liblzma allocates it whole: a real
# 7.2.13 payload needs just over 128 MiB, measured); lzma -9 needs 64 MiB. A
# header asking for more is refused. zstd's command line refuses windows
# over the same (--memory); lz4 and lzo use fixed small blocks.
DECODER_MEMORY = 256 << 20
TOOL_TIMEOUT = 120
# Longer than any match of _BANNER (14 + 1 + 500 + 2 bytes): a banner split
# between two chunks is whole in the second window.
_OVERLAP = 1024
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
    return banner_in_chunks([data], what)


def banner_in_chunks(chunks: Iterable[bytes], what: str) -> Banner:
    """banner_in over data that comes in pieces: each piece is searched with
    the end of the one before, so memory is one piece, not the whole. (A
    banner found twice in the overlap is one banner: they are kept by text.)"""
    real: set[str] = set()
    tail = b""
    for chunk in chunks:
        window = tail + chunk if tail else chunk
        for m in _BANNER.finditer(window):
            text = m.group(0)[:-2].decode("ascii")
            if _PARTS.match(text):
                real.add(text)
        if len(real) > 1:
            raise ImageError(f"{len(real)} different kernel banners in {what}")
        tail = window[-_OVERLAP:]
    if not real:
        raise ImageError(f"no kernel banner in {what}")
    return Banner.parse(real.pop())


@dataclass(frozen=True)
class Header:
    version: str         # the setup header's kernel_version string
    payload: memoryview  # compressed: a view into the image, not a copy of it


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
    return Header(version, memoryview(image)[begin:begin + length])


def decompress(payload: bytes | memoryview) -> bytes:
    """The whole decompressed payload (for tests and tools: orch itself
    searches it as it comes, payload_chunks); at most MAX_PAYLOAD bytes."""
    with contextlib.closing(payload_chunks(payload)) as chunks:
        return b"".join(chunks)


def payload_chunks(payload: bytes | memoryview) -> Iterator[bytes]:
    """The decompressed payload, CHUNK by CHUNK. The kernel appends its
    uncompressed size after the stream: every decoder here stops at the end
    of the first stream and ignores the rest. A stream that does not end
    (truncated) or grows past MAX_PAYLOAD is refused, its decoder stopped."""
    source = _decoder(payload)
    got = 0
    try:
        for chunk in source:
            got += len(chunk)
            if got > MAX_PAYLOAD:
                raise ImageError("the payload decompresses to more than "
                                 f"{MAX_PAYLOAD >> 20} MiB: not a kernel (a decompression bomb?)")
            yield chunk
    except lzma.LZMAError as e:
        if "Memory usage limit" in str(e):
            raise ImageError(f"the payload's decoder asks for more than {DECODER_MEMORY >> 20} "
                             "MiB of memory: not a kernel") from None
        raise ImageError(f"the payload does not decompress: {e}") from None
    except (zlib.error, OSError, EOFError) as e:
        raise ImageError(f"the payload does not decompress: {e}") from None
    finally:
        source.close()     # an external decoder is killed, not left writing


def _decoder(payload: bytes | memoryview) -> Iterator[bytes]:
    magic = bytes(payload[:6])
    if magic.startswith(b"\xfd7zXZ\x00"):
        return _stdlib(lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=DECODER_MEMORY), payload)
    if magic.startswith(b"\x1f\x8b"):
        return _gzip(payload)
    if magic.startswith(b"BZh"):
        return _stdlib(bz2.BZ2Decompressor(), payload)
    if magic.startswith(b"\x5d\x00\x00"):
        return _stdlib(lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=DECODER_MEMORY),
                       payload)
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        return _tool(["zstd", "-dcq", f"--memory={DECODER_MEMORY >> 20}MB"], payload, "zstd")
    if magic.startswith(b"\x02\x21\x4c\x18"):
        return _tool(["lz4", "-dcq"], payload, "lz4")
    if magic.startswith(b"\x89LZO"):
        return _tool(["lzop", "-dcq"], payload, "lzo")
    raise ImageError(f"unknown payload compression (magic {magic[:4].hex()})")


_TRUNCATED = "the payload does not decompress: its stream is truncated"


def _stdlib(d: lzma.LZMADecompressor | bz2.BZ2Decompressor,
            payload: bytes | memoryview) -> Iterator[bytes]:
    """lzma and bz2 keep the input they have not used: after the first
    call, each call gives at most CHUNK more output until the stream ends
    (eof) or the input runs out (needs_input: truncated)."""
    out = d.decompress(payload, CHUNK)
    while True:
        yield out
        if d.eof or d.needs_input:
            break
        out = d.decompress(b"", CHUNK)
    if not d.eof:
        raise ImageError(_TRUNCATED)


def _gzip(payload: bytes | memoryview) -> Iterator[bytes]:
    """zlib hands back the input it has not used (unconsumed_tail)."""
    d = zlib.decompressobj(wbits=31)
    data: bytes | memoryview = payload
    while not d.eof:
        out = d.decompress(data, CHUNK)
        if not out and len(d.unconsumed_tail) == len(data):
            break          # no output and no input used: the input ran out
        data = d.unconsumed_tail
        yield out
    if not d.eof:
        raise ImageError(_TRUNCATED)


def _tool(argv: list[str], payload: bytes | memoryview, name: str) -> Iterator[bytes]:
    """A decompressor's stdout, read as it comes. The payload goes to its
    stdin from a thread (a tool writing while we write would otherwise
    deadlock both); closing the generator, past the cap or on an error,
    kills the tool."""
    if not shutil.which(argv[0]):
        raise ImageError(f"cannot check a {name}-compressed kernel: {argv[0]} is not installed")
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    assert p.stdin is not None and p.stdout is not None
    feeder = threading.Thread(target=_feed, args=(p.stdin, payload), daemon=True)
    feeder.start()
    try:
        got = 0
        for chunk in _read_until_eof(p.stdout, time.monotonic() + TOOL_TIMEOUT, argv[0]):
            got += len(chunk)
            yield chunk
        if not got:
            raise ImageError(f"{argv[0]} could not decompress the payload")
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        feeder.join()
        p.stdout.close()


def _feed(pipe: IO[bytes], data: bytes | memoryview) -> None:
    try:
        with pipe:
            pipe.write(data)
    except OSError:      # the tool stopped reading: it ended, failed or was killed
        pass


def _read_until_eof(pipe: IO[bytes], deadline: float, tool: str) -> Iterator[bytes]:
    fd = pipe.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise ImageError(f"{tool} took over {TOOL_TIMEOUT}s on the payload")
        chunk = os.read(fd, CHUNK)
        if not chunk:
            return
        yield chunk


def _file_chunks(path: Path, limit: int) -> Iterator[bytes]:
    """A file a build wrote, CHUNK by CHUNK: not through a link, regular
    files only (never a FIFO or /dev/zero), at most `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise ImageError(f"{path.name} cannot be opened"
                         + (" (a symbolic link, not followed)" if e.errno == errno.ELOOP else
                            f": {e.strerror}")) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageError(f"{path.name} is not a regular file")
    yield from untrusted.fd_chunks(
        fd, limit, CHUNK, lambda: ImageError(f"{path.name} is larger than {limit >> 20} MiB"))


def _read_image(image: Path) -> bytes:
    try:
        return untrusted.read_capped(image, MAX_IMAGE)
    except untrusted.UntrustedError as e:
        raise ImageError(f"{image.parent}: {e}") from None


def image_banner(image: Path) -> Banner:
    """The banner inside the image's payload, checked against its header."""
    hdr = read_header(_read_image(image))
    with contextlib.closing(payload_chunks(hdr.payload)) as chunks:
        inside = banner_in_chunks(chunks, "the bzImage payload")
    m = _HEADER.match(hdr.version)
    if not m or (m.group(1), m.group(2), m.group(3)) != \
            (inside.release, inside.builder, inside.version):
        raise ImageError(f"the bzImage header says {hdr.version!r} but its payload is "
                         f"{inside.short()!r}: a stale object was linked")
    return inside


def verify(image: Path, vmlinux: Path | Iterable[bytes]) -> Banner:
    """The image holds the kernel this build linked (vmlinux's banner).
    `vmlinux`: its path, or its bytes as they are read (buildtree.BuildDir.chunks)."""
    if isinstance(vmlinux, Path):
        with contextlib.closing(_file_chunks(vmlinux, MAX_VMLINUX)) as chunks:
            built = banner_in_chunks(chunks, str(vmlinux))
    else:
        built = banner_in_chunks(vmlinux, "vmlinux")
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
