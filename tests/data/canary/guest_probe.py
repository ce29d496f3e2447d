"""Test data of tests/test_sandbox.py, run as a guest test (the tests copy
it to a test_*.py file and select that): it does what a patched kernel
running as root in the guest could do, look for the host's secrets and put
what it finds where orch publishes a run (the results directory, the JUnit
file, the harness log, the console). It passes either way: what it finds is
the outer test's question, not its own."""

import glob
import json
import os
import subprocess
import sys
import time

NAME = ".orch-canary"
SKIP = {"/proc", "/sys", "/dev", "/usr"}
LIMIT = 20000        # entries walked, and seconds: an unconfined host is big
SECONDS = 20


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode(errors="replace")
    except OSError as e:
        return f"unreadable: {e.strerror}"


def _walk(top, found, budget):
    """Every file named .orch-canary* under top (not into SKIP or Python's
    own prefixes, which hold no secrets and are large: a walk over 9p under
    TCG is slow), top being "/" or where "/" is bound again."""
    base = top.rstrip("/")
    skip = {base + p for p in SKIP | {sys.prefix, sys.base_prefix}}
    t0 = time.monotonic()
    for d, dirs, files in os.walk(top):
        dirs[:] = [x for x in dirs if os.path.join(d, x) not in skip]
        for f in files:
            if f.startswith(NAME):
                found[os.path.join(d, f)] = _read(os.path.join(d, f))
        budget[0] -= len(dirs) + len(files)
        if budget[0] <= 0 or time.monotonic() - t0 > SECONDS:
            found["(walk stopped)"] = d
            return


def test_reads_the_hosts_secrets(record_property):
    # The view still holds what the guest needs: its own sysfs (null_blk's
    # configfs is under it), mounted where the view has an empty /sys.
    if "virtme" in _read("/proc/cmdline"):
        assert os.path.isdir("/sys/block") and os.path.isdir("/sys/kernel/config")
    found = {}
    for f in ["/root/" + NAME, os.path.expanduser("~/" + NAME), *glob.glob("/home/*/" + NAME)]:
        found[f] = _read(f)
    budget = [LIMIT]
    _walk("/", found, budget)
    # Under the guest's own mounts (its /tmp, /run, /root tmpfs): the 9p
    # root as exported, bound again without them.
    # Only in a virtme-ng guest: never on a host that runs this unconfined.
    view = "/tmp/orch-canary-root"
    if "virtme" in _read("/proc/cmdline") and not os.makedirs(view, exist_ok=True) and \
            subprocess.run(["mount", "--bind", "/", view], capture_output=True).returncode == 0:
        _walk(view, found, budget)
        subprocess.run(["umount", view], capture_output=True)
    environ = {}
    for f in glob.glob("/proc/[0-9]*/environ"):
        environ[f] = _read(f).replace("\0", " ")
    report = {"probe": "ORCH-CANARY-PROBE guest", "env": dict(os.environ), "files": found,
              "environ": environ}
    text = json.dumps(report)
    print(text)                                       # the harness log
    with open(os.path.join(os.environ["ORCH_RESULTS"], "canary.json"), "w") as f:
        f.write(text)                                 # the results directory (run.json)
    record_property("canary", text[:20000])           # the JUnit file
    try:
        with open("/dev/kmsg", "w") as f:             # the console
            f.write("ORCH-CANARY-PROBE guest: " + text[:900] + "\n")
    except OSError:
        pass
