"""Bad checkpoints, run directories, disk and output folder faults, two writers (issue #13).

Every case asserts the one-line message, the exit status of the ``longtail`` command, and that
every file of a finished run that already sits in the output folder keeps its sha256. The CLI runs
in-process through :func:`longtail.cli.main` (the same exit status the script returns).
"""

from __future__ import annotations

import os
import pickle
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import longtail
from longtail import rundir
from longtail.cli.commands import main
from longtail.core.errors import LongtailError
from longtail.rundir import files as rundir_files
from longtail.rundir.checkpoint import load_checkpoint

from .common import cli, digests, image_folder, one_error, small, write_yaml


# ------------------------------------------------------------------------------ checkpoints
def _corrupt(path: Path, case: str) -> None:
    data = path.read_bytes()
    if case == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif case == "garbage":
        path.write_bytes(os.urandom(4096))
    elif case == "zero-byte":
        path.write_bytes(b"")
    elif case == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, path)


@pytest.mark.parametrize("case, expected", [
    ("truncated", "is truncated or not a torch checkpoint"),
    ("garbage", "is truncated or not a torch checkpoint"),
    ("zero-byte", "is empty (0 bytes)"),
    ("foreign", "is not a longtail checkpoint"),
])
def test_bad_checkpoint_is_refused_for_eval_predict_and_resume(case, expected, tmp_path, capsys, done):
    run, _ = done
    _corrupt(run / rundir.BEST, case)
    _corrupt(run / rundir.LAST, case)
    before = digests(run)
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    for args, ckpt in ((("eval", run), rundir.BEST), (("predict", run, img, "--out", tmp_path / "p.csv"), rundir.BEST),
                       (("train", "--resume", run, "train.epochs=2"), rundir.LAST)):
        code, err = cli(capsys, *args)
        assert code == 2, args
        one_error(err, f"checkpoint '{run / ckpt}'", expected)
        assert digests(run) == before, args


