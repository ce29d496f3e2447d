"""Configuring and building a kernel: Kconfig fragments, the build
directory and its copy-on-write layers, ccache and its guard, the finished
kernel's image checks, compiler warnings. Imports only core."""
