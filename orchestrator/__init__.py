"""orch: build and test a kernel patch series from lore against its baseline."""

__version__ = "0.1.0"