class _Payload:
    """Pickles to a call of os.system: loading it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_checkpoint_never_runs(tmp_path, capsys, done):
    run, _ = done
    marker = tmp_path / "PWNED"
    evil = {"model": _Payload(marker), "model_name": "small_cnn", "progress": {"global_epoch": 0}}
    for rel in (rundir.BEST, rundir.LAST):
        torch.save(evil, run / rel)
    before = digests(run)
    with pytest.raises(pickle.UnpicklingError):  # the payload is real: an unsafe load would run it
        torch.load(run / rundir.BEST, weights_only=True)
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    for args in (("eval", run), ("predict", run, img), ("train", "--resume", run)):
        code, err = cli(capsys, *args)
        assert code == 2
        one_error(err, "is not plain tensor data and was not loaded")
    assert not marker.exists(), "the checkpoint's payload ran"
    assert digests(run) == before


def test_checkpoint_of_another_class_list_is_refused(tmp_path, capsys, done):
    run, _ = done
    for rel in (rundir.BEST, rundir.LAST):
        state = load_checkpoint(run / rel)
        state["class_names"] = list(reversed(state["class_names"]))
        torch.save(state, run / rel)
    before = digests(run)
    for args in (("eval", run, "--split", "val"), ("train", "--resume", run, "train.epochs=2")):
        code, err = cli(capsys, *args)
        assert code == 2
        one_error(err, "has class 0 '9' where the data has '0'", "use the data (and class list) the run was trained on")
    assert digests(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["done"]


def test_checkpoint_of_other_model_settings_is_refused(tmp_path, done):
    run, _ = done
    state = load_checkpoint(run / rundir.BEST)
    state["config_hash"] = "0" * 16
    torch.save(state, run / rundir.BEST)
    with pytest.raises(LongtailError, match="was trained with other model settings"):
        longtail.evaluate(run, split="val")


# ------------------------------------------------------------------------------ the run directory
def test_resume_of_a_finished_run_changes_nothing(tmp_path, capsys, caplog, done):
    run, before = done
    caplog.set_level("INFO", logger="longtail")
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    assert "is already complete (1/1 epochs); nothing changed" in caplog.text
    assert digests(run) == before


def test_failed_resume_does_not_rewrite_provenance(tmp_path, capsys, done):
    run, before = done
    code, err = cli(capsys, "train", "--resume", run, "model.name=resnet32", "train.epochs=2")
    assert code == 2
    one_error(err, 'model.name ("small_cnn" -> "resnet32")', "cannot continue exactly")
    root = image_folder(tmp_path / "imgs")  # other data: the run's saved splits no longer fit
    code, err = cli(capsys, "train", "--resume", run, "data.source.name=image_folder", f"data.source.root={root}",
                    "data.image_size=8", "data.channels=1", "train.epochs=2")
    assert code == 2
    one_error(err, 'data.source.name ("digits" -> "image_folder")', "data.image_size (null -> 8)")
    assert digests(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["done"], "the staging copy is removed"


def test_overwrite_after_a_data_error_keeps_the_finished_run(tmp_path, capsys, done):
    run, before = done
    cfg = yaml.safe_load((run / rundir.CONFIG).read_text())
    cfg["data"]["source"] = {"name": "image_folder", "root": str(tmp_path / "missing")}
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg), "--overwrite")
    assert code == 2
    one_error(err, "not found or not a folder")
    assert digests(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["done"], "no staging folder or lock file left"


def test_overwrite_succeeds_by_swapping_in_the_new_run(tmp_path, capsys, done):
    run, before = done
    code, err = cli(capsys, "train", "-c", run / rundir.CONFIG, "--overwrite", "seed=1")
    assert code == 0 and err == []
    assert yaml.safe_load((run / rundir.CONFIG).read_text())["seed"] == 1
    assert digests(run)[rundir.LAST] != before[rundir.LAST]
    assert f"Run directory: `{run}`" in (run / "report.md").read_text()
    assert sorted(p.name for p in run.parent.iterdir()) == ["done"]


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    folder = tmp_path / "runs" / "mine"
    folder.mkdir(parents=True)
    (folder / "thesis.tex").write_text("years of work")
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", small(tmp_path, "mine")), "--overwrite")
    assert code == 2
    one_error(err, "is not a longtail run directory", "--overwrite only replaces runs")
    assert (folder / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize("where", ["a file as output_dir", "a file in the path"])
def test_output_dir_that_cannot_be_created(where, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = blocker if where == "a file as output_dir" else blocker / "sub"
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", small(tmp_path, "r", output_dir=str(out))))
    assert code == 2
    one_error(err, f"output_dir '{out}'", "set output_dir to a folder")
    assert blocker.read_text() == "x"


def test_disk_full_during_a_save_is_one_line(tmp_path, capsys, monkeypatch, done):
    import errno

    run, before = done

    def full(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir_files.torch, "save", full)
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", small(tmp_path, "full")))
    assert code == 2
    one_error(err, "checkpoints/", "No space left on device", "free disk space")
    assert not (tmp_path / "runs" / "full").exists(), "nothing resumable was written: the first run is removed"
    assert digests(run) == before


def test_files_honour_the_umask_and_resume_cleans_temp_files(tmp_path):
    old = os.umask(0o022)
    try:
        first = longtail.train(small(tmp_path, "modes", train={"epochs": 2}), stop_after=1)
    finally:
        os.umask(old)
    for rel in (rundir.LAST, rundir.BEST, rundir.SPLITS, rundir.CONFIG):
        assert stat.S_IMODE((first.run_dir / rel).stat().st_mode) == 0o644, rel
    leftover = first.run_dir / "checkpoints" / ".last.pt.abc123"
    leftover.write_bytes(b"half a checkpoint")
    assert longtail.train(resume=first.run_dir).finished
    assert not leftover.exists()


def test_second_writer_is_refused_naming_the_live_process(tmp_path, capsys, done):
    run, before = done
    with rundir.RunLock(run):  # this test process is the live writer
        code, err = cli(capsys, "train", "--resume", run, "train.epochs=2")
        assert code == 2
        one_error(err, f"'{run}' is in use by process {os.getpid()}", "wait for it to finish")
        code, err = cli(capsys, "train", "-c", run / rundir.CONFIG, "--overwrite")
        assert code == 2
        one_error(err, f"is in use by process {os.getpid()}")
    assert digests(run) == before


def test_the_lock_of_a_killed_writer_is_released(tmp_path, capsys, done):
    run, before = done
    lock = run.parent / f".{run.name}.lock"  # a writer's lock, taken the way RunLock takes it
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, f'{os.getpid()}\\nlongtail train\\n'.encode()); "
         "print('locked', flush=True); time.sleep(120)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, err = cli(capsys, "train", "--resume", run)
        assert code == 2
        one_error(err, f"is in use by process {holder.pid} (longtail train)")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    code, err = cli(capsys, "train", "--resume", run)  # the kernel released the dead writer's lock
    assert code == 0 and err == []
    assert digests(run) == before
    assert not lock.exists()


def test_checkpoint_from_a_newer_format_is_refused(tmp_path, done):
    run, _ = done
    state = load_checkpoint(run / rundir.BEST)
    state["format_version"] = 99
    torch.save(state, run / rundir.BEST)
    with pytest.raises(LongtailError, match=r"has format version 99, newer than this longtail reads \(1\); upgrade longtail"):
        longtail.evaluate(run, split="val")


def test_extending_a_finished_run_swaps_in_the_longer_run(tmp_path, done):
    run, before = done
    result = longtail.train(resume=run, overrides=["train.epochs=2"])
    assert result.finished and result.run_dir == run
    assert [r["epoch"] for r in rundir.read_jsonl(run / rundir.METRICS)] == [1, 2]
    assert digests(run)[rundir.LAST] != before[rundir.LAST]
    assert sorted(p.name for p in run.parent.iterdir()) == ["done"]


def test_checkpoint_written_before_format_1_still_resumes(tmp_path):
    """Older checkpoints kept numpy RNG state and no identity fields: they load (numpy data is allow-listed) and resume."""
    cfg = small(tmp_path, "legacy", train={"epochs": 2})
    straight = longtail.train({**cfg, "name": "straight"}).run_dir
    run = longtail.train(cfg, stop_after=1).run_dir
    state = load_checkpoint(run / rundir.LAST)
    for key in ("format_version", "class_names", "config_hash"):
        del state[key]
    npy = state["rng"]["numpy"]
    state["rng"]["numpy"] = (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    state["rng"]["python"] = tuple(state["rng"]["python"][:1]) + (tuple(state["rng"]["python"][1]), state["rng"]["python"][2])
    torch.save(state, run / rundir.LAST)
    assert longtail.train(resume=run).finished
    a, b = load_checkpoint(run / rundir.LAST)["model"], load_checkpoint(straight / rundir.LAST)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_swap_killed_half_way_is_undone_by_the_next_writer(tmp_path, capsys, done):
    run, before = done
    os.rename(run, run.parent / ".done.replaced-4242")  # killed between moving the old run aside ...
    (run.parent / ".done.staging-4242").mkdir()  # ... and moving the new one in
    code, err = cli(capsys, "train", "--resume", run)
    assert code == 0 and err == []
    assert digests(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["done"]


def test_sigterm_during_an_overwrite_keeps_the_old_run(tmp_path, capsys, monkeypatch, done):
    from longtail.engine import interrupt
    from longtail.engine import trainer as engine

    run, before = done
    train_one_epoch = engine.Trainer._train_one_epoch

    def preempted(self, parts):
        if signal.getsignal(signal.SIGTERM) is not interrupt._handler:  # never kill the test process itself
            pytest.fail("no SIGTERM handler is installed during training")
        os.kill(os.getpid(), signal.SIGTERM)  # the handler only sets a flag; training stops at the next batch
        return train_one_epoch(self, parts)

    monkeypatch.setattr(engine.Trainer, "_train_one_epoch", preempted)
    code, err = cli(capsys, "train", "-c", run / rundir.CONFIG, "--overwrite")
    assert code == 128 + signal.SIGTERM
    one_error(err, "stopped by SIGTERM", "nothing was changed (the unfinished new run was discarded)")
    assert digests(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["done"]
