"""Run-directory files: a failed write keeps the old file, temp files of killed writes are found, the face re-exports."""

from __future__ import annotations

import pytest

from longtail import rundir
from longtail.core.errors import LongtailError
from longtail.rundir import files, layout, lock, provenance, staging


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "results.json"
    rundir.write_json(path, {"ok": 1})

    def broken(f):
        f.write(b'{"half":')
        raise OSError(28, "No space left on device")

    with pytest.raises(LongtailError) as e:
        files.atomic_write(path, broken)
    assert "No space left on device" in str(e.value)
    assert rundir.read_json(path) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_clean_temp_files_removes_killed_writes_and_keeps_the_marker(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    killed = [tmp_path / "checkpoints" / ".last.pt.k3j2", tmp_path / ".results.json.x1"]
    kept = [tmp_path / layout.MARKER, tmp_path / ".hidden-notes", tmp_path / "results.json"]
    for p in killed + kept:
        p.write_text("x")
    removed = staging.clean_temp_files(tmp_path)
    assert sorted(removed) == sorted(killed)
    assert all(p.exists() for p in kept)


def test_jsonl_round_trip_and_truncate_to_finished_epochs(tmp_path):
    path = tmp_path / layout.METRICS
    for epoch in (1, 2, 3):
        rundir.append_jsonl(path, {"epoch": epoch})
    rundir.truncate_metrics(tmp_path, 2)
    assert rundir.read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]


def test_the_package_face_hands_on_each_module_own_names():
    for name in rundir.__all__:
        owner = next(m for m in (files, layout, lock, provenance, staging) if hasattr(m, name))
        assert getattr(rundir, name) is getattr(owner, name)
