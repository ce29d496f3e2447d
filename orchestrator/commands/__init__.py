"""One module per `orch` subcommand; each has NAME, HELP, register(sub) and
main(args, argv). They compose the stages and own their records."""

from . import report, test

ALL = [test, report]
