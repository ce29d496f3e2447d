"""The kernel cache on its own: entries stored as a build stores them (real
bzImages from the stand-in tree's mkbzimage.py, checked by kimage), and what
lookup says of each state an entry can be in: absent, ok, old, corrupt,
stale, and a series' kernel asked for by a baseline."""

from __future__ import annotations

import hashlib
import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import MINI

from orchestrator.kernel import kcache, kimage

BANNER = (b"Linux version 7.2.13 (orch@orch) (gcc (Debian 12.2.0) 12.2.0) "
          b"#3 SMP Thu Nov 27 23:38:06 UTC 2026\n\0")
HEADER = "7.2.13 (orch@orch) #3 SMP Thu Nov 27 23:38:06 UTC 2026"
COMPLETE = {"complete": True, "units": {"mm/filemap.o": []}}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ORCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _image(where: Path, header: str = HEADER) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "payload").write_bytes(lzma.compress(b"\0" * 64 + BANNER + b"\0" * 64))
    subprocess.run([sys.executable, str(MINI / "scripts" / "mkbzimage.py"), header,
                    str(where / "payload"), str(where / "bzImage")], check=True)
    return where / "bzImage"


def _stored(tmp_path: Path, key: str = "k" * 32, origin=kcache.Origin.BASELINE,
            header: str = HEADER, warnings: dict | None = COMPLETE) -> kcache.Entry:
    """An entry as build.build makes one: staged, then stored."""
    img = _image(tmp_path / "img", header)
    tmp = kcache.new_entry(key)
    (tmp / "bzImage").write_bytes(img.read_bytes())
    (tmp / "config").write_text("CONFIG_X=y\n")
    return kcache.store(key, tmp, warnings, kimage.Banner.parse(BANNER[:-2].decode()), origin)


def test_absent():
    assert kcache.lookup("a" * 32) == ("absent", "")
    assert kcache.lookup("a" * 32)[0] is kcache.State.ABSENT


def test_a_stored_entry_is_ok_complete_and_in_place(tmp_path, cache):
    e = _stored(tmp_path)
    assert e.path == cache / "kernels" / ("k" * 32)
    assert sorted(p.name for p in e.path.iterdir()) == \
        ["banner", "bzImage", "config", "origin", "sha256", "warnings.json"]
    assert (e.path / "sha256").read_text() == hashlib.sha256(e.image.read_bytes()).hexdigest()
    assert e.banner() == BANNER[:-2].decode() and e.warnings() == COMPLETE
    assert e.config.read_text() == "CONFIG_X=y\n"
    assert kcache.lookup("k" * 32) == (kcache.State.OK, "")
    assert kcache.lookup("k" * 32, baseline=True) == (kcache.State.OK, "")
    # Renamed into place: no staging directory is left beside it.
    assert [p.name for p in (cache / "kernels").iterdir()] == ["k" * 32]


def test_store_replaces_an_entry_whole(tmp_path):
    first = _stored(tmp_path)
    (first.path / "System.map").write_text("the first build's\n")
    again = _stored(tmp_path)
    assert not (again.path / "System.map").exists()


def test_new_entry_starts_empty(tmp_path):
    leftover = kcache.new_entry("k" * 32)
    (leftover / "bzImage").write_text("a killed build's half copy")
    assert list(kcache.new_entry("k" * 32).iterdir()) == []


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "no sha256", "no bzImage"])
def test_corrupt_is_removed(tmp_path, damage):
    e = _stored(tmp_path)
    img = bytearray(e.image.read_bytes())
    if damage == "flip a byte":
        img[len(img) // 2] ^= 0xFF
        e.image.write_bytes(bytes(img))
    elif damage == "truncate":
        e.image.write_bytes(bytes(img[:len(img) // 2]))
    elif damage == "no sha256":
        (e.path / "sha256").unlink()
    else:
        e.image.unlink()
    assert kcache.lookup("k" * 32) == (kcache.State.CORRUPT, "failed its checksum")
    assert not e.path.exists()


@pytest.mark.parametrize("record", [None, {"complete": False, "units": {}}])
def test_old_without_a_complete_warning_record_is_kept(tmp_path, record):
    e = _stored(tmp_path, warnings=record)
    assert kcache.lookup("k" * 32) == (kcache.State.OLD, "has no warning record")
    assert e.image.exists()


def test_stale_entry_of_an_orch_that_did_not_check_images_is_removed(tmp_path):
    # The header says #4, the payload holds #3: ccache linked a stale piggy.o.
    e = _stored(tmp_path, header=HEADER.replace("#3", "#4"))
    (e.path / "banner").unlink()
    state, why = kcache.lookup("k" * 32)
    assert state == kcache.State.STALE and "a stale object was linked" in why
    assert not e.path.exists()


def test_unchecked_entry_that_agrees_with_itself_is_checked_once(tmp_path):
    e = _stored(tmp_path)
    (e.path / "banner").unlink()
    assert kcache.lookup("k" * 32) == (kcache.State.OK, "")
    assert e.banner() == BANNER[:-2].decode()


@pytest.mark.parametrize("origin", [kcache.Origin.SERIES, None])
def test_a_baseline_takes_only_a_baseline_builds_kernel(tmp_path, origin):
    e = _stored(tmp_path, origin=origin or kcache.Origin.BASELINE)
    if origin is None:
        (e.path / "origin").unlink()       # kept by an orch that did not say
    assert kcache.lookup("k" * 32, baseline=True) == \
        (kcache.State.SERIES, "was built by a series' build, not a baseline build")
    assert kcache.lookup("k" * 32) == (kcache.State.OK, "")
    assert e.image.exists()


def test_the_key_is_the_tree_the_config_and_the_toolchain(tmp_path):
    cfg = tmp_path / ".config"
    cfg.write_text("CONFIG_X=y\n")
    key = kcache.cache_key("t" * 40, cfg)
    assert len(key) == 32 and key == kcache.cache_key("t" * 40, cfg)
    assert kcache.cache_key("u" * 40, cfg) != key
    cfg.write_text("CONFIG_X=n\n")
    assert kcache.cache_key("t" * 40, cfg) != key
    assert "gcc" in kcache.toolchain_id().lower() and "make" in kcache.toolchain_id().lower()


def test_states_read_as_the_strings_callers_compare(tmp_path):
    """fanout.cache_transfer compares the state with "ok" and prints it."""
    _stored(tmp_path)
    state, _ = kcache.lookup("k" * 32)
    assert state == "ok" and f"{state}" == "ok"
    assert json.dumps(kcache.Origin.BASELINE) == '"baseline"'
