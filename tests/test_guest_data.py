"""What the guest leaves beside its JUnit file is read defensively."""

from __future__ import annotations

from orchestrator import pipeline


def test_guest_json_is_parsed_capped_and_links_ignored(tmp_path):
    (tmp_path / "scale.json").write_text('{"runs": [{"n": 1, "mib_s": 80.5}]}')
    (tmp_path / "broken.json").write_text("{nope")
    (tmp_path / "huge.json").write_text("[" + "1," * pipeline.MAX_GUEST_JSON + "1]")
    (tmp_path / "link.json").symlink_to("/etc/passwd")
    data = pipeline.guest_data(tmp_path)
    assert data["scale.json"] == {"runs": [{"n": 1, "mib_s": 80.5}]}
    assert "not JSON" in data["broken.json"]["error"]
    assert "larger than" in data["huge.json"]["error"]
    assert "link.json" not in data
    assert pipeline.guest_data(None) == {}
