"""A series job imports its planned baseline's export and nothing else
(issue 25, item 7).

A baseline job's shard holds more than its export: the guest writes its
results directory there (and the engine may nest other artifacts). A series
job reads only SHARD/export/manifest.json, takes only the entries the
shard's job.json says its job exported, and reads every file without
following a link, never opening a FIFO. Real `orch job` runs on the
stand-in tree (test_fanout's world: two "runners", each its own ORCH_CACHE).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from test_fanout import _runner, planned  # noqa: F401 (the fixture)
from test_nightly import world  # noqa: F401 (the fixture planned needs)

from orchestrator.fanout import job_run as job_cmd
from orchestrator.fanout import jobfiles

EVIL = "e" * 32          # a key the baseline job never exported
EVIL2 = "d" * 32


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _baseline(planned, tmp_path, monkeypatch) -> tuple[Path, str, str]:
    """The baseline job's shard on runner 1, and its kernel and results keys."""
    _runner(monkeypatch, tmp_path, "runner1")
    shard = tmp_path / "shards" / "b-mini-base"
    assert job_cmd.run_job(planned["pdir"], "b-mini-base", shard) == 0
    exported = dict(e.split("/") for e in jobfiles.read_job(shard).exported)
    return shard, exported["kernels"], exported["results"]


def _plant(where: Path, entries: dict[str, Path]) -> None:
    """An export as orch writes one (files and manifest.json), in `where`:
    {"kernels/KEY": a directory whose files it holds}."""
    manifest: dict = {}
    for entry, src in entries.items():
        kind, key = entry.split("/")
        shutil.copytree(src, where / kind / key)
        manifest.setdefault(kind, {})[key] = {f.name: _sha(f) for f in (where / kind / key)
                                              .iterdir()}
    (where / "manifest.json").write_text(json.dumps(manifest))


