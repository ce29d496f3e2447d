"""orch's defaults in a file: the config file, and how flags, env and file rank.

The file is TOML, at $ORCH_CONFIG if set, else $XDG_CONFIG_HOME/orch/config.toml
(XDG_CONFIG_HOME defaulting to ~/.config), one flat table:

    lore_url = "https://lore.example.org"
    cache = "~/big-disk/orch"
    configs = ["base", "debug"]
    guest_timeout = 1800
    jobs = 8
    mail_from = "Your Name <you@example.org>"

Why TOML and not an `[orch]` section of git config, as b4 does: orch's
defaults belong to a user on a machine (one cache, one lore mirror, the
timeouts that host's speed needs), not to a kernel tree, and orch often runs
with no tree of the user's at all (the Debian tree). TOML has typed values
(floats, arrays of config names) and Python 3.11 reads it with the stdlib's
`tomllib`; git config would need a git repository and string parsing.

Precedence, per key: a command-line flag > the environment (only ORCH_CACHE,
for `cache`) > the file > the built-in default. Every command resolves them
so; `orch nightly`, `plan` and `job` (whose only such flag is --cache) then
let the night's NIGHTLY.toml override the lore and timeout keys
(nightly.config_file). A missing file at the default
place is fine; a file that $ORCH_CONFIG names must exist. Anything wrong in
the file is a BadInput of one line naming the file and the key: a bad file
must stop orch before it does minutes of work with a value the user did not
mean.
"""

from __future__ import annotations

import difflib
import email.headerregistry
import email.utils
import math
import os
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.core import cache_use, paths, sanitize
from orchestrator.core.errors import BadInput
from orchestrator.guest import vm
from orchestrator.kernel import build
from orchestrator.source import debsrc, intake, lore

DEFAULT = "default"
ENV_CACHE = "ORCH_CACHE"

# Each setting's kind, in the order --print-config shows them.
KINDS: dict[str, str] = {
    "lore_url": "text",
    "tree": "path",
    "debian_source": "text",
    "configs": "names",
    "cache": "path",
    "cache_max_size": "size",   # orch cache gc --max-size, the nightly's gc (store/gc.py)
    "cache_max_age": "age",     # orch cache gc --max-age
    "keep_nights": "count",     # the nightly's last nights whose kernels gc keeps (store/pins.py)
    "lore_timeout": "seconds",
    "guest_timeout": "seconds",
    "test_timeout": "seconds",
    "timeout": "seconds",
    "jobs": "count",
    "mail_from": "address",     # who `orch report --mail` writes from (mail_sender)
}
NAMES = tuple(KINDS)

# What each kind must be, as the error says it.
RULES: dict[str, str] = {
    "text": "a non-empty string",
    "path": "a non-empty string naming a path",
    "names": 'an array of config names, such as ["base", "debug"]',
    "seconds": "a positive number of seconds",
    "count": "a positive whole number",
    "size": cache_use.SIZE_RULE,
    "age": cache_use.AGE_RULE,
    "address": 'one mail address, such as "Your Name <you@example.org>"',
}
# A relative path in the file would mean something else in every directory
# orch is started from.
ABSOLUTE = "an absolute path or one starting with ~"

# The flag each setting comes from, where it is not --<name with dashes>.
FLAGS = {"configs": "--config", "cache_max_size": "--max-size", "cache_max_age": "--max-age"}

# What an empty default means, for --print-config.
MEANINGS = {"tree": "the debian_source tree", "configs": "kconfigs/matrix",
            "timeout": "no limit", "mail_from": "git's user.name and user.email"}


@dataclass(frozen=True)
class Setting:
    value: object
    source: str  # "default", "flag --guest-timeout", "env ORCH_CACHE", or the file's path


@dataclass(frozen=True)
class Settings:
    """Every setting's value, typed, built once per command (resolve()):
    what the command's options are made from. `effective` keeps where each
    came from, for --print-config."""
    lore_url: str
    tree: Path | None
    debian_source: str
    configs: list[str]
    cache: Path
    cache_max_size: int | str   # a size: cache_use.parse_size
    cache_max_age: str          # an age: cache_use.parse_age
    keep_nights: int
    lore_timeout: float
    guest_timeout: float
    test_timeout: float
    timeout: float | None
    jobs: int
    mail_from: str | None
    effective: Mapping[str, Setting] = field(repr=False, compare=False)


def resolve(flags: Mapping[str, object]) -> Settings:
    """The settings of this command: `flags` over the environment over the
    config file over the defaults (load()); the cache location takes effect
    for the whole command."""
    eff = load(flags)
    eff = {**eff, "lore_url": lore_base(eff["lore_url"])}
    apply_cache(eff)
    return Settings(**{name: s.value for name, s in eff.items()}, effective=eff)


