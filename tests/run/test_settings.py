"""The config file and how flags, ORCH_CACHE, the file and defaults rank (no kernel, no network)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from orchestrator.core import paths
from orchestrator.core.errors import BadInput, Exit
from orchestrator.guest import vm
from orchestrator.kernel import build
from orchestrator.run import settings
from orchestrator.run.settings import Setting
from orchestrator.source import debsrc, intake


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """A fresh HOME and XDG dirs, no ORCH_* variables, no cache chosen by an earlier test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("ORCH_CONFIG", raising=False)
    monkeypatch.delenv("ORCH_CACHE", raising=False)
    # paths keeps the chosen cache in module state; monkeypatch puts it back.
    monkeypatch.setattr(paths, "_chosen", None)
    return home


def write_config(text: str) -> Path:
    """`text` at the default place, $XDG_CONFIG_HOME/orch/config.toml."""
    path = settings.config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def values(loaded: dict[str, Setting]) -> dict[str, object]:
    return {k: s.value for k, s in loaded.items()}


def bad(text: str, flags: dict[str, object] | None = None) -> str:
    """The one-line error a config file with `text` gives."""
    write_config(text)
    with pytest.raises(BadInput) as e:
        settings.load(flags or {})
    assert e.value.exit == Exit.BAD_INPUT
    message = str(e.value)
    assert "\n" not in message
    return message


# --- where the file is ---

def test_config_path_defaults_to_xdg_config_home(tmp_path):
    assert settings.config_path() == tmp_path / "xdg-config" / "orch" / "config.toml"


def test_config_path_without_xdg_is_under_home(monkeypatch, home):
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert settings.config_path() == home / ".config" / "orch" / "config.toml"


def test_orch_config_wins_and_expands_tilde(monkeypatch, home):
    monkeypatch.setenv("ORCH_CONFIG", "~/orch.toml")
    assert settings.config_path() == home / "orch.toml"
    monkeypatch.setenv("ORCH_CONFIG", "")  # empty is unset, as for ORCH_CACHE
    assert settings.config_path().name == "config.toml"


# --- the layers ---

def test_defaults_are_the_modules_constants(tmp_path):
    d = settings.defaults()
    assert tuple(d) == settings.NAMES
    assert d == {"lore_url": intake.DEFAULT_LORE, "tree": None,
                 "debian_source": debsrc.DEFAULT_PACKAGE, "configs": [],
                 "cache": tmp_path / "xdg-cache" / "orch", "lore_timeout": intake.B4_TIMEOUT,
                 "guest_timeout": vm.BOOT_TIMEOUT, "test_timeout": vm.TEST_TIMEOUT,
                 "timeout": None, "jobs": build.jobs(), "cache_max_size": "50G",
                 "cache_max_age": "30d", "keep_nights": 7, "mail_from": None}
    assert d["cache"] == paths.cache_dir()  # nothing set: the paths default


def test_no_file_gives_the_defaults():
    assert not settings.config_path().exists()
    loaded = settings.load({})
    assert values(loaded) == settings.defaults()
    assert {s.source for s in loaded.values()} == {"default"}


def test_file_beats_defaults(home):
    path = write_config('lore_url = "https://lore.example.org"\n'
                        'tree = "/src/linux"\n'
                        'debian_source = "linux-source-7.3"\n'
                        'configs = ["base", "kasan"]\n'
                        'cache = "/var/cache/orch"\n'
                        'lore_timeout = 60\n'
                        'guest_timeout = 1800.5\n'
                        'test_timeout = 120\n'
                        'timeout = 7200\n'
                        'jobs = 3\n'
                        'cache_max_size = "20G"\n'
                        'cache_max_age = "2w"\n'
                        'keep_nights = 3\n'
                        'mail_from = "Tess Ter <tess@example.org>"\n')
    loaded = settings.load({})
    assert values(loaded) == {"lore_url": "https://lore.example.org", "tree": Path("/src/linux"),
                              "debian_source": "linux-source-7.3", "configs": ["base", "kasan"],
                              "cache": Path("/var/cache/orch"), "lore_timeout": 60,
                              "guest_timeout": 1800.5, "test_timeout": 120, "timeout": 7200,
                              "jobs": 3, "cache_max_size": "20G", "cache_max_age": "2w",
                              "keep_nights": 3, "mail_from": "Tess Ter <tess@example.org>"}
    assert {s.source for s in loaded.values()} == {str(path)}


def test_keys_the_file_leaves_out_keep_their_defaults():
    write_config("jobs = 2\n")
    loaded = settings.load({})
    assert loaded["jobs"] == Setting(2, str(settings.config_path()))
    assert loaded["guest_timeout"] == Setting(vm.BOOT_TIMEOUT, "default")


