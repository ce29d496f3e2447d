"""Reading what the guest wrote: files in its results directory and JSON.

The guest runs a kernel from the mailing list with root in a directory the
host reads back, so every file there may be a symlink (to /dev/zero, to
the user's keys), a FIFO, huge, or JSON built to crash a parser. Nothing
is followed, nothing is read past a cap, and a bad file becomes an error
entry, never an exception that stops the run.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

MAX_DEPTH = 32


class UntrustedError(Exception):
    pass


def read_capped(path: Path, limit: int) -> bytes:
    """The file's bytes if it is a regular file (not a link) of at most `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UntrustedError(f"{path.name} is missing")
    except OSError as e:
        if e.errno == 40:  # ELOOP: O_NOFOLLOW met a symlink
            raise UntrustedError(f"{path.name} is a symbolic link (not followed)")
        raise UntrustedError(f"{path.name} cannot be opened: {e.strerror}")
    try:
        return read_fd(fd, limit)
    except UntrustedError as e:
        raise UntrustedError(f"{path.name} is {e}")
    finally:
        os.close(fd)


def read_fd(fd: int, limit: int, size_text: str | None = None) -> bytes:
    """An open file's bytes if it is a regular file of at most `limit`
    bytes; else UntrustedError "not a regular file" or "larger than ..."
    (`size_text`: how to say the limit, default "N bytes"). The caller
    opened it (without following a link, without blocking) and closes it."""
    too_big = f"larger than {size_text or f'{limit} bytes'}"
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UntrustedError("not a regular file")
    if st.st_size > limit:
        raise UntrustedError(too_big + (f" ({st.st_size} bytes)" if size_text else ""))
    data = b""
    while len(data) <= limit:   # the size may grow while we read
        chunk = os.read(fd, limit + 1 - len(data))
        if not chunk:
            break
        data += chunk
    if len(data) > limit:
        raise UntrustedError(too_big)
    return data


def fd_chunks(fd: int, limit: int, size: int, too_big):
    """An open file's bytes piece by piece, closing it at the end; past
    `limit` bytes raises too_big() (the caller's own error)."""
    try:
        total = 0
        while chunk := os.read(fd, size):
            total += len(chunk)
            if total > limit:
                raise too_big()
            yield chunk
    finally:
        os.close(fd)


def read_head(path: Path, limit: int) -> bytes:
    """The first `limit` bytes of a regular file (not a link), however long it is."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise UntrustedError(f"{path.name} cannot be opened: {e.strerror}")
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UntrustedError(f"{path.name} is not a regular file")
        data = b""
        while len(data) < limit:
            chunk = os.read(fd, limit - len(data))
            if not chunk:
                break
            data += chunk
        return data
    finally:
        os.close(fd)


def read_text(path: Path, limit: int) -> str | None:
    """A small text file, or None when it is missing or not acceptable."""
    try:
        return read_capped(path, limit).decode(errors="replace")
    except UntrustedError:
        return None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _depth(data: str) -> int:
    """Deepest bracket nesting outside strings, without recursing."""
    depth = deepest = 0
    in_str = esc = False
    for ch in data:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def load_json(text: str):
    """Strict JSON: no NaN/Infinity (they would make run.json invalid JSON),
    no numbers that overflow to infinity, no nesting deeper than MAX_DEPTH."""
    if _depth(text) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    value = json.loads(text, parse_constant=_reject_constant)
    _check_finite(value)
    return value


def _check_finite(value) -> None:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("a number out of range")
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
