"""Run-directory files: a failed write keeps the old file, temp files of killed writes are found, the face re-exports."""

from __future__ import annotations

import pytest

from longtail import rundir
from longtail.core.errors import LongtailError
from longtail.rundir import files, layout, lock, outputs, provenance, staging


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
        owner = next(m for m in (files, layout, lock, outputs, provenance, staging) if hasattr(m, name))
        assert getattr(rundir, name) is getattr(owner, name)


def test_read_jsonl_drops_a_cut_last_line_and_names_a_bad_line_before_it(tmp_path):
    path = tmp_path / layout.METRICS
    path.write_bytes(b'{"epoch": 1}\n\n{"epoch": 2}\n{"epoch": 3, "lo')
    assert rundir.read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]
    path.write_bytes(b'{"epoch": 1}\n[1]\n{"epoch": 3}\n')
    with pytest.raises(LongtailError, match=r"metrics.jsonl' line 2 is not a JSON object; the run directory is damaged"):
        rundir.read_jsonl(path)


@pytest.mark.parametrize("content, problem", [
    (b'{"a": 1,\n "b"', "is not valid JSON (line 2)"), (b"\xff\xfe\x00", "is not valid JSON"), (b"[]", "holds a JSON list"),
    (b'{"a": 1}', "has no 'b' entry"), (None, "is missing"),
])
def test_read_json_refuses_what_longtail_did_not_write_in_one_line(tmp_path, content, problem):
    path = tmp_path / "data.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LongtailError) as e:
        rundir.read_json(path, keys=("a", "b"))
    assert str(e.value).startswith(f"'{path}' {problem}") and "the run directory is damaged" in str(e.value) and "\n" not in str(e.value)


def test_atomic_write_replaces_a_link_and_refuses_a_folder_that_leads_out(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    (outside / "victim").write_text("kept")
    (run / "report.md").symlink_to(outside / "victim")
    rundir.atomic_write_bytes(run / "report.md", b"new", within=run)
    assert (run / "report.md").read_bytes() == b"new" and not (run / "report.md").is_symlink()
    (run / "figures").symlink_to(outside)
    with pytest.raises(LongtailError, match=r"'.*/run/figures' leads outside '.*/run' \(to '.*/outside', through a symbolic link\)"):
        rundir.atomic_write_bytes(run / "figures" / "a.png", b"png", within=run)
    assert sorted(p.name for p in outside.iterdir()) == ["victim"] and (outside / "victim").read_text() == "kept"
