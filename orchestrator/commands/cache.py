"""`orch cache du|gc`: what orch's cache holds, and trimming it (store)."""

from __future__ import annotations

import argparse
import json
import os

from orchestrator.commands import common
from orchestrator.core import cache_use, exits, paths
from orchestrator.core.errors import BadInput, Exit
from orchestrator.run import settings
from orchestrator.store import gc, usage

NAME = "cache"
HELP = "show what orch's cache holds (du) and trim it (gc)"
EPILOG = exits.epilog(NAME)
DU_HELP = "the room each kind of entry takes, how many there are, when they were last used"
GC_HELP = ("remove entries not used within --max-age, then the least recently used until "
           "the cache is under --max-size; never one a running orch holds or the nightly's "
           "last nights keep")


def register(sub) -> None:
    p = sub.add_parser(NAME, help=HELP, description=HELP + ".", **common.parser_kwargs(EPILOG))
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                            parser_class=common.Parser)
    du = acts.add_parser("du", help=DU_HELP, description=DU_HELP + ".",
                         **common.parser_kwargs(EPILOG))
    common.add_cache(du)
    du.add_argument("--json", action="store_true", help="print JSON instead of the table")
    g = acts.add_parser("gc", help=GC_HELP, description=GC_HELP + ".",
                        **common.parser_kwargs(EPILOG))
    common.add_cache(g)
    g.add_argument("--max-size", metavar="SIZE",
                   help="the cap: 10G, 500M, 1.5T or bytes; 0 removes every entry that is "
                   "not held or pinned " + common.file_default("cache_max_size"))
    g.add_argument("--max-age", metavar="AGE",
                   help="remove what was not used within AGE: 30d, 12h, 2w "
                   + common.file_default("cache_max_age"))
    g.add_argument("--keep-nights", type=int, metavar="N",
                   help="keep the kernels, kselftests and kept results of each nightly's "
                   "last N nights " + common.file_default("keep_nights"))
    g.add_argument("--dry-run", action="store_true",
                   help="say what would be removed, remove nothing (default: remove)")
    g.add_argument("--json", action="store_true", help="print JSON instead of lines")
    p.set_defaults(run=main)


def main(args: argparse.Namespace, argv: list[str]) -> int:
    s = settings.resolve({"cache": args.cache,
                          **({"cache_max_size": args.max_size, "cache_max_age": args.max_age,
                              "keep_nights": args.keep_nights} if args.action == "gc" else {})})
    cache = _usable(paths.cache_dir(), s)
    if args.action == "du":
        try:
            u = usage.scan(cache)
        except OSError as e:
            raise BadInput(f"cannot read the cache {cache}: {e.strerror or e}")
        print(json.dumps(usage.as_json(u), indent=1) if args.json else usage.text(u))
        return Exit.OK
    rep = gc.run(cache, max_size=cache_use.parse_size(s.cache_max_size),
                 max_age=cache_use.parse_age(s.cache_max_age), keep_nights=s.keep_nights,
                 dry_run=args.dry_run)
    print(json.dumps(gc.as_json(rep), indent=1) if args.json else gc.text(rep))
    return Exit.INFRA if rep.failed else Exit.OK


def _usable(cache, s: settings.Settings):
    """The cache directory: one that does not exist yet is empty; anything
    but a directory is the user's input to fix."""
    where = {"flag --cache": "--cache", f"env {settings.ENV_CACHE}": f"{settings.ENV_CACHE}="}
    what = where.get(s.effective["cache"].source, "cache")
    try:
        os.stat(cache)
    except FileNotFoundError:
        return cache
    except OSError as e:
        raise BadInput(f"{what} {cache}: {e.strerror}")
    return paths.readable_dir(cache, what)