def lore_base(s: Setting) -> Setting:
    """The lore_url setting in the one form every command hands to b4
    (lore.base_url): `https://lore.kernel.org/all/` is https://lore.kernel.org,
    so b4 never asks for /all/all/<id>; a URL orch cannot use is refused
    here, naming where it came from, before any work."""
    where = "--lore-url" if s.source.startswith("flag ") else f"{s.source}: lore_url"
    return Setting(lore.base_url(str(s.value), where), s.source)


def builtin() -> Settings:
    """orch's defaults alone, no flag, environment or file: what a library
    caller that resolved no settings runs with."""
    eff = {name: Setting(value, DEFAULT) for name, value in defaults().items()}
    return Settings(**{name: s.value for name, s in eff.items()}, effective=eff)


class _Broken(Exception):
    """A value breaks its kind's rule; the caller knows where it came from."""


def defaults() -> dict[str, object]:
    """The built-in defaults: the constants the modules that use them define."""
    return {
        "lore_url": intake.DEFAULT_LORE,
        "tree": None,  # Debian's linux-source tree (debian_source)
        "debian_source": debsrc.DEFAULT_PACKAGE,
        "configs": [],  # kconfigs/matrix
        "cache": paths.default_cache_dir(),
        "cache_max_size": "50G",
        "cache_max_age": "30d",
        "keep_nights": 7,
        "lore_timeout": intake.B4_TIMEOUT,
        "guest_timeout": vm.BOOT_TIMEOUT,
        "test_timeout": vm.TEST_TIMEOUT,
        "timeout": None,  # no limit on the whole run
        "jobs": build.jobs(),
        "mail_from": None,  # git's user.name and user.email (mail_sender)
    }


