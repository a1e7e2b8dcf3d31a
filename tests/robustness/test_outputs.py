"""Output paths, symbolic links, the run lock, damaged run files and a full disk (issue #31).

Every refusal asserts the one-line message, exit status 2 and that every file of the finished run
keeps its sha256; every success asserts that only the command's own outputs changed. The CLI runs
in-process through :func:`longtail.cli.main`.
"""

from __future__ import annotations

import csv
import errno
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from longtail import rundir
from longtail.inference.export import run_exported

from .common import cli, digests, image_folder, one_error

IMAGES = 4  # image_folder(per_class=2): two classes


@pytest.fixture
def imgs(tmp_path) -> Path:
    return image_folder(tmp_path / "imgs", per_class=IMAGES // 2)


def _suggested(line: str) -> Path:
    """The safe place an error line suggests (``e.g. '<path>'``)."""
    match = re.search(r"e\.g\. '([^']+)'", line)
    assert match, line
    return Path(match.group(1))


# ------------------------------------------------------------------------------ output paths
def _isic_csv(tmp: Path) -> Path:
    path = tmp / "gt.csv"
    path.write_text("image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\nISIC_1,1,0,0,0,0,0,0,0,0\n")
    return path


OWNED = {  # case -> (args, the command that checks the path, what the line must say); {run}, {imgs}, {tmp} filled in
    "predict over the best checkpoint": (("predict", "{run}", "{imgs}", "--out", "{run}/checkpoints/best.pt"), "predict",
                                         "output '{run}/checkpoints/best.pt' is a file the run '{run}' owns (its best checkpoint)"),
    "a submission over config.yaml": (("predict", "{run}", "{imgs}", "--format", "isic2019", "--out", "{run}/config.yaml"), "predict",
                                      "output '{run}/config.yaml' is a file the run '{run}' owns (its config)"),
    "predict into predictions/": (("predict", "{run}", "{imgs}", "--out", "{run}/predictions/new.csv"), "predict",
                                  "output '{run}/predictions/new.csv' is inside 'predictions/', a folder the run '{run}' owns"),
    "predict over the report": (("predict", "{run}", "{imgs}", "--out", "{run}/report.html"), "predict",
                                "(its report, which only `longtail report` writes)"),
    "export over the best checkpoint": (("export", "{run}", "--out", "{run}/checkpoints/best.pt"), "export",
                                        "output '{run}/checkpoints/best.pt' is a file the run '{run}' owns (its best checkpoint)"),
    "export's sidecar over results.json": (("export", "{run}", "--out", "{run}/results"), "export",
                                           "the sidecar JSON '{run}/results.json' is a file the run '{run}' owns (its results)"),
    "export into report_files/": (("export", "{run}", "--format", "torchscript", "--out", "{run}/report_files/m.pt"), "export",
                                  "inside 'report_files/', a folder the run '{run}' owns (its report's figures"),
    "compare over report.md": (("compare", "{run}", "--out", "{run}/report"), "compare",
                               "output '{run}/report.md' is a file the run '{run}' owns (its Markdown report"),
    "a histogram into checkpoints/": (("data", "describe", "-c", "{run}/config.yaml", "--plot", "{run}/checkpoints/h.png"), "data",
                                      "inside 'checkpoints/', a folder the run '{run}' owns (its checkpoints)"),
    "converted ground truth over data.json": (("data", "convert", "isic2019", "{tmp}/gt.csv", "--out", "{run}/data.json"), "data",
                                              "output '{run}/data.json' is a file the run '{run}' owns (its data description)"),
    "small images into checkpoints/": (("data", "convert", "isic2019", "{tmp}/gt.csv", "--out", "{tmp}/gt.json", "--small", "{run}/checkpoints/small"), "data",
                                       "output folder '{run}/checkpoints/small' is inside 'checkpoints/', a folder the run '{run}' owns (its checkpoints)"),
    "frames into predictions/": (("data", "extract-frames", "{tmp}", "{run}/predictions"), "data",
                                 "output folder '{run}/predictions' is a folder the run '{run}' owns (its saved predictions)"),
    "through a link to checkpoints/": (("predict", "{run}", "{imgs}", "--out", "{tmp}/ckpt/last.pt"), "predict",
                                       "output '{tmp}/ckpt/last.pt' is a file the run '{run}' owns (its last checkpoint)"),
    "through ..": (("export", "{run}", "--out", "{run}/predictions/../checkpoints/last.pt"), "export", "owns (its last checkpoint)"),
}


@pytest.mark.parametrize("case", OWNED)
def test_an_output_the_run_owns_is_refused_naming_a_safe_place(case, tmp_path, capsys, done, imgs):
    run, before = done
    (tmp_path / "ckpt").symlink_to(run / "checkpoints")
    _isic_csv(tmp_path)
    args, command, expected = OWNED[case]
    fill = {"run": run, "imgs": imgs, "tmp": tmp_path}
    code, err = cli(capsys, *(a.format(**fill) for a in args))
    assert code == 2
    line = one_error(err, expected.format(**fill), "write elsewhere")
    safe = _suggested(line)
    assert rundir.check_output(safe, command, "x") == safe and not safe.exists(), "the suggested place really is free to write"
    assert digests(run) == before


NOT_A_FILE = {  # case -> (args, what the line must say)
    "predict onto a folder": (("predict", "{run}", "{imgs}", "--out", "{tmp}/out"), "output '{tmp}/out' is a folder; pass a file path, e.g. '{tmp}/out/predictions.csv'"),
    "predict onto checkpoints/": (("predict", "{run}", "{imgs}", "--out", "{run}/checkpoints"),
                                  "output '{run}/checkpoints' is a folder; pass a file path, e.g. '{run}/predictions.csv'"),
    "export onto the run": (("export", "{run}", "--out", "{run}"), "output '{run}' is a folder; pass a file path, e.g. '{run}/model.onnx'"),
    "compare onto a folder": (("compare", "{run}", "--out", "{tmp}/out"), "output '{tmp}/out' is a folder; pass a file path, e.g. '{tmp}/out/comparison.md'"),
    "a file in the way": (("predict", "{run}", "{imgs}", "--out", "{run}/config.yaml/p.csv"),
                          "output '{run}/config.yaml/p.csv' cannot be written: '{run}/config.yaml' is a file, not a folder"),
    "describe into a file": (("data", "describe", "-c", "{run}/config.yaml", "--out", "{run}/results.json"), "'{run}/results.json' is a file, not a folder"),
}


@pytest.mark.parametrize("case", NOT_A_FILE)
def test_an_output_that_cannot_be_a_file_is_refused(case, tmp_path, capsys, done, imgs):
    run, before = done
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    args, expected = NOT_A_FILE[case]
    fill = {"run": run, "imgs": imgs, "tmp": tmp_path}
    code, err = cli(capsys, *(a.format(**fill) for a in args))
    assert code == 2
    one_error(err, expected.format(**fill))
    assert digests(run) == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]


