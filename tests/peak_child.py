"""Run `-c CODE ARGS` or `-m MODULE ARGS` as python would, then write this
process's peak resident memory, and its children's, to $PEAK_FILE.

Measured from inside because the outside view is wrong: a child that
pytest forks starts with pytest's pages mapped, and execve records that
old address space's high-water mark in the child's rusage, so wait4()'s
ru_maxrss is never below pytest's own size (100 MiB late in a full run).
VmHWM belongs to the address space exec made, and RUSAGE_CHILDREN counts
the decoders and builds this process started."""

import atexit
import os
import resource
import runpy
import sys


def _report() -> None:
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    with open(os.environ["PEAK_FILE"], "w") as f:
        f.write(str(max(hwm, kids)))


atexit.register(_report)
mode, what, *rest = sys.argv[1:]
if mode == "-c":
    sys.argv = ["-c", *rest]
    exec(compile(what, "<string>", "exec"), {"__name__": "__main__"})
else:
    sys.argv = [what, *rest]
    runpy.run_module(what, run_name="__main__", alter_sys=True)
