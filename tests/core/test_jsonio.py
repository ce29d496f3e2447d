"""orch's JSON files: replaced atomically, read back only as a capped regular
file, statuses written as their values and read back as Enum members. Each
check runs against a naive variant too, which it must catch."""

from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.core import jsonio


class Colour(enum.StrEnum):
    RED = "red"
    NOT_SET = "not set"


@dataclass
class Thing:
    colour: Colour
    shades: dict[str, Colour]
    note: str | None = jsonio.opt()


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("killed while writing")


def naive_write(path: Path, data) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=2, default=str)


def survives_a_failed_write(write, d: Path) -> bool:
    """A writer killed halfway leaves the last full record and no litter."""
    path = d / "record.json"   # not run.json: the suite checks those against its schema
    write(path, {"state": "running"})
    with pytest.raises(RuntimeError):
        write(path, {"state": "done", "big": ["x" * 100] * 1000 + [Unprintable()]})
    try:
        kept = json.loads(path.read_text())
    except ValueError:   # torn
        return False
    return kept == {"state": "running"} and os.listdir(d) == ["record.json"]


def test_write_replaces_the_file_whole_or_not_at_all(tmp_path):
    assert survives_a_failed_write(jsonio.write, tmp_path)
    assert (tmp_path / "record.json").read_text() == '{\n  "state": "running"\n}\n'


def test_a_write_in_place_is_caught(tmp_path):
    assert not survives_a_failed_write(naive_write, tmp_path)


def hostile(d: Path) -> dict[str, Path]:
    """What an artifact may hold where orch expects its record."""
    secret = d / "secret.json"
    secret.write_text('{"token": "s3cret"}')
    (d / "link.json").symlink_to(secret)
    (d / "big.json").write_text(json.dumps(["x" * 100] * 20))
    return {"a symbolic link": d / "link.json", "a file over the cap": d / "big.json"}


def refusals(read, d: Path) -> dict[str, str]:
    out = {}
    for what, path in hostile(d).items():
        try:
            read(path, 1000)
        except ValueError as e:
            out[what] = str(e)
    return out


def test_read_takes_only_a_capped_regular_file(tmp_path):
    assert refusals(jsonio.read, tmp_path) == {
        "a symbolic link": "link.json is a symbolic link (not followed)",
        "a file over the cap": "big.json is larger than 1000 bytes"}
    os.mkfifo(tmp_path / "fifo.json")   # would block a plain open() for ever
    with pytest.raises(ValueError, match="fifo.json is not a regular file"):
        jsonio.read(tmp_path / "fifo.json")
    assert jsonio.read(tmp_path / "secret.json") == {"token": "s3cret"}


def test_a_plain_read_is_caught(tmp_path):
    assert refusals(lambda path, limit: json.loads(path.read_text()), tmp_path) == {}


def test_a_status_is_its_value_in_the_file_and_a_member_in_the_record(tmp_path):
    thing = Thing(Colour.NOT_SET, {"sky": Colour.RED})
    jsonio.write(tmp_path / "t.json", jsonio.dump(thing))
    assert (tmp_path / "t.json").read_text() == (
        '{\n  "colour": "not set",\n  "shades": {\n    "sky": "red"\n  }\n}\n')
    back = jsonio.load(Thing, jsonio.read(tmp_path / "t.json"))
    assert back == thing and type(back.colour) is Colour and type(back.shades["sky"]) is Colour


@pytest.mark.parametrize("value", ["blue", "RED", 3, ["red"], None])
def test_an_unknown_status_is_a_value_error_that_names_the_choices(value):
    with pytest.raises(ValueError) as e:
        jsonio.load(Thing, {"colour": value, "shades": {}})
    assert str(e.value) == (f"{str(value)!r} is not a Colour (one of 'red', 'not set')")