JOBS = {  # case -> (args, the files it writes, relative to {run} or absolute)
    "export's default model": (("export", "{run}", "--format", "torchscript"), ["{run}/model.pt", "{run}/model.pt.json", "{run}/model_card.md"]),
    "onnx under any name": (("export", "{run}", "--out", "{tmp}/model.bin"), ["{tmp}/model.bin", "{tmp}/model.bin.json"]),
    "torchscript named .onnx": (("export", "{run}", "--format", "torchscript", "--out", "{tmp}/m.onnx"), ["{tmp}/m.onnx", "{tmp}/m.onnx.json"]),
    "predict beside the run's files": (("predict", "{run}", "{imgs}", "--out", "{run}/predictions.csv"), ["{run}/predictions.csv"]),
}


@pytest.mark.parametrize("case", JOBS)
def test_a_command_still_writes_its_own_outputs_and_nothing_else(case, tmp_path, capsys, done, imgs):
    run, before = done
    args, outputs = JOBS[case]
    fill = {"run": run, "imgs": imgs, "tmp": tmp_path}
    code, err = cli(capsys, *(a.format(**fill) for a in args))
    assert code == 0 and err == []
    written = [o.format(**fill) for o in outputs]
    after = digests(run)
    assert {k: v for k, v in after.items() if not str(run / k).startswith(tuple(written))} == \
        {k: v for k, v in before.items() if not str(run / k).startswith(tuple(written))}
    first = Path(written[0])
    if args[0] == "export":  # the file loads, whatever its name says
        meta = rundir.read_json(Path(f"{first}.json"))
        x = np.random.default_rng(0).random((2, *meta["input_shape"][1:]), dtype=np.float32)
        assert np.allclose(run_exported(first, x).sum(axis=1), 1.0, atol=1e-4)
    if args[0] == "predict":  # every row
        with open(first, newline="") as f:
            rows = list(csv.reader(f))
        assert rows[0][0] == "image" and len(rows) == 1 + IMAGES and all(len(r) == len(rows[0]) for r in rows)
    assert not [p for p in first.parent.iterdir() if ".tmp" in p.name], "no temp file is left"


