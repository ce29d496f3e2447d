"""Hermetic git and b4: untrusted patches meet none of the user's settings.

A series from a mailing list goes through b4 and then `git am` in a worktree
linked to the user's repository. Left alone, git and b4 would read the
system's, the user's (~/.gitconfig, $XDG_CONFIG_HOME/git/config and
attributes) and the repository's configuration, and run hooks from
.git/hooks or core.hooksPath. Much of that runs commands on orch's behalf
(hooks, core.fsmonitor, filter drivers that a patch's .gitattributes can
name, gpg, b4's check commands) or changes whether and how a patch applies
(am.threeWay, apply.whitespace=fix, core.autocrlf, ...): the same series
could apply on one machine and not on another, or run code while orch only
meant to apply text.

So every git and b4 process orch starts gets this environment:
- no system or global config or attributes (GIT_CONFIG_NOSYSTEM,
  GIT_CONFIG_GLOBAL=/dev/null, GIT_ATTR_NOSYSTEM, core.attributesFile), and
  no `git -c` inherited from a calling git (GIT_CONFIG_PARAMETERS);
- the repository's own config cannot be switched off, so the keys that matter
  are set through GIT_CONFIG_COUNT/KEY/VALUE, which beats every config file:
  hooks off (core.hooksPath=/dev/null), the rest at git's defaults, and
  every filter driver the repository defines emptied (`filter_overrides`);
- b4 runs where git finds no repository (GIT_CEILING_DIRECTORIES), so no
  repository config or .b4-config applies; on its command line, attestation
  (gpg, ssh-keygen, DNS, keyrings read from the repository) is off and the
  per-patch check commands are empty.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

# Config that runs commands or changes how a patch applies, at git's default
# (or off). Values git reads from files lose to these.
GIT_CONFIG: dict[str, str] = {
    "core.hooksPath": "/dev/null",      # no hook runs: hooks/<name> is never found
    "core.fsmonitor": "false",          # a path here is a command git runs
    "core.attributesFile": "/dev/null",  # the user's attributes (filter=, eol=, whitespace=)
    "core.autocrlf": "false",
    "core.eol": "native",
    "core.safecrlf": "warn",
    "core.whitespace": "",              # empty = git's default rules
    "am.threeWay": "false",
    "am.keepcr": "false",
    "am.messageid": "false",
    "apply.whitespace": "warn",
    "apply.ignoreWhitespace": "no",
    "mailinfo.scissors": "false",
    "mailinfo.quotedCr": "warn",
    "i18n.commitEncoding": "UTF-8",
    "commit.gpgSign": "false",
    "rerere.enabled": "false",
    "submodule.recurse": "false",
}

BASE_ENV: dict[str, str] = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_CONFIG_PARAMETERS": "",        # read after GIT_CONFIG_COUNT: it would win
}

# b4 settings (b4 0.16) that run commands; set on b4's command line, which
# beats any config. b4 reads the check commands only with `am -k`, which orch
# never passes; empty rather than a harmless command, so that nothing runs.
B4_CONFIG: dict[str, str] = {
    "b4.attestation-policy": "off",     # gpg/ssh-keygen (b4.gpgbin, gpg.program), DNS
    "b4.am-perpatch-check-cmd": "",
    "b4.prep-perpatch-check-cmd": "",
}


def config_env(config: Mapping[str, str]) -> dict[str, str]:
    """`git -c` for every git process started with this environment."""
    env = {"GIT_CONFIG_COUNT": str(len(config))}
    for i, (k, v) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = k
        env[f"GIT_CONFIG_VALUE_{i}"] = v
    return env


def filter_overrides(repo: Path) -> dict[str, str]:
    """Empty every filter driver the repository's config defines: a patch can
    add a .gitattributes naming one, and git would run it on apply and checkout."""
    r = subprocess.run(["git", "-C", str(repo), "config", "-z", "--name-only",
                        "--get-regexp", r"^filter\."],
                       env={**os.environ, **BASE_ENV}, capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    out: dict[str, str] = {}
    for key in r.stdout.decode(errors="surrogateescape").split("\0"):
        parts = key.split(".")
        if len(parts) < 3:
            continue
        driver = ".".join(parts[1:-1])
        for k in ("clean", "smudge", "process"):
            out[f"filter.{driver}.{k}"] = ""
        out[f"filter.{driver}.required"] = "false"
    return out


def git_env(repo: Path | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for orch's git processes (in `repo`, when given)."""
    config = {**GIT_CONFIG, **(filter_overrides(repo) if repo else {}), **(extra or {})}
    return {**BASE_ENV, **config_env(config)}


def b4_env(cwd: Path) -> dict[str, str]:
    """Environment for b4 run in `cwd`: git finds no repository from there,
    and `git config` (how b4 reads b4.*, gpg.*, user.*) reads nothing."""
    parent = str(Path(cwd).resolve().parent)
    return {**git_env(), "GIT_CEILING_DIRECTORIES": parent, "GIT_CONFIG": "/dev/null"}


def b4_args() -> list[str]:
    """Options for b4 itself (before the subcommand)."""
    return [a for k, v in B4_CONFIG.items() for a in ("-c", f"{k}={v}")]
