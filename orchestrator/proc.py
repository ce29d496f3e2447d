"""Run subprocesses with a timeout, their output captured to a log file."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence


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


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run(argv: Sequence[str | os.PathLike], *, log: Path | None = None,
        cwd: Path | None = None, env: Mapping[str, str] | None = None,
        timeout: float | None = None, input: bytes | None = None,
        append: bool = False) -> Result:
    """Run argv (never through a shell), output to `log` (stdout+stderr).

    The child gets its own process group so a timeout or Ctrl-C can kill
    everything it started (make's children, QEMU under vng).
    """
    argv = [str(a) for a in argv]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab" if append else "wb")
        out.write(("$ " + " ".join(argv) + "\n").encode())
        out.flush()
    else:
        out = subprocess.PIPE
    proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=out,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            start_new_session=True)
    timed_out = False
    try:
        stdout, _ = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        stdout, _ = proc.communicate()
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        if log is not None:
            out.close()
    if log is not None:
        text = log.read_bytes()[-16384:].decode(errors="replace")
    else:
        text = (stdout or b"").decode(errors="replace")
    return Result(argv, proc.returncode, timed_out, log, text)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
