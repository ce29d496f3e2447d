"""What a guest leaves behind, and what it is shown (issue 25, items 6 and 8).

The guest is a kernel from a mailing list running as root; it writes its
results directory on the host over 9p, and orch keeps, caches, exports,
merges and publishes that directory. Each test is a real `orch test` (or
`orch merge`) on the stand-in tree with the stand-in guest running the
selected guest test for real, in vm.guest_view() (standin_guest,
harness=True), and a hostile guest test that does what such a kernel could:

  - leave links to a host secret and to /proc/self/environ, a FIFO, a device
    node, a setuid file and files over the quota in its results directory:
    after the boot the run holds regular files and directories only, within
    the quota, and says what was removed;
  - the same left in a shard's run directory (a tampered artifact), and run
    directories that lead out of the shard: `orch merge` copies regular
    files only and follows nothing;
  - read the files beside a selected guest test (a test kept in $HOME next
    to $HOME/.ssh): the guest is shown the selected file, not its directory.

Secrets are searched for as a CI artifact uploader would publish the run:
following links (never opening a FIFO or a device).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, TESTS_DIR, run_json, series
from test_fanout import NIGHT, planned  # noqa: F401 (the fixture)
from test_nightly import world  # noqa: F401 (the fixture under planned)

from orchestrator.fanout import job_run as job_cmd

# The quota of a guest's results directory (untrusted_tree.RESULTS).
FILE_CAP, TOTAL_CAP = 16 << 20, 64 << 20

ORCH_STANDIN = """\
import sys
sys.path[:0] = [{tests!r}, {repo!r}]
import standin_guest
standin_guest.install_globally(harness=True)
from orchestrator import cli
sys.exit(cli.main(sys.argv[1:]))
"""

# What a hostile kernel could leave in its results directory, from the
# guest's side. Device nodes need CAP_MKNOD, which a guest's 9p server
# should not have: a failure is fine, a node that is made must not stay.
HOSTILE = """\
import os, socket, stat

R = os.environ.get("ORCH_RESULTS", "")   # set in the guest, not at the host's collection
SECRET = {secret!r}


def _try(what, *args):
    try:
        what(*args)
    except OSError:
        pass


def _file(name, mode=0o644, size=0, text="x\\n"):
    with open(os.path.join(R, name), "w") as f:
        f.write(text)
        if size:
            f.truncate(size)
    os.chmod(os.path.join(R, name), mode)


