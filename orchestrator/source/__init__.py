"""Getting what is tested: the series (b4, mboxes, patch ids), the
kernel tree (a git repository or a Debian source package) and its
workspace. Imports core, and kernel for the workspace's build directories."""
