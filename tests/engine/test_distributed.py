"""Data-parallel training: 2 CPU processes on gloo train what 1 process trains; rank 0 alone writes;
a run killed with SIGKILL resumes (with another number of processes); a failing rank stops the run;
torchrun starts the CLI.

Equality needs a model whose training step is batch-independent, since torch's SyncBatchNorm does not
run on CPU: ``small_cnn`` with GroupNorm (``norm: group``), no random augmentation. The global batch
(``data.batch_size``) is the same set of images in both runs, and DDP averages the two half-batch
gradient means into the full-batch mean (the class-weighted mean uses the global batch's weight sum),
so the only difference is float32 summation order: measured 6e-8 on the weights after 2 epochs, so
the tests allow 1e-5; the validation metrics, from logits gathered in dataset order, are equal (an
argmax flips only on a logit tie within that error). The learning rate is 0.01 because at 0.05 this
tiny net's first steps are chaotic enough to grow the 1e-7 rounding into 3e-3 weight differences
within 34 steps (measured), which is no longer a test of the maths.
Each test starts processes (spawn + import torch), so they take seconds each, not milliseconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import longtail
from longtail import rundir
from longtail.core.errors import LongtailError
from longtail.engine import distributed
from longtail.rundir.checkpoint import load_checkpoint

from ..helpers import tiny_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def ddp_config(tmp_path: Path, name: str, devices: int, epochs: int = 2) -> dict[str, Any]:
    return tiny_config(
        tmp_path, name=name,
        data={"train_transforms": [], "batch_size": 32},
        model={"name": "small_cnn", "widths": [8, 16], "norm": "group"},
        optimizer={"name": "sgd", "lr": 0.01},
        sampler={"name": "class_balanced"},
        class_weights={"name": "cdb"},
        posthoc={"tau_norm": True},
        train={"epochs": epochs, "progress": False, "tensorboard": False, "devices": devices, "threads": 1},
    )


def val_rows(run_dir: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k.startswith("val_") or k in ("epoch", "best", "train_images")}
            for r in rundir.read_jsonl(run_dir / rundir.METRICS)]


#: metrics of the argmax (equal) vs of the probabilities (ECE, mAUC: equal to float32 rounding)
DISCRETE = ("epoch", "best", "train_images", "val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_gmean")


def assert_same_metrics(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert [sorted(r) for r in a] == [sorted(r) for r in b]
    for ra, rb in zip(a, b):
        assert {k: ra[k] for k in ra if k in DISCRETE} == {k: rb[k] for k in rb if k in DISCRETE}
        assert {k: ra[k] for k in ra if k not in DISCRETE} == pytest.approx({k: rb[k] for k in rb if k not in DISCRETE}, rel=1e-6, abs=1e-8)


def assert_same_weights(a: Path, b: Path, atol: float = 1e-5) -> None:
    sa, sb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k].float(), sb[k].float(), atol=atol, rtol=0, msg=k)


# ------------------------------------------------------------------ a spy run in each process
def _writes_of_each_rank(cfg: dict[str, Any], log_dir: str) -> None:
    """Launched entry point: train, recording every file this rank opens for writing under output_dir."""
    out = os.path.abspath(cfg["output_dir"])
    writes: list[str] = []

    def hook(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = os.fsdecode(args[0]), args[1], args[2]
            writing = any(c in (mode or "") for c in "wax+") if mode is not None else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing and os.path.abspath(path).startswith(out):
                writes.append(path)

    sys.addaudithook(hook)
    longtail.train(cfg)
    Path(log_dir, f"rank{os.environ['RANK']}.json").write_text(json.dumps(writes))


def _fail_on_rank_1(cfg: dict[str, Any]) -> None:
    """Launched entry point: rank 1 fails in its second epoch, the other rank is in a collective."""
    from longtail.engine import trainer as engine

    run_epoch = engine.Trainer._run_epoch

    def failing(self: Any, parts: Any, epoch: int) -> None:
        if distributed.rank() == 1 and epoch == 1:
            raise LongtailError("disk quota exceeded (injected)")
        run_epoch(self, parts, epoch)

    engine.Trainer._run_epoch = failing  # type: ignore[method-assign]
    longtail.train(cfg)


# ----------------------------------------------------------------------------------- tests
def test_two_gloo_processes_match_one_process_and_only_rank_0_writes(tmp_path):
    one = longtail.train(ddp_config(tmp_path, "one", devices=1))
    logs = tmp_path / "writes"
    logs.mkdir()
    distributed.launch(2, _writes_of_each_rank, ddp_config(tmp_path, "two", devices=1), str(logs))
    two = tmp_path / "runs" / "two"

    assert_same_metrics(val_rows(two), val_rows(one.run_dir))  # val metrics of both epochs, best flags, images seen
    assert [r["epoch"] for r in val_rows(two)] == [1, 2]
    assert_same_weights(two / rundir.LAST, one.run_dir / rundir.LAST)
    results = rundir.read_json(two / rundir.RESULTS)
    assert results["val"]["balanced_accuracy"] == one.results["val"]["balanced_accuracy"]
    assert results["test"]["balanced_accuracy"] == one.results["test"]["balanced_accuracy"]
    assert results["posthoc"]["tau_norm"]["tau"] == one.results["posthoc"]["tau_norm"]["tau"]  # chosen on gathered val logits
    for split in ("val", "test"):  # logits gathered back in dataset order
        a, b = np.load(two / rundir.PREDICTIONS / f"{split}.npz"), np.load(one.run_dir / rundir.PREDICTIONS / f"{split}.npz")
        assert list(a["ids"]) == list(b["ids"]) and np.array_equal(a["targets"], b["targets"])
        np.testing.assert_allclose(a["logits"], b["logits"], atol=1e-5)
    env = rundir.read_json(two / rundir.ENVIRONMENT)
    assert env["processes"]["world_size"] == 2 and env["processes"]["backend"] == "gloo"

    rank0, rank1 = (json.loads((logs / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank1 == []  # rank 1 opened nothing for writing under output_dir
    written = " ".join(Path(p).relative_to(two).as_posix() for p in rank0 if Path(p).is_relative_to(two))
    for name in (rundir.METRICS, rundir.RESULTS, rundir.LAST, rundir.BEST, rundir.CONFIG):  # (atomic writes: via temp names)
        assert Path(name).name in written
    assert sorted(p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")) == ["one", "two"]


def test_a_failing_rank_stops_every_rank_and_names_itself(tmp_path):
    started = time.perf_counter()
    with pytest.raises(LongtailError, match=r"rank 1 of 2 failed: .*disk quota exceeded \(injected\)"):
        distributed.launch(2, _fail_on_rank_1, ddp_config(tmp_path, "crash", devices=1, epochs=3))
    assert time.perf_counter() - started < 120  # rank 0, waiting in a collective, was stopped: no hang


def wait_until_group_exited(pgid: int, timeout: float = 60.0) -> None:
    """SIGKILL is delivered asynchronously: reaping the launcher does not mean that its workers have
    exited, and rank 0's worker holds the run lock until it has. Wait until no thread of the group is
    alive: a worker's main thread can show as a zombie while its other threads (torch's pools, gloo)
    still exit, and the open files, the lock among them, are closed only with the last thread."""
    deadline = time.time() + timeout
    while (alive := group_members(pgid)) and time.time() < deadline:
        time.sleep(0.05)
    assert not alive, f"processes {alive} of the killed run were still alive after {timeout:.0f} s"


def group_members(pgid: int) -> list[int]:
    """Processes in process group ``pgid`` with a thread that is not a zombie, from /proc/<pid>/task/<tid>/stat."""
    members = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            group = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2])
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
        if group == pgid and any(_thread_alive(task) for task in proc.glob("task/[0-9]*")):
            members.append(int(proc.name))
    return members


def _thread_alive(task: Path) -> bool:
    try:
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False  # gone while we looked


def wait_until_unlocked(run_dir: Path, timeout: float = 30.0) -> None:
    """The run lock is the kernel's to release once the last file of the dead writer closes: wait for it."""
    deadline = time.time() + timeout
    while True:
        try:
            with rundir.RunLock(run_dir):
                return
        except LongtailError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def test_ddp_run_resumes_after_kill_9_with_another_number_of_processes(tmp_path):
    reference = longtail.train(ddp_config(tmp_path, "reference", devices=1, epochs=3))
    cfg = ddp_config(tmp_path, "killed", devices=2, epochs=3)
    cfg_file = tmp_path / "killed.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "runs" / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "longtail", "train", "-c", str(cfg_file)], cwd=tmp_path, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            metrics = run_dir / rundir.METRICS
            if metrics.is_file() and len(metrics.read_text().splitlines()) >= 1 and (run_dir / rundir.LAST).is_file():
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished or failed before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers, with no chance to clean up
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_until_group_exited(proc.pid)
        wait_until_unlocked(run_dir)
    done = load_checkpoint(run_dir / rundir.LAST)["progress"]["global_epoch"]
    assert 1 <= done < 3 and not (run_dir / rundir.RESULTS).exists()

    resumed = longtail.train(resume=run_dir, overrides=["train.devices=1"])  # 2 processes -> 1
    assert resumed.finished
    assert [r["epoch"] for r in val_rows(run_dir)] == [1, 2, 3]
    assert_same_metrics(val_rows(run_dir), val_rows(reference.run_dir))
    assert_same_weights(run_dir / rundir.LAST, reference.run_dir / rundir.LAST)


def test_torchrun_launches_the_cli_and_only_rank_0_prints(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(yaml.safe_dump(ddp_config(tmp_path, "torchrun", devices=1, epochs=1)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "longtail", "train", "-c", str(cfg_file)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("run directory:") == 1  # rank 1 trains but prints nothing
    run_dir = tmp_path / "runs" / "torchrun"
    assert rundir.read_json(run_dir / rundir.ENVIRONMENT)["processes"]["world_size"] == 2
    assert len(rundir.read_jsonl(run_dir / rundir.METRICS)) == 1 and (run_dir / rundir.RESULTS).is_file()


def test_sync_bn_on_cpu_processes_is_a_one_line_error(tmp_path):
    cfg = ddp_config(tmp_path, "sync", devices=2, epochs=1)
    cfg["train"]["sync_bn"] = True
    with pytest.raises(LongtailError, match=r"rank \d of 2 failed: .*train.sync_bn needs CUDA GPUs"):
        longtail.train(cfg)
    assert not (tmp_path / "runs" / "sync").exists()  # a failed first run leaves nothing behind