def test_flags_beat_the_file():
    write_config('guest_timeout = 1800\nconfigs = ["base"]\ntree = "/src/linux"\njobs = 3\n')
    loaded = settings.load({"guest_timeout": 60.0, "configs": ["debug"], "tree": Path("rel/tree")})
    assert loaded["guest_timeout"] == Setting(60.0, "flag --guest-timeout")
    assert loaded["configs"] == Setting(["debug"], "flag --config")
    # A flag's relative path is the user's, relative to where orch runs.
    assert loaded["tree"] == Setting(Path("rel/tree"), "flag --tree")
    assert loaded["jobs"].value == 3


def test_flags_left_unused_do_not_count():
    """argparse leaves None, or [] for --config; neither hides the file's value."""
    write_config('configs = ["base"]\ntimeout = 60\n')
    loaded = settings.load({"configs": [], "timeout": None})
    assert loaded["configs"].value == ["base"] and loaded["timeout"].value == 60


def test_a_flag_that_is_not_a_setting_is_a_bug():
    with pytest.raises(ValueError, match="mbox"):
        settings.load({"mbox": Path("x.mbox")})


def test_orch_cache_beats_the_file_and_a_flag_beats_orch_cache(monkeypatch, tmp_path):
    write_config('cache = "/from/file"\n')
    assert settings.load({})["cache"] == Setting(Path("/from/file"), str(settings.config_path()))
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "env-cache"))
    assert settings.load({})["cache"] == Setting(tmp_path / "env-cache", "env ORCH_CACHE")
    loaded = settings.load({"cache": Path("/from/flag")})
    assert loaded["cache"] == Setting(Path("/from/flag"), "flag --cache")


def test_orch_cache_touches_only_cache(monkeypatch, tmp_path):
    write_config("jobs = 5\n")
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "env-cache"))
    loaded = settings.load({})
    assert [k for k, s in loaded.items() if s.source == "env ORCH_CACHE"] == ["cache"]
    assert loaded["jobs"].value == 5


def test_tilde_is_expanded_in_the_file_and_in_flags(home):
    write_config('tree = "~/linux"\ncache = "~/big/orch"\n')
    loaded = settings.load({})
    assert loaded["tree"].value == home / "linux"
    assert loaded["cache"].value == home / "big" / "orch"
    assert settings.load({"tree": Path("~/other")})["tree"].value == home / "other"


def test_missing_file_at_the_default_place_is_fine():
    assert values(settings.load({})) == settings.defaults()


def test_a_file_orch_config_names_must_exist(monkeypatch, tmp_path):
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("ORCH_CONFIG", str(missing))
    with pytest.raises(BadInput, match=f"{missing}: no such config file"):
        settings.load({})


def test_orch_config_dev_null_is_an_empty_file(monkeypatch):
    write_config("jobs = 5\n")
    monkeypatch.setenv("ORCH_CONFIG", "/dev/null")
    assert values(settings.load({})) == settings.defaults()


def test_settings_are_frozen():
    s = settings.load({})["jobs"]
    with pytest.raises(AttributeError):
        s.value = 1  # type: ignore[misc]


# --- a bad file: one line, naming the file and the key ---

def test_syntax_error_names_the_file_line_and_column():
    message = bad("jobs = 4\nguest_timeout 60\n")
    assert message.startswith(f"{settings.config_path()}: not valid TOML: ")
    assert "line 2, column 15" in message


def test_not_utf8():
    path = settings.config_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b'lore_url = "\xff"\n')
    with pytest.raises(BadInput, match=f"{path}: not UTF-8 text"):
        settings.load({})


def test_unreadable_file():
    settings.config_path().mkdir(parents=True)  # a directory where the file goes
    with pytest.raises(BadInput, match="cannot read the config file"):
        settings.load({})


@pytest.mark.parametrize("key, guess", [("guest-timeout", "guest_timeout"),
                                        ("config", "configs"), ("lore", "lore_url"),
                                        ("job", "jobs")])
def test_unknown_key_suggests_the_nearest(key, guess):
    message = bad(f"{key} = 1\n")
    assert message == (f'{settings.config_path()}: unknown key "{key}" '
                       f"(did you mean {guess}?)")


def test_unknown_key_without_a_near_one_lists_them():
    message = bad('colour = "blue"\n')
    assert 'unknown key "colour"' in message and "known keys: lore_url, tree," in message


def test_a_section_is_an_unknown_key():
    """Keys under [orch] belong to table `orch`: the file is one flat table."""
    message = bad("[orch]\njobs = 4\n")
    assert 'unknown key "orch"' in message and "no [sections]" in message


def test_an_odd_key_stays_on_one_line():
    message = bad('"a\\nb" = 1\n')
    assert 'unknown key "a\\u000ab"' in message


