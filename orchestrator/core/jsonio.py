"""orch's JSON files (run.json, night.json, plan.json, jobs.json, job.json
and the rest) and the typed records they hold.

`dump` and `load` turn dataclasses into JSON values and back: lists, dicts
and optionals of them, and Enums (as their string values, so a record reads
as it did before its statuses were Enums). `write` replaces a file
atomically; `read` takes a file back the way an artifact must be taken: a
regular file, not a link or a FIFO, at most MAX_RECORD bytes.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

from orchestrator.core import untrusted

# A record read back (from a shard too: an artifact) at most this long.
MAX_RECORD = 256 << 20


def opt(default: Any = None) -> Any:
    """An optional field: left out of the JSON while it is None."""
    return dataclasses.field(default=default, metadata={"omit": True})


def none_optionals(obj: Any) -> set[str]:
    """The optional fields of `obj` that are None: what its JSON leaves out."""
    return {f.name for f in dataclasses.fields(obj)
            if f.metadata.get("omit") and getattr(obj, f.name) is None}


def dump(obj: Any) -> Any:
    """`obj` as JSON values. A dataclass may say which of its fields to
    leave out with an `_omitted()` method; by default the None optionals."""
    if dataclasses.is_dataclass(obj):
        omitted = obj._omitted() if hasattr(obj, "_omitted") else none_optionals(obj)
        return {f.name: dump(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if f.name not in omitted}
    if isinstance(obj, list):
        return [dump(x) for x in obj]
    if isinstance(obj, dict):
        return {k: dump(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    return obj


def load(tp: Any, data: Any) -> Any:
    """`data` (parsed JSON) as type `tp`: dataclasses, lists and dicts of them,
    optionals, Enums; plain JSON values are taken as they are. Bad data is
    a TypeError, KeyError or ValueError saying what is wrong."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return load(inner, data)
    if origin is list:
        (inner,) = typing.get_args(tp)
        return [load(inner, x) for x in data]
    if origin is dict:
        _, inner = typing.get_args(tp)
        return {k: load(inner, v) for k, v in data.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise TypeError(f"{tp.__name__} must be an object, not {type(data).__name__}")
        hints = type_hints(tp)
        # Fields a newer minor version added are not ours to keep.
        return tp(**{f.name: load(hints[f.name], data[f.name])
                     for f in dataclasses.fields(tp) if f.name in data})
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _member(tp, data)
    return data


def _member(tp: type[enum.Enum], data: Any) -> enum.Enum:
    try:
        return tp(data)
    except (ValueError, TypeError):
        # The words a reader's one-line error shows: what was found, what may be.
        allowed = ", ".join(repr(m.value) for m in tp)
        raise ValueError(f"{str(data)[:60]!r} is not a {tp.__name__} (one of {allowed})") \
            from None


_HINTS: dict[type, dict[str, Any]] = {}


def type_hints(tp: type) -> dict[str, Any]:
    """typing.get_type_hints of a dataclass, resolved once (the annotations
    are strings under `from __future__ import annotations`)."""
    if tp not in _HINTS:
        _HINTS[tp] = typing.get_type_hints(tp)
    return _HINTS[tp]


def write(path: Path, data: Any) -> None:
    """Replace `path` atomically: a killed run leaves the last full record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read(path: Path, limit: int = MAX_RECORD) -> Any:
    """JSON orch wrote, read back from a directory an artifact may have
    replaced: ValueError for a link, a FIFO or a file over `limit`, as for
    bad JSON."""
    try:
        data = untrusted.read_capped(path, limit)
    except untrusted.UntrustedError as e:
        raise ValueError(str(e))
    return json.loads(data)
