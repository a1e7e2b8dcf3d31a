"""Bad inputs and faults, as a careless or hostile user would produce them (issue #13).

Every case asserts the one-line message, the exit status of the ``longtail`` command, and that
every file of a finished run that already sits in the output folder keeps its sha256. The CLI runs
in-process through :func:`longtail.cli.main` (the same exit status the script returns) except
where a real process is the point: signals, two writers, kill -9.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import longtail
from longtail import rundir
from longtail.checkpoint import load_checkpoint
from longtail.cli import main
from longtail.data.decode import read_image
from longtail.errors import LongtailError

from .helpers import tiny_config

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


# ------------------------------------------------------------------------------ helpers
def digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path -> hex)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def small(tmp: Path, name: str, **sections) -> dict:
    """The digits quickstart, tiny: 1 epoch, at most 20 images per class and split."""
    cfg = tiny_config(tmp, name=name, **sections)
    cfg["data"] = {**cfg["data"], "long_tail": None, "max_per_class": 20, **sections.get("data", {})}
    cfg["train"] = {**cfg["train"], "epochs": 1, "threads": 1, **sections.get("train", {})}
    return cfg


def write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(capsys, *args: str) -> tuple[int, list[str]]:
    """Run ``longtail ARGS`` in-process: (exit status, the lines it wrote to stderr starting with 'error:')."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("error:")]