# One case per rule, each naming the key it breaks.
WRONG = [
    ('cache_max_size = "lots"', "cache_max_size",
     'a size such as 50G, 500M, 1.5T or a number of bytes, not "lots"'),
    ('cache_max_age = "30"', "cache_max_age",
     'an age such as 30d, 12h, 2w (s, m, h, d, w), not "30"'),
    ('mail_from = "nobody"', "mail_from",
     'one mail address, such as "Your Name <you@example.org>", not "nobody"'),
    # seconds: a number ...
    ('guest_timeout = "fast"', "guest_timeout", 'a positive number of seconds, not "fast"'),
    # ... not a bool, although bool is an int subclass ...
    ("timeout = true", "timeout", "a positive number of seconds, not true"),
    # ... positive ...
    ("lore_timeout = 0", "lore_timeout", "a positive number of seconds, not 0"),
    ("test_timeout = -1.5", "test_timeout", "a positive number of seconds, not -1.5"),
    # ... and finite (TOML has inf and nan).
    ("guest_timeout = inf", "guest_timeout", "a positive number of seconds, not inf"),
    ("timeout = nan", "timeout", "a positive number of seconds, not nan"),
    ("timeout = 1979-05-27", "timeout", "a positive number of seconds, not 1979-05-27"),
    # count: a whole number, not a float or a bool, positive.
    ("jobs = 2.5", "jobs", "a positive whole number, not 2.5"),
    ("jobs = false", "jobs", "a positive whole number, not false"),
    ("jobs = 0", "jobs", "a positive whole number, not 0"),
    ("jobs = -4", "jobs", "a positive whole number, not -4"),
    # names: an array of non-empty strings.
    ('configs = "base"', "configs", 'an array of config names, such as ["base", "debug"], '
     'not "base"'),
    ('configs = ["base", 1]', "configs", 'not ["base", 1]'),
    ('configs = [""]', "configs", 'not [""]'),
    # text: a non-empty string.
    ('lore_url = ""', "lore_url", 'a non-empty string, not ""'),
    ('debian_source = ["linux-source-7.3"]', "debian_source",
     'a non-empty string, not ["linux-source-7.3"]'),
    ("lore_url = { host = \"x\" }", "lore_url", "a non-empty string, not a table"),
    # path: a string ...
    ("tree = 5", "tree", "a non-empty string naming a path, not 5"),
    ('cache = ""', "cache", 'a non-empty string naming a path, not ""'),
    # ... absolute once ~ is expanded.
    ('tree = "linux"', "tree", 'an absolute path or one starting with ~, not "linux"'),
    ('cache = "./cache"', "cache", 'an absolute path or one starting with ~, not "./cache"'),
]


@pytest.mark.parametrize("line, key, why", WRONG, ids=[w[0] for w in WRONG])
def test_each_rule_rejects_a_wrong_value(line, key, why):
    message = bad(line + "\n")
    assert message.startswith(f"{settings.config_path()}: {key} must be ")
    assert message.endswith(why)


def test_a_long_wrong_value_is_cut():
    message = bad(f'jobs = "{"x" * 500}"\n')
    assert message.endswith('xxx...') and len(message) < 200


def test_every_kind_has_a_rule_case():
    assert {settings.KINDS[key] for _, key, _ in WRONG} == set(settings.RULES)


# Flags go through the same rules, so the command layer needs no checks of its own.
@pytest.mark.parametrize("flags, message", [
    ({"guest_timeout": -1.0}, "--guest-timeout must be a positive number of seconds, not -1.0"),
    ({"timeout": 0.0}, "--timeout must be a positive number of seconds, not 0.0"),
    ({"jobs": 0}, "--jobs must be a positive whole number, not 0"),
    ({"configs": [""]}, '--config must be an array of config names, such as ["base", "debug"], '
     'not [""]'),
    ({"lore_url": ""}, '--lore-url must be a non-empty string, not ""'),
])
def test_bad_flags(flags, message):
    with pytest.raises(BadInput) as e:
        settings.load(flags)
    assert str(e.value) == message


# --- orch test --print-config ---

def test_print_config_round_trips_through_the_file(monkeypatch, tmp_path):
    write_config('lore_url = "https://lore.example.org/a \\"b\\" \\\\c\\u0001\\u007f"\n'
                 'configs = ["base", "debug"]\n'
                 "guest_timeout = 1e-05\n")
    loaded = settings.load({"jobs": 7, "test_timeout": 12.25, "tree": Path("/src/linux")})
    text = settings.format_effective(loaded)
    parsed = tomllib.loads(text)
    shown = {k: (str(v) if isinstance(v, Path) else v) for k, v in values(loaded).items()
             if v is not None}
    assert parsed == shown
    # Pasted into a file, it gives the same settings again.
    copy = tmp_path / "copy.toml"
    copy.write_text(text)
    monkeypatch.setenv("ORCH_CONFIG", str(copy))
    assert values(settings.load({})) == values(loaded)


