"""`python -m orchestrator`: the same as the `orch` command."""

import sys

from orchestrator.cli import main

sys.exit(main())
