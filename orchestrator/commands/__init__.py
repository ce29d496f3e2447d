"""One module per `orch` subcommand; each has NAME, HELP, register(sub) and
main(args, argv): its flags, turned into its engine's options and one call
of the engine (run, bisect, fanout). No command imports another (pyproject's
independence contract); common.py is the flag groups they share."""

from orchestrator.commands import (bisect, cache, check, job, merge, nightly, plan, report,
                                   runs, test)

ALL = [test, bisect, check, nightly, plan, job, merge, report, runs, cache]
