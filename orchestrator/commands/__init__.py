"""One module per `orch` subcommand; each has NAME, HELP, register(sub) and
main(args, argv). They compose the stages and own their records."""

from orchestrator.commands import bisect, check, job, merge, nightly, plan, report, test

ALL = [test, bisect, check, nightly, plan, job, merge, report]