def config_path() -> Path:
    env = os.environ.get("ORCH_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "orch" / "config.toml"


def flag_name(name: str) -> str:
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def load(flags: Mapping[str, object]) -> dict[str, Setting]:
    """Every setting with its value and where it came from.

    `flags` holds what the user gave on the command line, keyed by setting
    name. None and an empty list count as not given: they are what argparse
    leaves for an option nobody used (`--config` appends to a list).
    """
    unknown = sorted(set(flags) - set(KINDS))
    if unknown:  # the caller's bug, not the user's
        raise ValueError(f"not settings: {', '.join(unknown)}")
    path = config_path()
    in_file = _read(path, named=bool(os.environ.get("ORCH_CONFIG")))
    env_cache = os.environ.get(ENV_CACHE)
    out: dict[str, Setting] = {}
    for name, default in defaults().items():
        given = flags.get(name)
        if given is not None and given != []:
            flag = flag_name(name)
            out[name] = Setting(_convert(name, given, flag, in_file=False), f"flag {flag}")
        elif name == "cache" and env_cache:
            out[name] = Setting(Path(env_cache), f"env {ENV_CACHE}")
        elif name in in_file:
            out[name] = Setting(in_file[name], str(path))
        else:
            out[name] = Setting(default, DEFAULT)
    return out


def apply_cache(settings: Mapping[str, Setting]) -> None:
    """Make paths.cache_dir() return the `cache` setting, for this command.

    Only a flag or the file is handed to paths: ORCH_CACHE and the default
    are what cache_dir() finds by itself, and leaving them to it keeps it
    following the environment as before.
    """
    s = settings["cache"]
    chosen = s.source not in (DEFAULT, f"env {ENV_CACHE}")
    paths.use_cache(Path(str(s.value)) if chosen else None)


def format_effective(settings: Mapping[str, Setting]) -> str:
    """`key = value  # source`, one line per setting, for `orch test --print-config`.

    Values are TOML, so the lines can be pasted into the config file. TOML
    has no null: a setting with no value is shown commented out.
    """
    rows = []
    for name, s in settings.items():
        source = s.source
        if source == DEFAULT and s.value in (None, []) and name in MEANINGS:
            source = f"{DEFAULT}: {MEANINGS[name]}"
        left = f"# {name} = none" if s.value is None else f"{name} = {_toml(s.value)}"
        rows.append((left, source))
    width = max((len(left) for left, _ in rows), default=0)
    return "\n".join(f"{left:<{width}}  # {source}" for left, source in rows)


def _read(path: Path, named: bool) -> dict[str, object]:
    """The file's settings, checked; {} when there is no file at the default place."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        if named:
            raise BadInput(f"{path}: no such config file (named by ORCH_CONFIG)")
        return {}
    except OSError as e:
        raise BadInput(f"{path}: cannot read the config file: {e.strerror}")
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})")
    except tomllib.TOMLDecodeError as e:  # its message has the line and column
        raise BadInput(f"{path}: not valid TOML: {_one_line(str(e))}")
    out: dict[str, object] = {}
    for key, value in data.items():
        if key not in KINDS:
            raise BadInput(f"{path}: unknown key {_toml(key)}{_hint(key)}")
        out[key] = _convert(key, value, f"{path}: {key}", in_file=True)
    return out


def _convert(name: str, value: object, where: str, in_file: bool) -> object:
    """`value` checked against `name`'s kind (paths `~`-expanded), or BadInput."""
    kind = KINDS[name]
    try:
        return _CHECKS[kind](value, in_file)
    except _Broken as e:
        raise BadInput(f"{where} must be {e}, not {_shown(value)}")


def _text(value: object, in_file: bool) -> str:
    if isinstance(value, str) and value:
        return value
    raise _Broken(RULES["text"])


def _path(value: object, in_file: bool) -> Path:
    # A flag's Path("") is ".": only a str can be empty, so test before converting.
    if not (isinstance(value, Path) or (isinstance(value, str) and value)):
        raise _Broken(RULES["path"])
    p = Path(value).expanduser()
    if in_file and not p.is_absolute():
        raise _Broken(ABSOLUTE)
    return p


def _names(value: object, in_file: bool) -> list[str]:
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
        return list(value)
    raise _Broken(RULES["names"])


def _seconds(value: object, in_file: bool) -> float:
    # bool is an int subclass: `timeout = true` must not mean one second.
    # TOML has inf and nan; neither is a timeout the waits below can use.
    if (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0):
        return value
    raise _Broken(RULES["seconds"])


def _count(value: object, in_file: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise _Broken(RULES["count"])


def _address(value: object, in_file: bool) -> str:
    # One line (a header is made of it), one address with a domain.
    if isinstance(value, str) and len(value) <= 200 and value.isprintable():
        pairs = email.utils.getaddresses([value])
        if len(pairs) == 1 and sanitize.MAIL_ADDR.fullmatch(pairs[0][1]):
            return value.strip()
    raise _Broken(RULES["address"])


def _size(value: object, in_file: bool) -> int | str:
    # Kept as given ("50G" reads better in --print-config than its bytes).
    try:
        cache_use.parse_size(value)
    except ValueError:
        raise _Broken(RULES["size"])
    return value.strip() if isinstance(value, str) else value


def _age(value: object, in_file: bool) -> str:
    try:
        cache_use.parse_age(value)
    except ValueError:
        raise _Broken(RULES["age"])
    return value.strip()


_CHECKS = {"text": _text, "path": _path, "names": _names, "seconds": _seconds,
           "size": _size, "age": _age,
           "count": _count, "address": _address}


def mail_sender(s: Settings) -> str | None:
    """Who a reply for the list is from (reports/mail_reply.py): the
    mail_from setting, else git's user.name and user.email as `git config`
    reads them here (as git send-email and b4 would), else None."""
    if s.mail_from:
        return s.mail_from
    name, addr = _git_config("user.name"), _git_config("user.email")
    if not addr:
        return None
    try:
        return _address(str(email.headerregistry.Address(name or "", addr_spec=addr)), False)
    except (_Broken, ValueError, IndexError, TypeError):
        return None


def _git_config(key: str) -> str:
    try:
        r = subprocess.run(["git", "config", "--get", key], capture_output=True, timeout=10,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return r.stdout.decode(errors="replace").strip() if r.returncode == 0 else ""


def _hint(key: str) -> str:
    close = difflib.get_close_matches(key, NAMES, n=1)
    if close:
        return f" (did you mean {close[0]}?)"
    return f" (known keys: {', '.join(NAMES)}; the file is one flat table, no [sections])"


def _toml(value: object) -> str:
    """`value` as a TOML value; str(value) for what TOML cannot say."""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # round-trips; inf and nan are TOML too
    if isinstance(value, (str, Path)):
        return _toml_string(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def _toml_string(s: str) -> str:
    # TOML basic strings forbid raw control characters (tab aside) and DEL;
    # json.dumps would let DEL through, hence the short loop.
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif (ch < " " and ch != "\t") or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _shown(value: object) -> str:
    """A wrong value as the error line quotes it: short, on one line."""
    if isinstance(value, dict):
        return "a table"
    text = _one_line(_toml(value))
    return text if len(text) <= 60 else text[:57] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())
