"""proc.run against real children: the log (its command line, its cap),
the tail kept for messages, lines as they come, stdin, the environment,
timeouts and interrupts killing the child's whole process group."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from orchestrator.core import proc

PY = sys.executable


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not yet reaped by its new parent) no longer runs.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_log_starts_with_the_command_and_holds_all_output(tmp_path):
    log = tmp_path / "sub" / "log"
    r = proc.run(["sh", "-c", "echo out; echo err >&2; exit 3"], log=log)
    assert (r.returncode, r.timed_out, r.ok) == (3, False, False)
    assert log.read_text() == "$ sh -c echo out; echo err >&2; exit 3\nout\nerr\n"
    assert r.output == "out\nerr\n" and r.log == log


def test_append_keeps_what_the_log_held(tmp_path):
    log = tmp_path / "log"
    log.write_text("before\n")
    proc.run(["echo", "one"], log=log, append=True)
    assert log.read_text() == "before\n$ echo one\none\n"
    proc.run(["echo", "two"], log=log)
    assert log.read_text() == "$ echo two\ntwo\n"


def test_the_log_is_capped_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(proc, "MAX_LOG", 1000)
    log = tmp_path / "log"
    script = ("import sys; "
              "[(sys.stdout.write('x' * 99 + '\\n'), sys.stdout.flush()) for _ in range(50)]")
    r = proc.run([PY, "-c", script], log=log)
    assert log.read_text() == f"$ {PY} -c {script}\n" + ("x" * 99 + "\n") * 10 + \
        "\n[orch: log truncated]\n"
    assert r.ok and len(r.output) == 5000     # the tail is not capped by the log's cap


def test_output_without_a_log_is_whole_with_one_only_its_tail(tmp_path):
    script = f"import sys; sys.stdout.write('a' * {proc.TAIL} + 'b' * 100)"
    assert proc.run([PY, "-c", script]).output == "a" * proc.TAIL + "b" * 100
    logged = proc.run([PY, "-c", script], log=tmp_path / "log").output
    assert logged == "a" * (proc.TAIL - 100) + "b" * 100


def test_on_line_sees_each_line_once_however_it_is_cut():
    seen: list[str] = []
    script = ("import sys, time\n"
              "for part in ('one\\ntw', 'o\\nthr', 'ee\\n', 'no newline'):\n"
              "    sys.stdout.write(part); sys.stdout.flush(); time.sleep(0.05)\n")
    r = proc.run([PY, "-c", script], on_line=seen.append)
    assert seen == ["one", "two", "three"] and r.output.endswith("no newline")


def test_a_failing_display_does_not_break_the_run():
    calls = []

    def display(line: str) -> None:
        calls.append(line)
        raise RuntimeError("display bug")
    r = proc.run(["printf", "a\\nb\\n"], on_line=display)
    assert r.ok and calls == ["a", "b"] and r.output == "a\nb\n"


def test_input_reaches_stdin_and_without_it_stdin_is_empty():
    assert proc.run(["cat"], input=b"given\n").output == "given\n"
    assert proc.run(["cat"], timeout=10).output == ""
    # A child that never reads its input: no BrokenPipeError reaches the caller.
    assert proc.run(["true"], input=b"x" * (1 << 20)).ok


def test_environment_inherited_or_only_what_is_given(monkeypatch):
    monkeypatch.setenv("ORCH_TEST_HOST", "host")
    show = [PY, "-c",
            "import os; print(sorted(k for k in os.environ if k.startswith('ORCH_TEST')))"]
    assert proc.run(show, env={"ORCH_TEST_SET": "1"}).output == \
        "['ORCH_TEST_HOST', 'ORCH_TEST_SET']\n"
    assert proc.run(show, env={"ORCH_TEST_SET": "1"}, inherit_env=False).output == \
        "['ORCH_TEST_SET']\n"


def test_a_timeout_kills_the_whole_process_group(tmp_path):
    script = "sleep 300 & echo $!; sleep 300"
    t0 = time.monotonic()
    r = proc.run(["sh", "-c", script], timeout=1)
    assert r.timed_out and not r.ok and time.monotonic() - t0 < 30
    grandchild = int(r.output.split()[0])
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_a_leader_that_exits_leaves_no_child_holding_the_pipe():
    """Its background child keeps stdout open: run returns anyway, and the
    child is gone."""
    t0 = time.monotonic()
    r = proc.run(["sh", "-c", "sleep 300 & echo $!"], timeout=60)
    assert r.ok and time.monotonic() - t0 < 30
    grandchild = int(r.output.split()[0])
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_kill_all_interrupts_a_worker_thread_and_is_not_a_failure():
    got: dict = {}

    def worker() -> None:
        try:
            got["result"] = proc.run(["sleep", "300"])
        except KeyboardInterrupt:
            got["interrupted"] = True
    t = threading.Thread(target=worker)
    t.start()
    deadline = time.monotonic() + 10
    while not proc._live and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill_all()
    t.join(timeout=30)
    assert got == {"interrupted": True}
    assert not proc._live and not proc._killed
    # Only the children it killed: the next one runs as usual.
    assert proc.run(["false"]).returncode == 1