# ------------------------------------------------------------------------------ symbolic links
def _plant(run: Path, outside: Path, case: str) -> None:
    victim = outside / "victim.txt"
    if case == "report.md is a link out":
        (run / "report.md").unlink()
        (run / "report.md").symlink_to(victim)
    elif case == "planted temp names":
        for name in ("model.pt.tmp", ".model.pt.tmp", "model.pt.json.tmp", ".model.pt.json.tmp", "report.html.tmp", ".report.html.tmp"):
            (run / name).symlink_to(victim)
    elif case == "report_files links out":
        shutil.copytree(run / "report_files", outside / "figures")
        shutil.rmtree(run / "report_files")
        (run / "report_files").symlink_to(outside / "figures")


LINKS = {  # case -> (args, exit status, what the error line must say)
    "report.md is a link out": (("report", "{run}"), 0, None),
    "planted temp names": (("export", "{run}", "--format", "torchscript"), 0, None),
    "report_files links out": (("report", "{run}"), 2, "'{run}/report_files' leads outside '{run}' (to '{tmp}/outside/figures', through a symbolic link)"),
}


@pytest.mark.parametrize("case", LINKS)
def test_writes_never_follow_a_link_out_of_the_run(case, tmp_path, capsys, done):
    run, _ = done
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("not longtail's")
    _plant(run, outside, case)
    before, kept = digests(outside), digests(run)
    args, status, expected = LINKS[case]
    fill = {"run": run, "tmp": tmp_path}
    code, err = cli(capsys, *(a.format(**fill) for a in args))
    assert code == status
    assert digests(outside) == before, "no file outside the run was written"
    if expected is not None:
        one_error(err, expected.format(**fill), "replace the link with a real folder")
        assert digests(run) == kept
    if case == "report.md is a link out":
        assert not (run / "report.md").is_symlink() and (run / "report.md").read_text().startswith("# ")
    if case == "planted temp names":
        assert all((run / n).is_symlink() for n in ("model.pt.tmp", ".model.pt.tmp")), "planted names are left alone, never written through"


@pytest.mark.parametrize("alias", ["a symbolic link", "a path with .."])
def test_one_run_reached_by_two_paths_has_one_lock(alias, tmp_path, capsys, done):
    run, before = done
    if alias == "a symbolic link":
        other = tmp_path / "alias"
        other.symlink_to(run)
    else:
        other = run / "predictions" / ".." / ".." / run.name
    with rundir.RunLock(run):  # this test process is the live writer
        code, err = cli(capsys, "train", "--resume", other, "train.epochs=2")
    assert code == 2
    # a resume through a symbolic link works on (and names) the real run folder
    shown = run if alias == "a symbolic link" else other
    one_error(err, f"run directory '{shown}' is in use by process {os.getpid()}")
    assert digests(run) == before


