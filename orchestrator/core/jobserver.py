"""One make job budget shared by concurrent builds (GNU make's jobserver).

Building several configs at once keeps the cores busy through each build's
serial stretches (Kconfig, the vmlinux link), but each make with -jN of its
own would run k*N jobs. Every make here is a jobserver client of one pipe
holding the tokens instead, the way a top-level make shares -j with its
sub-makes.
"""

from __future__ import annotations

import os


class JobServer:
    def __init__(self, jobs: int, clients: int):
        # Each client make owns one implicit job slot besides the tokens.
        self.jobs = max(1, jobs)
        self.r, self.w = os.pipe()
        os.set_inheritable(self.r, True)
        os.set_inheritable(self.w, True)
        os.write(self.w, b"+" * max(0, self.jobs - max(1, clients)))

    @property
    def fds(self) -> tuple[int, int]:
        return self.r, self.w

    def makeflags(self) -> str:
        # What make 4.3 itself hands its sub-makes.
        return f" -j{self.jobs} --jobserver-auth={self.r},{self.w}"

    def close(self) -> None:
        for fd in (self.r, self.w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "JobServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
