"""One series against its baseline: the build and boot stages, the
verdict, the run record (run.json) and its settings. Imports the subsystems
below it (guest, source, kernel, core), never a command or a report."""
