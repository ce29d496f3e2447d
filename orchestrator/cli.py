"""The `orch` command: argument parsing and exit statuses, nothing more."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from . import __version__, build, debsrc, intake, pipeline, report, vm
from .errors import BadInput, Exit, OrchError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own exit status is 2 too
        print(f"orch: error: {message}", file=sys.stderr)
        sys.exit(int(Exit.BAD_INPUT))


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="orch", description="Build and boot-test a kernel patch series "
                "from lore against its unpatched baseline.")
    p.add_argument("--version", action="version", version=f"orch {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    t = sub.add_parser("test", help="test a series: baseline vs patched")
    t.add_argument("msgid", nargs="?", help="Message-ID (or lore URL) of any mail of the series")
    t.add_argument("--mbox", type=Path, help="read the series from a local mbox")
    t.add_argument("--lore-url", default=intake.DEFAULT_LORE, help="lore base URL (a mirror)")
    t.add_argument("--lore-timeout", type=float, default=intake.B4_TIMEOUT,
                   help="seconds b4 may take to fetch the series (default: %(default)s)")
    t.add_argument("--offline-mode", dest="offline", action="store_true",
                   help="no network: with --mbox, b4 looks nothing up")
    t.add_argument("--latest", action="store_true",
                   help="test the newest revision b4 finds, not the one named")
    t.add_argument("--tree", type=Path, help="kernel git tree (default: Debian's linux-source)")
    t.add_argument("--debian-source", default=debsrc.DEFAULT_PACKAGE,
                   help="Debian package of the default tree (default: %(default)s)")
    t.add_argument("--base", help="base commit/ref when the tree lacks the series' base-commit")
    t.add_argument("--config", action="append", default=[], dest="configs",
                   help="config from kconfigs/ (repeatable; default: kconfigs/matrix)")
    t.add_argument("--run-dir", type=Path, help="where results and logs go "
                   "(default: orch-runs/<time>-<msgid>)")
    t.add_argument("--json", type=Path, dest="json_out", help="also write run.json here")
    t.add_argument("--guest-timeout", type=float, default=vm.BOOT_TIMEOUT,
                   help="seconds for one boot + guest tests (default: %(default)s)")
    t.add_argument("--guest-test", action="append", dest="guest_tests",
                   help="run only this guest test (pytest node id; repeatable)")
    t.add_argument("--test-timeout", type=float, default=vm.TEST_TIMEOUT,
                   help="seconds for one guest test; a hung test fails and the suite "
                   "goes on (default: %(default)s)")
    t.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run each guest test N times in the same boot; a test whose runs "
                   "differ is FLAKY, a failure (default: %(default)s)")
    t.add_argument("--timeout", type=float, default=None,
                   help="seconds for the whole run (default: none)")
    t.add_argument("--each-patch", action="store_true",
                   help="also build after every patch of the series and name the first "
                   "one that breaks the build")
    t.add_argument("--build-only", action="store_true",
                   help="stop after the builds (and the warning diff): no boots")
    t.add_argument("--rerun-baseline", action="store_true",
                   help="boot the baseline even when this kernel's results with this "
                   "suite are kept from an earlier run")
    t.add_argument("--jobs", "-j", type=int, default=build.jobs(),
                   help="make jobs shared by all concurrent builds (default: %(default)s)")
    t.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                   help="build without bubblewrap (network and all files reachable: "
                   "only for series you trust)")

    r = sub.add_parser("report", help="print the summary of a run directory again")
    r.add_argument("run_dir", type=Path)
    return p


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        if args.cmd == "report":
            return _report(args.run_dir)
        return _test(args, argv)
    except OrchError as e:
        print(f"orch: error: {e}", file=sys.stderr)
        return int(e.exit)
    except KeyboardInterrupt:
        print("orch: interrupted", file=sys.stderr)
        return int(Exit.INTERRUPTED)
    except Exception as e:  # a bug or an unforeseen failure: still one line
        import traceback
        crash = Path(os.environ.get("TMPDIR", "/tmp")) / f"orch-crash-{os.getpid()}.txt"
        crash.write_text(traceback.format_exc())
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"orch: error: internal error: {type(e).__name__}: {first[:200]} "
              f"(traceback in {crash})", file=sys.stderr)
        return int(Exit.INFRA)


def _test(args, argv: list[str]) -> int:
    if args.msgid is None and args.mbox is None:
        raise BadInput("give a Message-ID or --mbox FILE")
    msgid = intake.normalize_msgid(args.msgid) if args.msgid else None
    opts = pipeline.Options(msgid=msgid, mbox=args.mbox, lore_url=args.lore_url,
                            lore_timeout=args.lore_timeout,
                            offline=args.offline, latest=args.latest, tree=args.tree,
                            base=args.base, debian_package=args.debian_source,
                            configs=args.configs, run_dir=args.run_dir,
                            json_out=args.json_out, guest_timeout=args.guest_timeout,
                            guest_tests=args.guest_tests, test_timeout=args.test_timeout,
                            repeat=args.repeat,
                            timeout=args.timeout, each_patch=args.each_patch,
                            build_only=args.build_only, rerun_baseline=args.rerun_baseline,
                            sandbox=args.sandbox, jobs=args.jobs, argv=["orch", *argv])
    for name, value in (("--lore-timeout", args.lore_timeout),
                        ("--guest-timeout", args.guest_timeout), ("--test-timeout",
                        args.test_timeout), ("--timeout", args.timeout), ("--jobs", args.jobs),
                        ("--repeat", args.repeat)):
        if value is not None and value <= 0:
            raise BadInput(f"{name} must be positive")
    opts.run_dir = opts.run_dir or pipeline.default_run_dir(opts)
    try:
        return pipeline.test(opts)
    finally:
        run_json = opts.run_dir / "run.json"
        if run_json.exists():
            print(report.summary(json.loads(run_json.read_text())), file=sys.stderr)
            print(f"run directory: {opts.run_dir}", file=sys.stderr)


def _report(run_dir: Path) -> int:
    f = run_dir / "run.json"
    try:
        rec = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise BadInput(f"cannot read {f}: {e}")
    print(report.summary(rec))
    return int(rec.get("exit_code") or 0)


if __name__ == "__main__":
    sys.exit(main())
