"""Console scanning for kernel splats, on console text shaped like the real thing."""

from __future__ import annotations

from orchestrator.guest import splats

WARN = """[   10.100000] ------------[ cut here ]------------
[   10.100001] WARNING: CPU: 1 PID: 230 at mm/filemap.c:1611 folio_end_dropbehind+0x5c/0x70
[   10.100002] Modules linked in:
[   10.100003] Call Trace:
[   10.100004]  <IRQ>
[   10.100005]  folio_end_writeback+0x8d/0x120
[   10.100006]  end_bio_bh_io_sync+0x2a/0x40
[   10.100007]  ? null_handle_cmd+0x10/0x20
[   10.100008] ---[ end trace 0000000000000000 ]---
"""
LOCKDEP = """[    5.0] ======================================================
[    5.0] WARNING: possible circular locking dependency detected
[    5.0] 7.2.13+ #1 Not tainted
[    5.1] Call Trace:
[    5.1]  dump_stack_lvl+0x5d/0x80
[    5.1]  __lock_acquire+0x1234/0x2000
"""
SLEEP = "[ 3.3] BUG: sleeping function called from invalid context at mm/filemap.c:1500\n"
PANIC = "[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n"
CLEAN = "[ 1.0] Linux version 7.2.13 (orch@orch)\n[ 2.0] virtme-ng-init: udev is done\n"


def test_kinds_titles_and_frames():
    (w,) = splats.scan(WARN)
    assert w.kind == "warning" and "mm/filemap.c:1611" in w.title
    assert w.frames == ["folio_end_writeback", "end_bio_bh_io_sync", "null_handle_cmd"]
    (l,) = splats.scan(LOCKDEP)
    assert l.kind == "lockdep" and l.frames[:2] == ["dump_stack_lvl", "__lock_acquire"]
    assert [s.kind for s in splats.scan(SLEEP + PANIC)] == ["sleep-in-atomic", "panic"]
    assert splats.scan(CLEAN) == []


def test_fingerprint_ignores_pids_and_addresses():
    other = WARN.replace("CPU: 1 PID: 230", "CPU: 0 PID: 4711").replace("0x8d/0x120", "0x9d/0x120")
    assert splats.scan(other)[0].fingerprint == splats.scan(WARN)[0].fingerprint
    assert splats.scan(LOCKDEP)[0].fingerprint != splats.scan(WARN)[0].fingerprint


def test_hostile_console_is_bounded_and_cleaned():
    evil = "[ 1.0] BUG: \x1b[2J\x07unable to handle\n" * 500
    found = splats.scan(evil)
    assert len(found) == splats.MAX_SPLATS
    assert "\x1b" not in found[0].title and "\x07" not in found[0].title


def test_a_line_the_kernel_did_not_print_is_no_splat():
    """virtme-ng writes "WARNING: stdin/stdout/stderr not accessible ..."
    into the console on the host side, with no printk timestamp: it was
    reported as a (pre-existing) warning splat on every boot. A kernel line
    that follows a program's unfinished line still counts."""
    virtme = ("WARNING: stdin/stdout/stderr not accessible via /proc/self/fd, falling back "
              "to limited redirection (stderr may be lost).\n")
    assert splats.scan(CLEAN + virtme) == []
    mixed = "guest_tests/test_x.py::test_y [" + WARN.splitlines()[1] + "\n"
    (w,) = splats.scan(CLEAN + mixed)
    assert w.kind == "warning" and "folio_end_dropbehind" in w.title
    # Without timestamps anywhere (a kernel built without PRINTK_TIME),
    # every line may be the kernel's, as before.
    assert [s.kind for s in splats.scan("WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2\n")] == \
        ["warning"]