def test_leaves_what_is_not_a_file():
    os.symlink(SECRET, f"{{R}}/secret-link")
    os.symlink("/proc/self/environ", f"{{R}}/environ-link")
    os.symlink(os.path.dirname(SECRET), f"{{R}}/dir-link")
    os.makedirs(f"{{R}}/links/deeper")
    os.symlink(SECRET, f"{{R}}/links/deeper/nested-link")
    os.mkfifo(f"{{R}}/fifo")
    _try(os.mknod, f"{{R}}/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    _try(socket.socket(socket.AF_UNIX).bind, f"{{R}}/sock")
    _file("suid", 0o6755, text="#!/bin/sh\\nid\\n")
    _file("world-writable", 0o666)
    _file("huge", size={huge})
    for i in range(5):
        _file(f"big{{i}}", size={big})
    os.makedirs(f"{{R}}/deep/" + "/".join(["d"] * 40))
    os.mkdir(f"{{R}}/many")
    for i in range(1100):
        _file(f"many/{{i}}")
    _file("marker", text="the hostile test ran\\n")
"""

# A guest test kept beside a secret, as one in $HOME is beside ~/.ssh.
PEEK = """\
import json, os

HERE = os.path.dirname(os.path.abspath(__file__))


def test_peeks_beside_itself(peek_marker):
    found = {"listing": sorted(os.listdir(HERE))}
    for p in (os.path.join(HERE, ".ssh", "id_rsa"), os.path.join(HERE, "id_rsa")):
        try:
            found[p] = open(p).read()
        except OSError as e:
            found[p] = "unreadable: " + str(e.strerror)
    print(found)
    with open(os.path.join(os.environ["ORCH_RESULTS"], "peek.json"), "w") as f:
        json.dump(found, f)
    with open(os.path.join(os.environ["ORCH_RESULTS"], "marker"), "w") as f:
        f.write(peek_marker)
"""
# pytest loads it for the test, on the host and in the guest.
PEEK_CONFTEST = """\
import pytest


@pytest.fixture
def peek_marker():
    return "the peeking test ran, with its conftest.py"
"""


def _secret(tmp_path: Path) -> tuple[Path, str]:
    """A host secret in a directory of its own: tmp_path/secrets/id_rsa."""
    text = f"ORCH-SECRET-{secrets.token_hex(8)}"
    d = tmp_path / "secrets"
    d.mkdir()
    (d / "id_rsa").write_text(text + "\n")
    return d / "id_rsa", text


def _orch_test(tmp_path: Path, mini: Path, probe: Path, rd: Path):
    """`orch test` of a harmless series on the stand-in tree, running
    `probe` as its guest test for real in the guest's view."""
    mbox = series(mini, tmp_path, "harmless", [("mini: a harmless change", {
        "harmless.c": "int harmless(void)\n{\n\treturn 0;\n}\n"})])
    script = tmp_path / "orch_standin.py"
    script.write_text(ORCH_STANDIN.format(tests=str(TESTS_DIR), repo=str(REPO)))
    env = {**os.environ, "ORCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(script), "test", "--offline-mode", "--mbox",
                           str(mbox), "--tree", str(mini), "--config", "base",
                           "--guest-test", str(probe), "--run-dir", str(rd)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def _not_plain(top: Path) -> list[str]:
    """Every entry under top that is not a directory or a regular file, or
    has a setuid, setgid or world-writable bit (never followed, never opened)."""
    bad = []
    for d, dirs, files in os.walk(top):
        for name in dirs + files:
            p = Path(d) / name
            st = p.lstat()
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                bad.append(f"{p.relative_to(top)}: {stat.filemode(st.st_mode)}")
            elif st.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH):
                bad.append(f"{p.relative_to(top)}: {stat.filemode(st.st_mode)}")
    return bad


def _published(top: Path) -> dict[str, bytes]:
    """What an artifact uploader that follows links would publish of top:
    each file it reaches, by the real path it read, and its bytes. FIFOs and
    devices are skipped, not opened (the uploader would hang)."""
    out: dict[str, bytes] = {}
    for d, _dirs, files in os.walk(top, followlinks=True):
        for name in files:
            p = Path(d) / name
            try:
                if stat.S_ISREG(p.stat().st_mode):
                    out[os.path.realpath(p)] = p.read_bytes()
            except OSError:
                continue
    return out


def _assert_publishes_nothing_of_the_host(top: Path, secret: str, *outputs: str) -> None:
    published = _published(top)
    outside = [p for p in published if not Path(p).is_relative_to(top.resolve())]
    assert outside == [], f"an uploader would publish files outside {top}: {outside}"
    assert [p for p, data in published.items() if secret.encode() in data] == []
    assert not any(secret in o for o in outputs)


def test_guest_output_that_is_not_a_file_is_removed_and_said(tmp_path, mini):
    secret_file, secret = _secret(tmp_path)
    probe = tmp_path / "sel" / "test_hostile.py"
    probe.parent.mkdir()
    probe.write_text(HOSTILE.format(secret=str(secret_file), huge=FILE_CAP + (4 << 20),
                                    big=15 << 20))
    rd = tmp_path / "run"
    r = _orch_test(tmp_path, mini, probe, rd)
    assert "Traceback" not in r.stderr, r.stderr
    rec = run_json(rd)
    c = rec["configs"][0]
    for side in ("baseline", "patched"):
        results = rd / "results" / "base" / side
        # The hostile test ran, and what it left that is a plain file stays ...
        assert [t["status"] for t in c[side]["tests"]] == ["PASS"], r.stderr
        assert (results / "marker").read_text() == "the hostile test ran\n"
        # ... and nothing else: no link, FIFO, device, socket or setuid file,
        # nothing over the quota.
        assert _not_plain(results) == []
        sizes = [f.stat().st_size for f in results.rglob("*") if f.is_file()]
        assert max(sizes) <= FILE_CAP and sum(sizes) <= TOTAL_CAP, sizes
        assert not (results / "huge").exists()
        # What was removed is said: in run.json (the first entries) and,
        # each of them, on stderr.
        assert "the guest's results directory held" in c[side]["boot"]["error"]
        said = next(l for l in r.stderr.splitlines()
                    if f"{side} config base: the guest's results directory held" in l)
        for what in ("secret-link: a symbolic link", "environ-link: a symbolic link",
                     "dir-link: a symbolic link", "links/deeper/nested-link: a symbolic link",
                     "fifo: a FIFO", "suid: setuid/setgid bit removed",
                     f"huge: {FILE_CAP + (4 << 20) >> 20} MiB, over the 16 MiB a file may hold",
                     "over the 64 MiB all files may hold",
                     "a directory nested deeper than 8, removed",
                     "over the 1000 entries a directory tree may hold, removed"):
            assert what in said, said
        assert not (results / "deep" / "/".join(["d"] * 8)).exists()
        assert len(list(results.rglob("*"))) <= 1000
    assert _not_plain(rd) == []
    _assert_publishes_nothing_of_the_host(rd, secret, r.stdout, r.stderr)


def test_a_selected_guest_test_is_shown_without_its_directory(tmp_path, mini):
    """A guest test kept in a home directory: the guest sees the file (and
    the conftest.py beside it, which pytest loads for it), not ~/.ssh."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    canary = f"ORCH-SSH-KEY-{secrets.token_hex(8)}"
    (home / ".ssh" / "id_rsa").write_text(canary + "\n")
    (home / "id_rsa").write_text(canary + "\n")
    (home / "conftest.py").write_text(PEEK_CONFTEST)
    probe = home / "test_peek.py"
    probe.write_text(PEEK)
    rd = tmp_path / "run"
    r = _orch_test(tmp_path, mini, probe, rd)
    rec = run_json(rd)
    for side in ("baseline", "patched"):
        results = rd / "results" / "base" / side
        assert [t["status"] for t in rec["configs"][0][side]["tests"]] == ["PASS"], r.stderr
        assert (results / "marker").read_text() == "the peeking test ran, with its conftest.py"
        peek = json.loads((results / "peek.json").read_text())
        assert peek["listing"] == ["conftest.py", "test_peek.py"], peek
    _assert_publishes_nothing_of_the_host(rd, canary, r.stdout, r.stderr)


# -- orch merge ------------------------------------------------------------------------


def _shards(planned, tmp_path, monkeypatch) -> tuple[Path, Path, str]:
    """The baseline shard, and a series shard with one cell; that cell's run_dir."""
    shards = tmp_path / "shards"
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "runner"))
    pdir = planned["pdir"]
    assert job_cmd.run_job(pdir, "b-mini-base", shards / "b-mini-base") == 0
    s = shards / "s-mini-base-2"
    assert job_cmd.run_job(pdir, "s-mini-base-2", s, [shards / "b-mini-base"]) == 0
    (cell,) = json.loads((s / "night.json").read_text())["cells"]
    assert (s / cell["run_dir"] / "run.json").is_file()
    return shards / "b-mini-base", s, cell["run_dir"]