def _poisoned_kernel(src: Path, dest: Path) -> Path:
    """A copy of a kernel entry with other bytes in its image, its sha256
    file matching them: one the kernel cache's own check takes."""
    shutil.copytree(src, dest)
    image = bytearray((dest / "bzImage").read_bytes())
    image[len(image) // 2] ^= 0xFF
    (dest / "bzImage").write_bytes(bytes(image))
    (dest / "sha256").write_text(hashlib.sha256(bytes(image)).hexdigest())
    return dest


def test_only_the_planned_entries_of_the_fixed_manifest_are_imported(planned, tmp_path,
                                                                      monkeypatch):
    shard, k, r = _baseline(planned, tmp_path, monkeypatch)
    export = shard / jobfiles.EXPORT
    good_junit = (export / "results" / r / "junit.xml").read_bytes()
    stash = tmp_path / "stash"
    poisoned = _poisoned_kernel(export / "kernels" / k, stash / "kernel")
    bad_results = stash / "results"
    shutil.copytree(export / "results" / r, bad_results)
    (bad_results / "junit.xml").write_text(good_junit.decode().replace("<testcase", "<testcase "
                                           'poisoned="1"'))

    # In the guest's results directory (the guest writes it): an export of
    # a key the baseline never exported. In another directory of the shard:
    # one of the planned results key, with other bytes.
    guest = shard / "results" / "base" / "baseline"
    assert (guest / "junit.xml").exists()
    _plant(guest, {f"kernels/{EVIL}": poisoned})
    _plant(shard / "logs", {f"results/{r}": bad_results})
    # In the export itself: an unplanned key and a kind orch does not
    # import in its manifest, a file no manifest lists, a link.
    shutil.copytree(poisoned, export / "kernels" / EVIL2)
    m = json.loads((export / "manifest.json").read_text())
    m["kernels"][EVIL2] = {f.name: _sha(f) for f in (export / "kernels" / EVIL2).iterdir()}
    m["ccache"] = {EVIL: {"ccache.conf": "0" * 64}}
    (export / "manifest.json").write_text(json.dumps(m))
    (export / "kernels" / k / "evil.txt").write_text("not listed\n")
    (export / "secret").symlink_to("/etc/passwd")

    _runner(monkeypatch, tmp_path, "runner2")      # empty: only what it imports
    boots = len(planned["boots"])
    out = tmp_path / "shards" / "s-mini-base-2"
    assert job_cmd.run_job(planned["pdir"], "s-mini-base-2", out, [shard]) == 0
    assert jobfiles.read_job(out).imported == [
        f"kernels/{k}: imported",
        f"results/{r}: imported",
        f"{export}: skipped 'ccache' of its manifest.json: not a kind of entry orch imports",
        f"kernels/{EVIL2}: skipped: not what the baseline job exported",
        f"{export}/kernels/{k}/evil.txt: skipped: not in its manifest.json",
        f"{export}/secret: skipped: not part of an export",
    ]
    cache = tmp_path / "runner2"
    assert not (cache / "kernels" / EVIL).exists() and not (cache / "kernels" / EVIL2).exists()
    assert not (cache / "kernels" / k / "evil.txt").exists()
    assert (cache / "kernels" / k / "bzImage").read_bytes() == \
        (export / "kernels" / k / "bzImage").read_bytes()
    assert (cache / "results" / r / "junit.xml").read_bytes() == good_junit
    # The imported baseline answered: only the series' kernel was booted.
    cell = json.loads((out / "night.json").read_text())["cells"][0]
    assert cell["status"] == "PASS" and cell["booted"]["baseline"] is False
    assert len(planned["boots"]) == boots + 1


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.timeout(60)
def test_links_fifos_and_other_shards_are_refused_in_one_line_each(planned, tmp_path,
                                                                   monkeypatch):
    shard, k, r = _baseline(planned, tmp_path, monkeypatch)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(shard / jobfiles.EXPORT, elsewhere)

    def copy(name: str) -> Path:
        d = tmp_path / "bad" / name
        shutil.copytree(shard, d, symlinks=True)
        return d

    bad = {"manifest-link": copy("manifest-link"), "manifest-fifo": copy("manifest-fifo"),
           "export-link": copy("export-link"), "job-fifo": copy("job-fifo"),
           "other-job": copy("other-job"), "bzimage-link": copy("bzimage-link")}
    (bad["manifest-link"] / "export" / "manifest.json").unlink()
    (bad["manifest-link"] / "export" / "manifest.json").symlink_to(elsewhere / "manifest.json")
    _fifo(bad["manifest-fifo"] / "export" / "manifest.json")
    shutil.rmtree(bad["export-link"] / "export")
    (bad["export-link"] / "export").symlink_to(elsewhere)
    _fifo(bad["job-fifo"] / "job.json")
    rec = json.loads((bad["other-job"] / "job.json").read_text())
    rec["job"]["config"] = "debug"
    (bad["other-job"] / "job.json").write_text(json.dumps(rec))
    image = bad["bzimage-link"] / "export" / "kernels" / k / "bzImage"
    image.unlink()
    image.symlink_to(elsewhere / "kernels" / k / "bzImage")

    _runner(monkeypatch, tmp_path, "runner2")
    out = tmp_path / "shards" / "s-mini-base-2"
    assert job_cmd.run_job(planned["pdir"], "s-mini-base-2", out, list(bad.values())) == 0
    lines = jobfiles.read_job(out).imported
    nothing = "; nothing imported"
    assert lines == [
        f"{bad['manifest-link']}/export: no usable manifest.json (manifest.json is a symbolic "
        f"link (not followed)){nothing}",
        f"{bad['manifest-fifo']}/export: no usable manifest.json (manifest.json is not a "
        f"regular file){nothing}",
        f"{bad['export-link']}: export is a symbolic link (not followed){nothing}",
        f"{bad['job-fifo']}: job.json is not a regular file{nothing}",
        f"{bad['other-job']}: the shard of job 'b-mini-base', not of this job's baseline job "
        f"b-mini-base of this plan{nothing}",
        f"kernels/{k}: not imported: bzImage is a symbolic link (not followed)",
        f"results/{r}: imported",
    ]
    # The kernel was not imported from any of them: the job built its own.
    cell = json.loads((out / "night.json").read_text())["cells"][0]
    assert cell["status"] == "PASS" and cell["built"]["baseline"] is True


def test_a_directory_of_shards_is_not_searched(planned, tmp_path, monkeypatch):
    """--import takes the baseline job's shard itself: a directory above it
    (where any job's shard, and any guest's output, may lie) gives nothing."""
    shard, _k, _r = _baseline(planned, tmp_path, monkeypatch)
    _runner(monkeypatch, tmp_path, "runner2")
    out = tmp_path / "s-mini-base-2"
    assert job_cmd.run_job(planned["pdir"], "s-mini-base-2", out, [shard.parent]) == 0
    assert jobfiles.read_job(out).imported == [
        f"{shard.parent}: job.json is missing; nothing imported"]


def test_kept_results_orch_would_not_read_are_not_imported(planned, tmp_path, monkeypatch):
    """Kept results whose meta.json is not a boot's record (its checksum in
    the manifest matching) would stop the job where the cache reads them."""
    shard, k, r = _baseline(planned, tmp_path, monkeypatch)
    export = shard / jobfiles.EXPORT
    (export / "results" / r / "meta.json").write_text("{}")
    m = json.loads((export / "manifest.json").read_text())
    m["results"][r]["meta.json"] = _sha(export / "results" / r / "meta.json")
    (export / "manifest.json").write_text(json.dumps(m))

    _runner(monkeypatch, tmp_path, "runner2")
    out = tmp_path / "s-mini-base-2"
    assert job_cmd.run_job(planned["pdir"], "s-mini-base-2", out, [shard]) == 0
    assert jobfiles.read_job(out).imported == [
        f"kernels/{k}: imported",
        f"results/{r}: not imported: meta.json is not a kept boot's record"]
    cell = json.loads((out / "night.json").read_text())["cells"][0]
    assert cell["status"] == "PASS" and cell["booted"]["baseline"] is True
