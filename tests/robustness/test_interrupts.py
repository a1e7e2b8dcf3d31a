"""SIGTERM, SIGINT and kill -9 during training, then resume (issue #13).

Real training processes are started and signalled (or killed at chosen points by a patched
function); each case asserts the exit status, the one-line message where there is one, and that
resuming gives weights bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import longtail
from longtail import rundir
from longtail.rundir.checkpoint import load_checkpoint

from .common import ENV, digests, one_error, small, write_yaml


def _train_process(cfg_path: Path, *extra: str, prelude: str = "") -> subprocess.Popen:
    code = f"import sys\n{prelude}\nfrom longtail.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, "train", "-c", str(cfg_path), *extra],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_epochs(run: Path, n: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and len(rundir.read_jsonl(run / rundir.METRICS)) < n and proc.poll() is None:
        time.sleep(0.02)


def _kill_config(tmp: Path, name: str) -> dict:
    return small(tmp, name, data={"max_per_class": 20, "batch_size": 8}, train={"epochs": 4})


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
    prelude = ("import time, longtail.engine.trainer as e\n_t = e.Trainer._train_one_epoch\n"
               "def slow(self, parts):\n    time.sleep(1.0 if self.progress.global_epoch >= 2 else 0)\n    return _t(self, parts)\n"
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
    assert [r["epoch"] for r in rundir.read_jsonl(run / rundir.METRICS)] == [1, 2, 3, 4]
    assert digests(run_done) == before


def test_sigterm_inside_an_epoch_saves_the_finished_batches_and_resumes_bit_identically(tmp_path, uninterrupted):
    """A preemption after 3 batches of epoch 3: last.pt holds those batches, resume trains the rest."""
    cfg = write_yaml(tmp_path / "p.yaml", _kill_config(tmp_path, "preempted"))
    run = tmp_path / "runs" / "preempted"
    prelude = ("import os, signal, longtail.engine.steps as st\n_c = st.StandardStep.__call__\nseen = [0]\n"
               "def call(self, *a, **k):\n    t = k.get('trainer')\n    if t is not None and t.progress.global_epoch == 2:\n"
               "        seen[0] += 1\n        if seen[0] == 3:\n            os.kill(os.getpid(), signal.SIGTERM)\n"
               "    return _c(self, *a, **k)\nst.StandardStep.__call__ = call")
    proc = _train_process(cfg, prelude=prelude)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    progress = load_checkpoint(run / rundir.LAST)["progress"]
    assert progress["global_epoch"] == 2 and progress["partial_epoch"]["batches"] == 3
    assert progress["partial_epoch"]["images"] == 3 * 8
    assert longtail.train(resume=run).finished
    assert_same_weights(load_checkpoint(run / rundir.LAST)["model"], uninterrupted)
    assert [r["epoch"] for r in rundir.read_jsonl(run / rundir.METRICS)] == [1, 2, 3, 4]
    assert load_checkpoint(run / rundir.LAST)["progress"]["partial_epoch"] is None


# kill -9 at chosen points: the prelude patches a function to SIGKILL the process when it is reached
_KILL_POINTS = {
    "inside the checkpoint write": ("longtail.rundir.files", "torch.save", "f.write(b'partial'); f.flush()", 3),
    "after the log line, before the checkpoint": ("longtail.engine.trainer", "Trainer._save_last", "", 2),
    "inside a training batch": ("longtail.engine.trainer", "autocast", "", 3),
    "inside validation": ("longtail.engine.trainer", "Trainer._validate", "", 2),
}


@pytest.mark.parametrize("point", sorted(_KILL_POINTS))
def test_kill_9_at_any_point_then_resume_is_bit_identical(point, tmp_path, uninterrupted):
    module, attr, before_kill, epoch = _KILL_POINTS[point]
    owner, _, name = attr.rpartition(".")
    target = f"m.{owner}" if owner else "m"
    prelude = (
        f"import os, signal, importlib\nm = importlib.import_module('{module}')\n"
        f"import longtail.engine.trainer as eng\n"
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
    assert [r["epoch"] for r in rundir.read_jsonl(run / rundir.METRICS)] == [1, 2, 3, 4]
    assert not list((run / "checkpoints").glob(".*")), "temp files of the killed write are cleaned on resume"