def test_print_config_lines():
    write_config("jobs = 4\n")
    lines = settings.format_effective(settings.load({"guest_timeout": 60.0})).splitlines()
    assert len(lines) == len(settings.NAMES)
    rows = {line.split()[0] if not line.startswith("#") else line.split()[1]: line
            for line in lines}
    assert rows["jobs"].startswith("jobs = 4 ") and rows["jobs"].endswith(
        f"  # {settings.config_path()}")
    assert rows["guest_timeout"].endswith("  # flag --guest-timeout")
    assert rows["lore_url"].endswith("  # default")
    # No value: commented out, with what that means.
    assert rows["timeout"].startswith("# timeout = none ")
    assert rows["timeout"].endswith("  # default: no limit")
    assert rows["tree"].startswith("# tree = none ")
    assert rows["configs"].startswith("configs = [] ")
    assert rows["configs"].endswith("  # default: kconfigs/matrix")
    # The sources line up.
    assert len({line.index("  # ") for line in lines}) == 1


def test_print_config_shows_orch_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "c"))
    text = settings.format_effective(settings.load({}))
    assert f'cache = "{tmp_path / "c"}"' in text and "# env ORCH_CACHE" in text


# --- paths.cache_dir() follows the cache setting ---

def test_cache_from_the_file_reaches_cache_dir():
    write_config('cache = "/from/file"\n')
    settings.apply_cache(settings.load({}))
    assert paths.cache_dir() == Path("/from/file")


def test_orch_cache_still_wins_over_the_file(monkeypatch, tmp_path):
    write_config('cache = "/from/file"\n')
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "env"))
    settings.apply_cache(settings.load({}))
    assert paths.cache_dir() == tmp_path / "env"


def test_cache_flag_wins_over_orch_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "env"))
    settings.apply_cache(settings.load({"cache": Path("/from/flag")}))
    assert paths.cache_dir() == Path("/from/flag")


def test_a_default_cache_leaves_cache_dir_following_the_environment(monkeypatch, tmp_path):
    write_config('cache = "/from/file"\n')
    settings.apply_cache(settings.load({}))
    # The next command in the same process has no cache in its file.
    write_config("jobs = 2\n")
    settings.apply_cache(settings.load({}))
    assert paths.cache_dir() == tmp_path / "xdg-cache" / "orch"
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "later"))
    assert paths.cache_dir() == tmp_path / "later"


# --- every command reads the file: the nightly ones too ---

def test_builtin_is_the_defaults_and_reads_no_file(monkeypatch, tmp_path):
    write_config("jobs = 2\n")
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "env"))
    b = settings.builtin()
    assert {n: getattr(b, n) for n in settings.NAMES} == settings.defaults()
    assert {s.source for s in b.effective.values()} == {settings.DEFAULT}


@pytest.mark.parametrize("command", [["nightly", "NIGHTLY"], ["plan", "NIGHTLY", "--out", "P"],
                                     ["job", "PLAN", "b-x-base", "--out", "S"]])
def test_a_bad_config_file_stops_the_nightly_commands_too(tmp_path, command):
    """nightly, plan and job read config.toml as test does: a bad one is one
    line naming it, status 2, before the night's file is even read."""
    import subprocess
    import sys

    from helpers import REPO, one_error_line
    cfg = tmp_path / "config.toml"
    cfg.write_text("guest_timeout = -1\n")
    (tmp_path / "PLAN").mkdir()
    args = [str(tmp_path / a) if a in ("NIGHTLY", "P", "PLAN", "S") else a for a in command]
    if command[0] == "job":
        # A plan directory: what job reads before its settings.
        from orchestrator.fanout import jobfiles
        from orchestrator.nightly.night import Plan, TreeState, write_plan
        plan = Plan("2026-11-27", "https://lore.example.org", ["base"], [],
                    [TreeState("x", "git", str(tmp_path), "c" * 40)])
        write_plan(tmp_path / "PLAN", plan)
        jobfiles.write_jobs(tmp_path / "PLAN", jobfiles.Jobs(
            plan.night, jobfiles.plan_digest(plan), 4,
            [jobfiles.Job("b-x-base", "baseline", "x", "base")]))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
           "ORCH_CONFIG": str(cfg), "ORCH_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert (r.returncode, one_error_line(r.stderr)) == (
        2, f"orch: error: {cfg}: guest_timeout must be a positive number of seconds, not -1")