# ------------------------------------------------------------------------------ damaged run files
DAMAGED = {  # case -> (file, its content, the commands that read it, what the line must say)
    "data.json cut short": (rundir.DATA_META, '{"class_names": ["0",', ("predict", "export", "eval"), "is not valid JSON (line 1)"),
    "data.json a list": (rundir.DATA_META, "[1, 2]", ("predict", "export", "eval"), "holds a JSON list, not the object longtail writes"),
    "data.json without its entries": (rundir.DATA_META, '{"channels": 1}', ("export", "eval"), "has no 'class_names', 'train_counts', 'norm_mean', 'norm_std' entry"),
    "splits.json cut short": (rundir.SPLITS, '{"format": 1,\n "train"', ("eval", "resume"), "is not valid JSON (line 2)"),
    "splits.json of another shape": (rundir.SPLITS, '{"train": []}', ("resume",), "has no 'format', 'sizes' entry"),
    "posthoc.json not JSON": (rundir.POSTHOC, "tau_norm: 1\n", ("predict", "export", "eval"), "is not valid JSON (line 1)"),
    "posthoc.json without a tau": (rundir.POSTHOC, '{"logit_adjust": {"tau": "one"}}', ("predict", "export"), "entry 'logit_adjust' has no numeric tau"),
    "metrics.jsonl with a bad line before the last": (rundir.METRICS, '{"epoch": 1}\n{"epo\n{"epoch": 1}\n', ("resume",), "line 2 is not a JSON object"),
}


@pytest.mark.parametrize("case", DAMAGED)
def test_a_damaged_run_file_is_one_line(case, tmp_path, capsys, done, imgs):
    run, _ = done
    name, content, commands, expected = DAMAGED[case]
    (run / name).write_text(content)
    before = digests(run)
    calls = {"predict": ("predict", run, imgs, "--out", tmp_path / "p.csv"), "export": ("export", run, "--out", tmp_path / "m.onnx"),
             "eval": ("eval", run, "--split", "val"), "resume": ("train", "--resume", run, "train.epochs=2")}  # resume extends it on a copy
    for command in commands:
        code, err = cli(capsys, *calls[command])
        assert code == 2, command
        one_error(err, f"'{run / name}' {expected}", "the run directory is damaged", "or retrain with --overwrite")
        assert digests(run) == before, command
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "m.onnx").exists()


def test_a_half_written_last_line_of_metrics_jsonl_is_dropped_on_resume(tmp_path, capsys, done):
    run, _ = done
    (run / rundir.RESULTS).unlink()  # an unfinished run, resumed in place
    lines = (run / rundir.METRICS).read_text()
    with open(run / rundir.METRICS, "a") as f:
        f.write('{"epoch": 2, "train_lo')  # an append a kill cut short
    code, err = cli(capsys, "train", "--resume", run, "train.epochs=2", "--stop-after", "1")  # continue it, training no epoch yet
    assert code == 0 and err == []
    assert (run / rundir.METRICS).read_text() == lines


# ------------------------------------------------------------------------------ a full disk
FULL = {  # command -> (args, a pre-existing output it must keep, or None)
    "predict": (("predict", "{run}", "{imgs}", "--out", "{run}/predictions.csv"), "predictions.csv"),
    "export": (("export", "{run}", "--format", "torchscript"), "model.pt"),
    "report": (("report", "{run}"), None),
}
FULL_CASES = [("predict", "monkeypatched"), ("predict", "a real full tmpfs"), ("export", "monkeypatched"), ("export", "a real full tmpfs"),
              ("report", "a real full tmpfs")]  # the report takes seconds to draw: once


def _mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or done.returncode}); the monkeypatched case covers the code")


def _fill(folder: Path) -> None:
    """Write a filler file until the file system is full."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC


@pytest.mark.parametrize("command, how", FULL_CASES)
def test_a_full_disk_is_one_line_and_keeps_every_file(command, how, tmp_path, capsys, monkeypatch, done, imgs):
    run, _ = done
    args, earlier = FULL[command]
    mount = tmp_path / "full"
    if how == "a real full tmpfs":
        _mount_tmpfs(mount, "16m")
        run = Path(shutil.copytree(run, mount / "done"))
    try:
        if earlier is not None:
            (run / earlier).write_bytes(b"an earlier output")
        if how == "monkeypatched":
            def full(fd: int) -> None:
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(rundir.files.os, "fsync", full)
        else:
            _fill(mount)
        before = digests(run)
        code, err = cli(capsys, *(a.format(run=run, imgs=imgs) for a in args))
        assert code == 2
        one_error(err, f"cannot write '{run}/", "(No space left on device); free disk space and run again")
        assert digests(run) == before
        assert not [p for p in run.rglob("*") if ".tmp" in p.name], "the temp file of the failed write is removed"
    finally:
        if how == "a real full tmpfs":
            subprocess.run(["umount", str(mount)], check=False)