def _merge(tmp_path: Path, out: Path, *shards: Path) -> subprocess.CompletedProcess:
    """`orch merge` as CI runs it. A FIFO it opens would block it for ever:
    the timeout makes that a failure, not a hang."""
    return subprocess.run([sys.executable, "-m", "orchestrator", "merge", *map(str, shards),
                           "--out", str(out)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def _copy_shard(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


def _set_run_dir(shard: Path, run_dir: str) -> None:
    night = json.loads((shard / "night.json").read_text())
    night["cells"][0]["run_dir"] = run_dir
    (shard / "night.json").write_text(json.dumps(night))


def test_merge_copies_regular_files_only(planned, tmp_path, monkeypatch):
    """A series shard whose cell run directory and plan mboxes hold links to
    a secret, a FIFO and a setuid file (a tampered artifact, or one an older
    orch kept from a guest): the merged night has the cell's files, none of
    those, and the secret nowhere."""
    secret_file, secret = _secret(tmp_path)
    base, shard, rel = _shards(planned, tmp_path, monkeypatch)
    cell = shard / rel
    os.symlink(secret_file, cell / "secret-link")
    os.symlink(secret_file.parent, cell / "logs" / "dir-link")
    os.symlink("/proc/self/environ", cell / "results" / "environ-link")
    os.mkfifo(cell / "fifo")
    (cell / "suid").write_text("#!/bin/sh\n")
    (cell / "suid").chmod(0o4755)
    for d in (base, shard):   # merge takes the plan from the first shard it reads
        os.symlink(secret_file, d / "series" / "evil.mbox")
    out = tmp_path / "merged"
    r = _merge(tmp_path, out, base, shard)
    _assert_publishes_nothing_of_the_host(out, secret, r.stdout, r.stderr)
    assert _not_plain(out / "nights") == []   # out/latest is orch's own link into it
    assert "Traceback" not in r.stderr
    assert r.returncode == 7, r.stderr   # s-mini-base-1 was not run: incomplete
    night = out / "nights" / NIGHT
    assert (night / rel / "run.json").is_file()
    cells = json.loads((night / "night.json").read_text())["cells"]
    assert [c["status"] for c in cells if c["run_dir"] == rel] == ["PASS"]
    # What was left out is said.
    assert "secret-link: a symbolic link, left out" in r.stderr
    assert "fifo: a FIFO, left out" in r.stderr
    assert "evil.mbox: a symbolic link, left out" in r.stderr


def _tamper(case: str, shard: Path, rel: str, secret_file: Path) -> None:
    """Make the shard's one cell lead out of it. The shard is
    tmp/case/shards/s-mini-base-2, the secret tmp/secrets/id_rsa."""
    if case == "climbs":
        _set_run_dir(shard, "../../../secrets")
    elif case == "absolute":
        _set_run_dir(shard, str(secret_file.parent))
    elif case == "a link":
        shutil.rmtree(shard / rel)
        os.symlink(secret_file.parent, shard / rel)
    elif case == "a link on the way":
        # cells/ a link to a directory holding one of the cell's name
        elsewhere = secret_file.parent.parent / "elsewhere"
        (elsewhere / Path(rel).name).mkdir(parents=True)
        shutil.copy(secret_file, elsewhere / Path(rel).name / "id_rsa")
        shutil.rmtree(shard / Path(rel).parent)
        os.symlink(elsewhere, shard / Path(rel).parent)


@pytest.mark.parametrize("case", ["climbs", "absolute", "a link", "a link on the way"])
def test_merge_follows_no_run_dir_out_of_its_shard(case, planned, tmp_path, monkeypatch):
    """A cell whose run_dir climbs out of the shard, is absolute, is a link
    or has one on its way: nothing outside the shard is copied (or removed),
    nothing is written outside --out, and it is said."""
    secret_file, secret = _secret(tmp_path)
    base, pristine, rel = _shards(planned, tmp_path, monkeypatch)
    shard = _copy_shard(pristine, tmp_path / "case" / "shards" / "s-mini-base-2")
    _tamper(case, shard, rel, secret_file)
    out = tmp_path / "case" / "merged"
    r = _merge(tmp_path, out, base, shard)
    assert "Traceback" not in r.stderr, r.stderr
    _assert_publishes_nothing_of_the_host(out, secret, r.stdout, r.stderr)
    assert sorted(p.name for p in out.parent.iterdir()) == ["merged", "shards"]
    assert secret_file.read_text() == secret + "\n"
    assert _not_plain(out / "nights") == []
    assert r.returncode == 7, r.stderr   # s-mini-base-1 was not run: incomplete
    assert "its run directory is not taken" in r.stderr, r.stderr


def test_merge_does_not_follow_a_shard_that_is_a_link(planned, tmp_path, monkeypatch):
    """A shard (a downloaded artifact) that is itself a link is not read,
    and is named as not read."""
    base, pristine, _rel = _shards(planned, tmp_path, monkeypatch)
    link = tmp_path / "link-shards" / "s-mini-base-2"
    link.parent.mkdir()
    os.symlink(pristine, link)
    r = _merge(tmp_path, tmp_path / "merged", base, link)
    assert "Traceback" not in r.stderr, r.stderr
    assert f"a shard could not be read: {link}: a symbolic link, not followed" in r.stderr
    # Its cells are the night's missing ones, not taken from where it leads.
    night = json.loads((tmp_path / "merged" / "nights" / NIGHT / "night.json").read_text())
    assert [c["status"] for c in night["cells"]] == ["ERROR", "ERROR"]
