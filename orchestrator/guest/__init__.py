"""Booting a built kernel under virtme-ng and reading what the guest
wrote: the guest test selection, the pytest plugin the guest runs, its
JUnit, console marks and splats, and kept results. Imports core and kernel."""
