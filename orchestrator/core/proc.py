"""Run subprocesses with a timeout, their output captured to a log file."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

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
    full_env = dict(os.environ) if inherit_env else {}
    if env:
        full_env.update(env)
    out = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab" if append else "wb")
        out.write(("$ " + " ".join(argv) + "\n").encode())
        out.flush()
    proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            start_new_session=True, pass_fds=tuple(pass_fds))
    with _lock:
        _live.add(proc)
    tail = bytearray()
    full = bytearray()

    def pump() -> None:
        written = 0
        partial = b""
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            if on_line is not None:
                *lines, partial = (partial + chunk).split(b"\n")
                partial = partial[-4096:]
                for line in lines:
                    try:
                        on_line(line.decode(errors="replace"))
                    except Exception:
                        pass  # a display bug must not break the run
            tail.extend(chunk)
            del tail[:-TAIL]
            if out is None:
                full.extend(chunk)
            elif written < MAX_LOG:
                out.write(chunk[:MAX_LOG - written])
                written += len(chunk)
                if written >= MAX_LOG:
                    out.write(b"\n[orch: log truncated]\n")
                out.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        if input is not None:
            try:
                proc.stdin.write(input)
            except BrokenPipeError:
                pass
            proc.stdin.close()
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        proc.wait()
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        # Children that outlive the leader still hold the pipe: end them too.
        _kill_group(proc)
        reader.join(timeout=10)
        if out is not None:
            out.close()
        with _lock:
            _live.discard(proc)
    with _lock:
        if proc.pid in _killed:
            # Stopped by kill_all() from the main thread (Ctrl-C, SIGTERM):
            # this thread's caller must not take it for an ordinary failure.
            _killed.discard(proc.pid)
            raise KeyboardInterrupt
    text = (full if out is None else tail).decode(errors="replace")
    return Result(argv, proc.returncode, timed_out, log, text)


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
