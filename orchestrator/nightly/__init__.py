"""The nightly: its config file, what tonight tests (lore search,
series revisions), the night record and its cells, the SQLite history and
night-to-night comparisons. Imports run and below (never bisect)."""
