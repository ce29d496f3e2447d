"""The sandbox: untrusted builds and guests see an allowlisted view of the
host and an environment rebuilt from an allowlist, never orch's.

The canary tests place a secret in a file under $HOME, in /root and in an
environment variable of orch, run a series whose build step and guest test
(tests/data/canary) look for all three everywhere they can and print what
they find, and then search everything the run left and everything orch said.
Each is run once unconfined (--no-sandbox) as the control: there the canaries
must be found, or the search proves nothing. The real-kernel version is in
tests/test_sandbox_e2e.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import standin_guest
from helpers import CANARY_DIR, REPO, leaked, orch_standin, run_json, series

from orchestrator.core import proc, sandbox
from orchestrator.core.models import Kernel
from orchestrator.guest import vm
from orchestrator.kernel import buildtree


def test_writes_only_where_allowed(tmp_path):
    ok_dir, src = tmp_path / "build", tmp_path / "src"
    ok_dir.mkdir()
    src.mkdir()
    view = sandbox.View(readable=(src,), writable=(ok_dir,))
    r = sandbox.run(["sh", "-c", f"touch {ok_dir}/yes && touch {src}/no"], view, src, timeout=30)
    assert not r.ok and "Read-only file system" in r.output
    assert (ok_dir / "yes").exists() and not (src / "no").exists()
    r = sandbox.run(["touch", "/usr/orch-sandbox-test"], view, ok_dir, timeout=30)
    assert not r.ok and not Path("/usr/orch-sandbox-test").exists()


def test_has_no_network(lore_server):
    port = int(lore_server.url.rsplit(":", 1)[1].split("/")[0])
    # Reachable from here ...
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    code = (f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)")
    r = sandbox.run(["python3", "-c", code], sandbox.View(), Path("/"), timeout=30)
    # ... not from inside the sandbox: its own network namespace.
    assert not r.ok
    assert "Network is unreachable" in r.output or "Connection refused" in r.output


def test_a_step_sees_none_of_the_hosts_secrets(tmp_path, canaries):
    """The probe of the canary series' build step, run in a build's view
    and then unconfined: the control finds all three."""
    probe = CANARY_DIR / "probe.sh"
    view = sandbox.View(readable=(CANARY_DIR,), writable=(tmp_path / "out",))
    (tmp_path / "out").mkdir()
    confined = sandbox.run(["sh", str(probe)], view, tmp_path / "out", timeout=60)
    free = proc.run(["sh", str(probe)], cwd=tmp_path, timeout=120)
    assert "ORCH-CANARY-PROBE build: done" in confined.output, confined.output
    assert leaked(canaries, confined.output) == {}
    assert set(leaked(canaries, free.output)) == {"home", "root", "env"}, free.output[-2000:]
    # Its own pid namespace: no host process, so no /proc/<pid>/environ or
    # /proc/<pid>/root of orch's to read.
    pids = sandbox.run(["sh", "-c", "ls -d /proc/[0-9]*"], view, tmp_path, timeout=30).output
    assert len(pids.split()) <= 3, pids
    assert f"/proc/{os.getpid()}" not in pids.split()


def test_a_path_inside_a_hidden_directory_is_bound_alone(tmp_path, canaries):
    """The default cache is ~/.cache/orch: a build needs it, and nothing
    else of the home directory."""
    needed = Path(os.environ["HOME"]) / ".cache" / "orch"
    needed.mkdir(parents=True)
    (needed / "kernel").write_text("ok\n")
    view = sandbox.View(readable=(needed,))
    r = sandbox.run(["sh", "-c", f"cat {needed}/kernel; ls -a {os.environ['HOME']}; "
                     "cat $HOME/.orch-canary"], view, Path("/"), timeout=30)
    lines = r.output.splitlines()
    assert lines[:4] == ["ok", ".", "..", ".cache"], r.output   # no .orch-canary listed
    assert leaked(canaries, r.output) == {}


def test_the_environment_is_rebuilt_from_an_allowlist():
    host = {"PATH": "/root/bin:/usr/local/bin:/usr/bin:/opt/x/bin", "LANG": "C.UTF-8",
            "LC_TIME": "C", "SECRET_TOKEN": "x", "SSH_AUTH_SOCK": "/run/ssh", "HOME": "/root",
            "CCACHE_REMOTE_STORAGE": "redis://secret@host", "MAKEFLAGS": "-j99"}
    view = sandbox.View(readable=(Path("/opt/x"),), env={"MAKEFLAGS": " -j3"}, path=("/venv/bin",))
    env = sandbox.clean_env(view, host)
    assert env["PATH"].split(":")[:3] == ["/venv/bin", "/usr/local/bin", "/usr/bin"]
    assert "/root/bin" not in env["PATH"] and "/opt/x/bin" in env["PATH"]
    assert env["HOME"] == "/tmp" and env["MAKEFLAGS"] == " -j3"
    assert (env["LANG"], env["LC_TIME"]) == ("C.UTF-8", "C")
    assert not {"SECRET_TOKEN", "SSH_AUTH_SOCK", "CCACHE_REMOTE_STORAGE"} & set(env)


def test_a_build_runs_with_only_what_orch_sets(tmp_path, monkeypatch):
    """The builder's own make: the environment it gets is orch's variables
    and the locale, whatever this process holds."""
    from orchestrator.kernel import build
    monkeypatch.setenv("SECRET_TOKEN", "ORCH-CANARY-make")
    monkeypatch.setenv("CCACHE_PREFIX", "evil")
    (tmp_path / "b").mkdir()
    make = build._maker(buildtree.BuildDir(tmp_path / "b", tmp_path / "meta"), build.BuildOptions(),
                        build.build_env())
    # The maker adds -jN: it becomes $1 of the shell, not an argument of env.
    r = make(["sh", "-c", "env", "sh"], tmp_path / "log", tmp_path / "b")
    assert r.ok, r.output
    names = {l.split("=", 1)[0] for l in (tmp_path / "log").read_text().splitlines()[1:]}
    assert "SECRET_TOKEN" not in names and "CCACHE_PREFIX" not in names
    assert {"PATH", "HOME", "CCACHE_DIR", "CCACHE_DEPEND", "KBUILD_BUILD_USER"} <= names


def _fake_kernel(tmp_path) -> Kernel:
    img = tmp_path / "kernels" / "k" / "bzImage"
    img.parent.mkdir(parents=True)
    img.write_bytes(b"not booted here")
    return Kernel("base", img, img.parent / "config", False, 0, None, key="k", banner="Linux")


def test_the_guest_view_runs_the_suite_and_shows_no_secret(tmp_path, canaries):
    """vm.guest_view() is what vng and QEMU, and so the guest's 9p root,
    see. orch's own harness command (pytest from the venv, the guest
    plugin, a selected test) runs in it; the canary probe finds nothing."""
    probe = tmp_path / "sel" / "test_canary_probe.py"
    probe.parent.mkdir()
    shutil.copy2(CANARY_DIR / "guest_probe.py", probe)
    results = tmp_path / "results"
    results.mkdir()
    kernel = _fake_kernel(tmp_path)
    tests = [str(probe)]
    lines = standin_guest._harness(kernel, results, tests, 1, confined=True)
    assert (results / "harness-rc").read_text().strip() == "0", \
        (results / "harness.log").read_text()[-3000:]
    assert "ORCH-CANARY-PROBE guest" in (results / "canary.json").read_text()
    assert 'name="test_reads_the_hosts_secrets"' in (results / "junit.xml").read_text()
    assert leaked(canaries, results, "\n".join(lines)) == {}
    view = vm.guest_view(kernel, results, tests)
    # The view holds the venv, orch's package and the selected test, and
    # the parents of what it binds only as empty directories.
    ls = sandbox.run(["sh", "-c", f"ls -a {tmp_path}; ls /root; ls /home; ls /run; "
                      f"ls {Path(vm.__file__).parent}/vm.py; ls {sys.prefix}/bin/python"],
                     view, Path("/"), timeout=30).output.split()
    assert "home" not in ls and "vm.py" not in ls, ls
    # The guest's mount points are there, empty: without /sys a real guest
    # has no sysfs, so no configfs and no null_blk.
    r = sandbox.run(["sh", "-c", "for d in /sys /run /var/log; do "
                     "[ -d $d ] && [ -z \"$(ls -A $d)\" ] || echo missing $d; done"],
                    view, Path("/"), timeout=30)
    assert r.ok and "missing" not in r.output, r.output
    # virtme-ng's init finds no udevd (it would cost 10 s of every boot and
    # read every new disk into the page cache); the host has one.
    udevd = "for f in /usr/lib/systemd/systemd-udevd /lib/systemd/systemd-udevd; do " \
            "[ -e $f ] && echo found $f; done; true"
    assert "found" not in sandbox.run(["sh", "-c", udevd], view, Path("/"), timeout=30).output
    if Path("/usr/lib/systemd/systemd-udevd").exists():
        assert "found" in proc.run(["sh", "-c", udevd], timeout=30).output
    assert f"{Path(vm.__file__).parent}/vm.py" in ls and f"{sys.prefix}/bin/python" in ls
    # The control: the same harness unconfined finds all three.
    shutil.rmtree(results)
    results.mkdir()
    standin_guest._harness(kernel, results, tests, 1, confined=False)
    assert set(leaked(canaries, results)) == {"home", "root", "env"}


# The canary series on the stand-in tree, through `orch test` end to end:
# a real sandboxed build of the series' probe and the real guest harness
# (the stand-in guest with harness=True) in the guest's view.

def _canary_series(mini: Path, tmp_path: Path) -> Path:
    make = (mini / "Makefile").read_text()
    probe = "$(info $(shell sh $(srctree)/canary-probe.sh 2>&1))\n"
    return series(mini, tmp_path, "canary", [("mini: a build step that reads the host", {
        "canary-probe.sh": (CANARY_DIR / "probe.sh").read_text(),
        "Makefile": make.replace("CC ?= gcc\n", "CC ?= gcc\n" + probe, 1)})])


def _orch_test(tmp_path, env, mbox, mini, probe, rd, *extra):
    return orch_standin(tmp_path, env, "test", "--offline-mode", "--mbox", str(mbox), "--tree",
                        str(mini), "--config", "base", "--guest-test", str(probe),
                        "--run-dir", str(rd), *extra)


def test_canary_series_leaks_nothing_from_orch_test(tmp_path, mini, canaries):
    probe = tmp_path / "sel" / "test_canary_probe.py"
    probe.parent.mkdir()
    shutil.copy2(CANARY_DIR / "guest_probe.py", probe)
    mbox = _canary_series(mini, tmp_path)
    env = {**os.environ, "ORCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    rd = tmp_path / "run"
    r = _orch_test(tmp_path, env, mbox, mini, probe, rd)
    rec = run_json(rd)
    c = rec["configs"][0]
    # The build and the boot still work ...
    assert c["patched"]["build"]["status"] == "ok", r.stderr
    assert [t["status"] for t in c["patched"]["tests"]] == ["PASS"], r.stderr
    assert rec["verdict"] == "PASS", r.stderr
    # ... the probes ran and found nothing, anywhere a run leaves or says.
    assert "ORCH-CANARY-PROBE build: done" in (rd / "logs" / "build-base-patched.log").read_text()
    assert "ORCH-CANARY-PROBE guest" in (rd / "results" / "base" / "patched"
                                         / "canary.json").read_text()
    assert leaked(canaries, rd, r.stdout, r.stderr) == {}
    # The control: --no-sandbox leaks all three into the run directory.
    free = tmp_path / "run-free"
    r = _orch_test(tmp_path, env, mbox, mini, probe, free, "--no-sandbox")
    assert run_json(free)["verdict"] == "PASS", r.stderr
    found = leaked(canaries, free)
    assert set(found) == {"home", "root", "env"}, found
    assert any("build-base-patched.log" in w for w in found["env"])
    assert any("canary.json" in w for w in found["root"])


def test_boots_skip_virtiofs_when_the_host_has_no_usable_virtiofsd(tmp_path, monkeypatch):
    """virtme-ng waits 3.1 s per export for a virtiofsd that rejects its
    options (QEMU's old C one) before falling back to 9p; orch asks for 9p
    at once then, and only then."""
    from virtme import resources

    def fake(name, help_text):
        d = tmp_path / name
        d.mkdir()
        f = d / "virtiofsd"
        f.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && exit 0\necho '{help_text}'\n")
        f.chmod(0o755)
        return d

    monkeypatch.setattr(resources, "find_guest_tools", lambda: str(tmp_path / "none"))
    for d, usable in ((fake("rust", "--shared-dir <DIR>  --socket-path"), True),
                      (fake("c", "-o source=PATH  -o cache=<mode>"), False)):
        monkeypatch.setenv("PATH", f"{d}:/usr/bin:/bin")
        vm.virtiofs_unusable.cache_clear()
        why = vm.virtiofs_unusable()
        if usable:
            assert why is None
        else:
            assert why and str(d) in why
    vm.virtiofs_unusable.cache_clear()


def test_a_dev_kvm_only_root_may_open_is_no_kvm_for_the_sandboxed_qemu(monkeypatch):
    """Seen on a host whose /dev/kvm is crw------- root: the firmware probe
    (run by root) works, the guest's QEMU (nobody) could not open it."""
    import stat as st
    real = os.stat

    def fake(path, *a, **kw):
        if str(path) == "/dev/kvm":
            return os.stat_result((st.S_IFCHR | mode[0], 0, 0, 1, 0, 0, 0, 0, 0, 0))
        return real(path, *a, **kw)
    mode = [0o600]
    monkeypatch.setattr(vm.os, "stat", fake)
    monkeypatch.setattr(vm, "_probe_firmware", lambda: (True, "KVM works"))
    monkeypatch.setattr(sandbox, "as_root", lambda: True)
    ok, why = vm.probe_kvm()
    assert not ok and "root's alone" in why
    mode[0] = 0o660
    assert vm.probe_kvm() == (True, "KVM works")
