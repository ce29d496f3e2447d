# TEMPORARY stand-in until the settings module lands (helper branch cfg).
from __future__ import annotations
from dataclasses import dataclass
from . import build, debsrc, intake, vm


@dataclass(frozen=True)
class Setting:
    value: object
    source: str


def defaults():
    return {"lore_url": intake.DEFAULT_LORE, "tree": None, "debian_source": debsrc.DEFAULT_PACKAGE,
            "configs": [], "cache": None, "lore_timeout": intake.B4_TIMEOUT,
            "guest_timeout": vm.BOOT_TIMEOUT, "test_timeout": vm.TEST_TIMEOUT, "timeout": None,
            "jobs": build.jobs()}


def load(flags):
    out = {k: Setting(v, "default") for k, v in defaults().items()}
    for k, v in flags.items():
        out[k] = Setting(v, "flag")
    return out


def apply_cache(eff):
    pass


def format_effective(eff):
    return "\n".join(f"{k} = {s.value!r}  ({s.source})" for k, s in eff.items())
