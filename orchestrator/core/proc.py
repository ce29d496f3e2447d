"""Run subprocesses with a timeout, their output captured to a log file."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Callable, Mapping, Sequence

_live: set[subprocess.Popen] = set()     # running children, for kill_all()
_killed: set[int] = set()
_lock = threading.Lock()

MAX_LOG = 64 << 20  # a runaway guest or build cannot fill the disk through a log
TAIL = 16384


@dataclass
class Result:
    argv: list[str]
    returncode: int
    timed_out: bool
    log: Path | None
    output: str  # the tail of the output, for error messages

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def run(argv: Sequence[str | os.PathLike], *, log: Path | None = None,
        cwd: Path | None = None, env: Mapping[str, str] | None = None,
        timeout: float | None = None, input: bytes | None = None,
        append: bool = False, pass_fds: Sequence[int] = (),
        on_line: Callable[[str], None] | None = None, inherit_env: bool = True) -> Result:
    """Run argv (never through a shell), stdout+stderr to `log`.

    Output always goes through a pipe that we copy: QEMU (under vng) reopens
    /proc/self/fd/1 and 2 with O_TRUNC, which on a plain file truncates the
    log and makes its writers overwrite each other. The child gets its own
    process group so a timeout or Ctrl-C kills everything it started.
    `on_line` sees each output line as it comes (progress displays).
    The child gets orch's environment updated with `env`, or with
    inherit_env=False only `env` (sandboxed steps: see sandbox.py).
    """
    argv = [str(a) for a in argv]
    out = _open_log(log, argv, append)
    proc = subprocess.Popen(argv, cwd=cwd, env=_child_env(env, inherit_env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            start_new_session=True, pass_fds=tuple(pass_fds))
    with _lock:
        _live.add(proc)
    sink = _Sink(out, on_line)
    reader = threading.Thread(target=sink.pump, args=(proc.stdout,), daemon=True)
    reader.start()
    try:
        timed_out = _wait(proc, input, timeout)
    finally:
        # Children that outlive the leader still hold the pipe: end them too.
        _kill_group(proc)
        reader.join(timeout=10)
        if out is not None:
            out.close()
        with _lock:
            _live.discard(proc)
    _raise_if_killed(proc)
    return Result(argv, proc.returncode, timed_out, log, sink.text())


def _child_env(env: Mapping[str, str] | None, inherit_env: bool) -> dict[str, str]:
    full_env = dict(os.environ) if inherit_env else {}
    if env:
        full_env.update(env)
    return full_env


def _open_log(log: Path | None, argv: list[str], append: bool) -> BinaryIO | None:
    """The log, opened with the command as its first line."""
    if log is None:
        return None
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab" if append else "wb")
    out.write(("$ " + " ".join(argv) + "\n").encode())
    out.flush()
    return out


class _Sink:
    """Where a child's output goes: each line to `on_line`, all of it to the
    log up to MAX_LOG (or, without a log, kept whole), its tail kept for
    error messages."""

    def __init__(self, out: BinaryIO | None, on_line: Callable[[str], None] | None) -> None:
        self.out = out
        self.on_line = on_line
        self.tail = bytearray()
        self.full = bytearray()
        self.written = 0
        self.partial = b""

    def pump(self, stream: IO[bytes]) -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):
            self.feed(chunk)

    def feed(self, chunk: bytes) -> None:
        if self.on_line is not None:
            self._lines(chunk)
        self.tail.extend(chunk)
        del self.tail[:-TAIL]
        if self.out is None:
            self.full.extend(chunk)
        elif self.written < MAX_LOG:
            self._write(chunk)

    def _lines(self, chunk: bytes) -> None:
        *lines, partial = (self.partial + chunk).split(b"\n")
        self.partial = partial[-4096:]
        for line in lines:
            try:
                self.on_line(line.decode(errors="replace"))
            except Exception:
                pass  # a display bug must not break the run

    def _write(self, chunk: bytes) -> None:
        self.out.write(chunk[:MAX_LOG - self.written])
        self.written += len(chunk)
        if self.written >= MAX_LOG:
            self.out.write(b"\n[orch: log truncated]\n")
        self.out.flush()

    def text(self) -> str:
        return (self.full if self.out is None else self.tail).decode(errors="replace")


def _wait(proc: subprocess.Popen, input: bytes | None, timeout: float | None) -> bool:
    """Feed the child its input and wait for it: True when it timed out
    (and was killed). Any other interruption kills it too."""
    try:
        if input is not None:
            try:
                proc.stdin.write(input)
            except BrokenPipeError:
                pass
            proc.stdin.close()
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait()
        return True
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    return False


def _raise_if_killed(proc: subprocess.Popen) -> None:
    with _lock:
        if proc.pid in _killed:
            # Stopped by kill_all() from the main thread (Ctrl-C, SIGTERM):
            # this thread's caller must not take it for an ordinary failure.
            _killed.discard(proc.pid)
            raise KeyboardInterrupt


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_all() -> None:
    """Kill every running child's process group: the main thread calls this
    on an interrupt while worker threads wait on their children."""
    with _lock:
        live = list(_live)
        _killed.update(p.pid for p in live)
    for p in live:
        _kill_group(p)


def gone(pid: int) -> bool:
    """Whether process `pid` has ended: what a scratch directory named for
    its orch process is left by (not this one, never one that is running,
    nor one this process may not signal: another user's is alive)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False