def one_error(lines: list[str], *parts: str) -> str:
    """The single 'error:' line, checked to contain every one of ``parts``."""
    assert len(lines) == 1, lines
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny run (trained once per module); tests use copies of it."""
    tmp = tmp_path_factory.mktemp("finished")
    return longtail.train(small(tmp, "done")).run_dir


@pytest.fixture
def done(finished, tmp_path) -> tuple[Path, dict[str, str]]:
    """A private copy of the finished run at tmp_path/runs/done, with its file digests."""
    run = tmp_path / "runs" / "done"
    shutil.copytree(finished, run)
    cfg = yaml.safe_load((run / rundir.CONFIG).read_text())
    cfg["output_dir"] = str(tmp_path / "runs")
    (run / rundir.CONFIG).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return run, digests(run)


def image_folder(root: Path, per_class: int = 6, size: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    return root


def folder_config(tmp: Path, root: Path, name: str = "files", **source) -> dict:
    return small(tmp, name, data={
        "source": {"name": "image_folder", "root": str(root), **source}, "split": {"val": 0.25, "test": 0.25},
        "train_transforms": [], "batch_size": 4, "image_size": 8,
    })


def csv_config(tmp: Path, rows: list[tuple[str, str]], root: Path, name: str = "csvrun", **source) -> dict:
    f = tmp / f"{name}.csv"
    f.write_text("image,label\n" + "".join(f"{p},{lab}\n" for p, lab in rows))
    return small(tmp, name, data={
        "source": {"name": "csv", "file": str(f), "image_root": str(root), **source},
        "split": {"val": 0.25, "test": 0.25}, "train_transforms": [], "batch_size": 4, "image_size": 8,
    })


def csv_rows(root: Path) -> list[tuple[str, str]]:
    return [(f"{c}/{i}.png", c) for c in ("a", "b") for i in range(6)]


# ------------------------------------------------------------------------------ images
@pytest.mark.parametrize("case", ["corrupt", "truncated", "zero-byte", "text named .jpg"])
def test_bad_image_file_is_one_line_error_naming_it(case, tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    bad = root / "a" / "bad.jpg"
    good = (root / "a" / "0.png").read_bytes()
    bad.write_bytes({"corrupt": b"\xff\xd8\xff\xe0" + os.urandom(200), "truncated": good[: len(good) // 2],
                     "zero-byte": b"", "text named .jpg": b"just some text\n"}[case])
    if case == "truncated":
        bad = bad.rename(root / "a" / "bad.png")
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", folder_config(tmp_path, root)))
    assert code == 2
    one_error(err, str(bad), "cannot be decoded", "on_bad_image=skip")
    assert not (tmp_path / "runs" / "files").exists(), "a failed first run leaves no folder"
    assert digests(run) == before


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "RGBA", "P", "L", "F"])
def test_other_image_modes_in_an_rgb_set_decode_to_the_right_rgb(mode, tmp_path):
    grey = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))  # 16 x 16, 0..240
    rgb = np.stack([grey, grey, grey], axis=-1)
    path = tmp_path / f"img_{mode.replace(';', '')}.{'tiff' if mode in ('CMYK', 'F') else 'png'}"
    if mode == "I;16":
        Image.fromarray(grey.astype(np.uint16) * 257).save(path)  # full 16-bit range
    elif mode == "F":
        Image.fromarray(grey.astype(np.float32) / 255.0).save(path)
    else:
        img = Image.fromarray(rgb)
        (img.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P" else img.convert(mode)).save(path)
    assert Image.open(path).mode == mode
    out = read_image(path, channels=3)
    assert out.shape == (3, 16, 16) and out.dtype == torch.uint8
    assert np.abs(out.permute(1, 2, 0).numpy().astype(int) - rgb.astype(int)).max() <= 2  # 16-bit is not clipped to 255
    assert np.abs(read_image(path, channels=1)[0].numpy().astype(int) - grey.astype(int)).max() <= 2


def test_mixed_modes_in_an_rgb_folder_train(tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    px = np.full((8, 8), 40000, dtype=np.uint16)
    Image.fromarray(px).save(root / "a" / "wide.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).convert("CMYK").save(root / "b" / "cmyk.jpg")
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(root / "b" / "rgba.png")
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", folder_config(tmp_path, root)))
    assert code == 0 and err == []
    assert read_image(root / "a" / "wide.png", 3).unique().tolist() == [round(40000 * 255 / 65535)]
    assert digests(run) == before


# ------------------------------------------------------------------------------ annotations
def test_unknown_label_is_refused(tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    shutil.copy(root / "a" / "0.png", root / "a" / "z.png")
    cfg = csv_config(tmp_path, csv_rows(root) + [("a/z.png", "zebra")], root, classes=["a", "b"])
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg))
    assert code == 2
    one_error(err, "label 'zebra'", "not in the class list")
    assert digests(run) == before


def test_duplicated_ids_are_an_error_unless_dedupe(tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    rows = csv_rows(root) + [("a/1.png", "a")]
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", csv_config(tmp_path, rows, root)))
    assert code == 2
    one_error(err, "row 14", "'a/1.png'", "repeats", "row 3", "dedupe: true")
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", csv_config(tmp_path, rows, root, name="deduped", dedupe=True)))
    assert code == 0 and err == []
    assert len(json.loads((tmp_path / "runs" / "deduped" / "data.json").read_text())["class_names"]) == 2
    assert digests(run) == before


def test_duplicated_id_with_conflicting_labels_is_an_error_even_with_dedupe(tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    rows = csv_rows(root) + [("a/1.png", "b")]
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", csv_config(tmp_path, rows, root, dedupe=True)))
    assert code == 2
    one_error(err, "row 14", "another label")
    assert digests(run) == before


def test_missing_image_file_says_not_found(tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", csv_config(tmp_path, csv_rows(root) + [("a/gone.png", "a")], root)))
    assert code == 2
    one_error(err, str(root / "a" / "gone.png"), "not found")
    assert digests(run) == before


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_annotation_path_outside_the_root_is_refused_without_saying_if_it_exists(kind, tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "data" / "imgs")
    secret = tmp_path / "data" / "secret.png"
    shutil.copy(root / "a" / "0.png", secret)
    messages = []
    for target in ("secret.png", "nothing-here.png"):
        path = f"../{target}" if kind == "dotdot" else str(tmp_path / "data" / target)
        cfg = csv_config(tmp_path, csv_rows(root) + [(path, "a")], root)
        code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg))
        assert code == 2
        messages.append(one_error(err, "row 14", "outside the data root", "allow_outside_root").replace(target, "X"))
    assert messages[0] == messages[1], "the error must not reveal whether the outside file exists"
    cfg = csv_config(tmp_path, csv_rows(root) + [("../secret.png" if kind == "dotdot" else str(secret), "a")], root, name="allowed", allow_outside_root=True)
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg))
    assert code == 0 and err == []
    assert digests(run) == before


def test_list_file_and_json_paths_are_contained_too(tmp_path):
    from longtail.registry import DATASETS

    root = image_folder(tmp_path / "imgs")
    (tmp_path / "train.txt").write_text("a/0.png 0\n\n../../etc/passwd 1\n")
    with pytest.raises(LongtailError, match=r"train.txt' line 3: path '../../etc/passwd' is outside the data root"):
        DATASETS.create("list_file", train=str(tmp_path / "train.txt"), image_root=str(root), num_classes=2)
    anns = {"annotations": [{"image_id": "x", "category_id": 0, "derm_path": "a/0.png"}, {"image_id": "y", "category_id": 1, "derm_path": "/etc/passwd"}], "num_classes": 2}
    (tmp_path / "train.json").write_text(json.dumps(anns))
    with pytest.raises(LongtailError, match=r"annotation 1: path '/etc/passwd' is outside the data root"):
        DATASETS.create("mbit_json", train=str(tmp_path / "train.json"), root=str(root))


# ------------------------------------------------------------------------------ config
def test_malformed_yaml(tmp_path, capsys, done):
    run, before = done
    (tmp_path / "bad.yaml").write_text("data:\n  source: {name: digits\n  batch_size: 4\n")
    code, err = cli(capsys, "train", "-c", tmp_path / "bad.yaml")
    assert code == 2
    one_error(err, "not valid YAML at line")
    assert digests(run) == before


@pytest.mark.parametrize("override, expected", [
    ("train.epochz=2", "unknown key 'train.epochz' (did you mean 'epochs'?)"),
    ("loss.name=focall", "unknown loss 'focall' (did you mean 'focal'?)"),
    ("train.epochs=two", "bad value for 'train.epochs'"),
])
def test_typos_and_wrong_types_in_the_config(override, expected, tmp_path, capsys, done):
    run, before = done
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", small(tmp_path, "typo")), override)
    assert code == 2
    one_error(err, expected)
    assert not (tmp_path / "runs" / "typo").exists()
    assert digests(run) == before


def test_wrongly_typed_component_argument_is_a_config_error(tmp_path, capsys, done):
    run, before = done
    cfg = write_yaml(tmp_path / "c.yaml", small(tmp_path, "typed"))
    code, err = cli(capsys, "train", "-c", cfg, "loss.name=focal", "loss.gamma=abc")
    assert code == 2
    one_error(err, "loss.gamma: 'abc' is not valid for loss 'focal'", "expected float")
    code, err = cli(capsys, "config", "show", "-c", cfg, "loss.name=focal", "loss.gamma=2")  # an int for a float is fine
    assert code == 0 and err == []
    assert digests(run) == before


def test_zero_epochs_is_one_line_and_leaves_no_folder(tmp_path, capsys, done):
    run, before = done
    out = tmp_path / "fresh-output"
    cfg = small(tmp_path, "zero", output_dir=str(out))
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg), "train.epochs=0")
    assert code == 2
    one_error(err, "train.epochs is 0")
    assert not out.exists()
    assert digests(run) == before


def test_empty_class_folder(tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    (root / "c").mkdir()
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", folder_config(tmp_path, root)))
    assert code == 2
    one_error(err, "class 'c' (index 2) has no training images")
    assert not (tmp_path / "runs" / "files").exists()
    assert digests(run) == before


def test_empty_validation_split(tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    cfg = folder_config(tmp_path, root)
    cfg["data"]["split"] = {"val": 0.0, "test": 0.25}
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg))
    assert code == 2
    one_error(err, "data.split.val is 0")
    assert digests(run) == before


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


def test_checkpoint_of_another_class_list_is_refused(tmp_path, done):
    run, _ = done
    state = load_checkpoint(run / rundir.BEST)
    state["class_names"] = list(reversed(state["class_names"]))
    torch.save(state, run / rundir.BEST)
    with pytest.raises(LongtailError, match=r"has class 0 '9' where the data has '0'"):
        longtail.evaluate(run, split="val")


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
    one_error(err, "is from model 'small_cnn'", "resume with the run's own config")
    code, err = cli(capsys, "train", "--resume", run, "data.max_per_class=5", "data.source.name=cifar10", "train.epochs=2")
    assert code == 2 and len(err) == 1
    assert digests(run) == before


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

    monkeypatch.setattr(rundir.torch, "save", full)
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


# ------------------------------------------------------------------------------ processes
def test_second_writer_is_refused_naming_the_live_process(tmp_path, done):
    run, before = done
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from longtail.rundir import RunLock; l = RunLock(sys.argv[1]); "
         "l.acquire(); print('locked', flush=True); time.sleep(120)", str(run)],
        env=ENV, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run([sys.executable, "-m", "longtail", "train", "--resume", str(run), "train.epochs=2"],
                                env=ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        one_error([line for line in second.stderr.splitlines() if line.startswith("error:")],
                  f"'{run}' is in use by process {holder.pid}")
        assert digests(run) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with rundir.RunLock(run):  # the kernel released the dead holder's lock
        pass


def _train_process(cfg_path: Path, *extra: str, prelude: str = "") -> subprocess.Popen:
    code = f"import sys\n{prelude}\nfrom longtail.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, "train", "-c", str(cfg_path), *extra],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_epochs(run: Path, n: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and len(rundir.read_jsonl(run / rundir.METRICS)) < n and proc.poll() is None:
        time.sleep(0.02)


def _kill_config(tmp: Path, name: str) -> dict:
    return small(tmp, name, data={"max_per_class": 40, "batch_size": 8}, train={"epochs": 5})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[str, torch.Tensor]:
    """Final weights of the run the interrupted runs below must reproduce bit for bit."""
    tmp = tmp_path_factory.mktemp("straight")
    run = longtail.train(_kill_config(tmp, "straight")).run_dir
    return load_checkpoint(run / rundir.LAST)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_sigint_mid_epoch_then_resume_is_bit_identical(sig, tmp_path, uninterrupted, done):
    run_done, before = done
    cfg = write_yaml(tmp_path / "k.yaml", _kill_config(tmp_path, "stopped"))
    run = tmp_path / "runs" / "stopped"
    # a slow batch so the signal lands inside an epoch, after two epochs are done
    prelude = ("import time, longtail.engine as e\n_t = e.Trainer._train_one_epoch\n"
               "def slow(self, parts):\n    time.sleep(0.3 if self.progress.global_epoch >= 2 else 0)\n    return _t(self, parts)\n"
               "e.Trainer._train_one_epoch = slow")
    proc = _train_process(cfg, prelude=prelude)
    _wait_for_epochs(run, 2, proc)
    time.sleep(0.1)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig
    one_error([line for line in stderr.splitlines() if line.startswith("error:")],
              f"stopped by {signal.Signals(sig).name}", f"continue with `longtail train --resume {run}`")
    assert load_checkpoint(run / rundir.LAST)["progress"]["global_epoch"] == 2
    assert longtail.train(resume=run).finished
    assert_same_weights(load_checkpoint(run / rundir.LAST)["model"], uninterrupted)
    assert [r["epoch"] for r in rundir.read_jsonl(run / rundir.METRICS)] == [1, 2, 3, 4, 5]
    assert digests(run_done) == before


# kill -9 at chosen points: the prelude patches a function to SIGKILL the process when it is reached
_KILL_POINTS = {
    "inside the checkpoint write": ("longtail.rundir", "torch.save", "f.write(b'partial'); f.flush()", 3),
    "after the log line, before the checkpoint": ("longtail.engine", "Trainer._save_last", "", 2),
    "inside a training batch": ("longtail.engine", "autocast", "", 3),
    "inside validation": ("longtail.engine", "Trainer._validate", "", 2),
}


@pytest.mark.parametrize("point", sorted(_KILL_POINTS))
def test_kill_9_at_any_point_then_resume_is_bit_identical(point, tmp_path, uninterrupted):
    module, attr, before_kill, epoch = _KILL_POINTS[point]
    owner, _, name = attr.rpartition(".")
    target = f"m.{owner}" if owner else "m"
    prelude = (
        f"import os, signal, importlib\nm = importlib.import_module('{module}')\n"
        f"import longtail.engine as eng\n"
        f"_orig = getattr({target}, '{name}')\n"
        "calls = [0]\n"
        "def patched(*a, **k):\n"
        "    f = a[1] if len(a) > 1 else None\n"
        "    import longtail.engine\n"
        f"    if _epoch[0] >= {epoch}:\n"
        f"        {before_kill or 'pass'}\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return _orig(*a, **k)\n"
        f"setattr({target}, '{name}', patched)\n"
        "_epoch = [0]\n"
        "_run = eng.Trainer._run_epoch\n"
        "def counting(self, parts, e):\n    _epoch[0] = self.progress.global_epoch + 1\n    return _run(self, parts, e)\n"
        "eng.Trainer._run_epoch = counting\n"
    )
    cfg = write_yaml(tmp_path / "k.yaml", _kill_config(tmp_path, "killed"))
    run = tmp_path / "runs" / "killed"
    proc = _train_process(cfg, prelude=prelude)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, "the kill point was not reached"
    saved = load_checkpoint(run / rundir.LAST)["progress"]["global_epoch"]
    assert saved == epoch - 1
    assert longtail.train(resume=run).finished
    assert_same_weights(load_checkpoint(run / rundir.LAST)["model"], uninterrupted)
    assert [r["epoch"] for r in rundir.read_jsonl(run / rundir.METRICS)] == [1, 2, 3, 4, 5]
    assert not list((run / "checkpoints").glob(".*")), "temp files of the killed write are cleaned on resume"
