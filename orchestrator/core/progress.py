"""What a long run shows while it works.

On a terminal: one status line, rewritten in place, with what each running
step is doing (a build's object count and last file, a boot's elapsed time
and last console line). Not on a terminal (CI logs, pipes): only the
step lines, one per event, nothing rewritten.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, tty: bool | None = None):
        # sys.stderr as it is now, not as it was at import (a caller may
        # have replaced it, as pytest's capture does).
        stream = stream if stream is not None else sys.stderr
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.t0 = time.monotonic()
        self._status: dict[str, str] = {}
        self._lock = threading.Lock()
        self._last = 0.0
        self._shown = False

    def say(self, msg: str, at: float | None = None) -> None:
        """A step line: always printed, on its own line. `at`: when it
        happened (time.monotonic()), for a line printed later than said."""
        with self._lock:
            self._clear()
            when = time.monotonic() if at is None else at
            print(f"[{when - self.t0:6.0f}s] {msg}", file=self.stream, flush=True)
            self._render(force=True)

    def status(self, key: str, text: str | None) -> None:
        """The live status of one running step (None: it ended). tty only."""
        if not self.tty:
            return
        with self._lock:
            if text is None:
                self._status.pop(key, None)
            else:
                self._status[key] = text
            self._render(force=text is None)

    def _clear(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
            self._shown = False

    def _render(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.25:
            return
        self._last = now
        self._clear()
        if self._status:
            width = 160
            line = f"[{now - self.t0:6.0f}s] " + " | ".join(self._status.values())
            self.stream.write(line[:width])
            self._shown = True
        self.stream.flush()

    def done(self) -> None:
        with self._lock:
            self._status.clear()
            self._clear()
            self.stream.flush()
