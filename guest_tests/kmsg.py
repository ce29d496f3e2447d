"""New kernel log lines since a point in time, from /dev/kmsg."""

from __future__ import annotations

import errno
import os

KERNEL_PROBLEM_WORDS = ("WARNING:", "BUG:", "BUG ", "Oops", "kernel BUG", "general protection",
                        "Call Trace:", "list_del corruption", "refcount_t:", "Bad page")


class KernelLog:
    """New kernel log lines since construction, from /dev/kmsg (non-blocking)."""

    def __init__(self) -> None:
        self.start_seq = self._last_seq()

    @staticmethod
    def _records():
        try:
            fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return None
        out = []
        try:
            while True:
                try:
                    rec = os.read(fd, 8192)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno == errno.EPIPE:   # overwritten records: skip on
                        continue
                    raise
                if not rec:
                    break
                head, _, msg = rec.decode(errors="replace").partition(";")
                fields = head.split(",")
                try:
                    seq = int(fields[1])
                except (IndexError, ValueError):
                    continue
                out.append((seq, msg.split("\n", 1)[0]))
        finally:
            os.close(fd)
        return out

    def _last_seq(self) -> int:
        recs = self._records()
        return recs[-1][0] if recs else -1

    def new_lines(self) -> list[str]:
        recs = self._records() or []
        return [m for s, m in recs if s > self.start_seq]

    def problems(self) -> list[str]:
        return [m for m in self.new_lines() if any(w in m for w in KERNEL_PROBLEM_WORDS)]
