"""The `orch` command: parse, dispatch to commands/, and turn every failure
into one line and an exit status. Nothing else."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import traceback

from orchestrator import __version__, commands
from orchestrator.commands import common
from orchestrator.core import exits
from orchestrator.core.errors import Exit, OrchError


def parser() -> common.Parser:
    p = common.Parser(prog="orch", description="Build and boot-test a kernel patch series "
                      "from lore against its unpatched baseline.",
                      **common.parser_kwargs(exits.epilog()))
    p.add_argument("--version", action="version", version=f"orch {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True,
                           parser_class=common.Parser)
    for cmd in commands.ALL:
        cmd.register(sub)
    return p


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def _status(e: BaseException) -> int:
    """orch's exit status for what stopped a command."""
    if isinstance(e, OrchError):
        return int(e.exit)
    return int(Exit.INTERRUPTED if isinstance(e, KeyboardInterrupt) else Exit.INFRA)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:
        # Under `git bisect run`, 2 would mean "bad": a bad `orch check`
        # invocation must stop the bisect instead.
        if argv[:1] == ["check"] and e.code not in (0, None):
            return int(exits.GitBisect.BAD_INPUT)
        raise
    signal.signal(signal.SIGTERM, _sigterm)
    # A command whose status others read by other rules (orch check: git
    # bisect run's) says what each failure exits with.
    status = getattr(args, "stopped", _status)
    try:
        return args.run(args, argv)
    except OrchError as e:
        print(f"orch: error: {e}", file=sys.stderr)
        return status(e)
    except KeyboardInterrupt as e:
        print("orch: interrupted", file=sys.stderr)
        return status(e)
    except BrokenPipeError:
        # `orch runs | head`: the reader has what it wanted. No error line
        # (stderr is usually the same terminal), and stdout goes to
        # /dev/null so Python's flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return status(KeyboardInterrupt())
    except Exception as e:  # a bug or an unforeseen failure: still one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"orch: error: internal error: {type(e).__name__}: {first[:200]} "
              f"({_keep_traceback()})", file=sys.stderr)
        return status(e)


def _keep_traceback() -> str:
    # A new file of its own (O_EXCL, 0600): orch runs as root in CI, and a
    # predictable name in a shared /tmp would let anyone plant a link there
    # and have the traceback written through it.
    where = os.environ.get("TMPDIR", "/tmp")
    try:
        fd, crash = tempfile.mkstemp(prefix="orch-crash-", suffix=".txt", dir=where)
        with os.fdopen(fd, "w") as f:
            f.write(traceback.format_exc())
    except OSError as e:      # not even that: the line is all there is
        return f"no traceback kept in {where}: {e.strerror}"
    return f"traceback in {crash}"


if __name__ == "__main__":
    sys.exit(main())
