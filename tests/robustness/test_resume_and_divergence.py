"""Resume refuses what it cannot continue; a stage whose loss explodes stops before it is saved (issue #31).

The key table below is the contract of :mod:`longtail.training.resume_check`: which changes a resume
continues (and records), which it refuses.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

import longtail
from longtail import rundir
from longtail.catalog.check import load_config
from longtail.core.config import to_plain
from longtail.core.errors import LongtailError
from longtail.engine.divergence import Diverged, DivergenceGuard
from longtail.training import resume_check

from .common import cli, digests, one_error, small, write_yaml

# ------------------------------------------------------------------------------ the key table
#: override -> whether a resume may make it (True: continued and recorded; False: refused naming the key)
RESUME_KEYS = {
    "train.epochs=4": True,            # longer
    "train.epochs=1": False,           # shorter than what the run trained for
    "train.threads=2": True,
    "train.devices=2": True,
    "train.progress=true": True,
    "train.tensorboard=true": True,
    "data.num_workers=1": True,
    "data.cache=mmap": True,
    "data.eval_batch_size=7": True,
    "eval.positive=[c0]": True,
    "posthoc.logit_adjust=true": True,
    "train.on_divergence=skip": True,
    "data.batch_size=16": False,
    "data.image_size=10": False,
    "data.max_per_class=5": False,
    "data.source.name=medmnist": False,
    "optimizer.name=adam": False,
    "optimizer.lr=0.5": False,
    "loss.name=focal": False,
    "sampler.name=class_balanced": False,
    "schedule.name=constant": False,
    "seed=3": False,
    "model.dropout=0.2": False,
    "train.val_every=2": False,
    "train.select_metric=accuracy": False,
    "train.ema.decay=0.99": False,     # averaging the weights from the middle of a run: another training
}


def _saved(tmp_path) -> dict:
    return to_plain(load_config(raw=small(tmp_path, "t", train={"epochs": 2})))


@pytest.mark.parametrize("override, allowed", RESUME_KEYS.items())
def test_resume_key_table(override, allowed, tmp_path):
    saved = _saved(tmp_path)
    resolved = load_config(raw=saved, overrides=[override])
    key = override.split("=")[0]
    if allowed:
        assert key in resume_check.resume_changes(saved, resolved, tmp_path)
    else:
        with pytest.raises(LongtailError, match=rf"cannot resume .*{key.replace('.', '[.]')} \(.* -> .*\).*--overwrite|overwrite=True"):
            resume_check.resume_changes(saved, resolved, tmp_path)


def test_the_folder_keys_are_not_compared_the_run_continues_in_place(tmp_path):
    saved = _saved(tmp_path)
    resolved = load_config(raw=saved, overrides=["name=other", "output_dir=elsewhere"])
    assert resume_check.resume_changes(saved, resolved, tmp_path) == {}


def test_a_section_longtail_gained_after_the_run_was_written_is_no_change(tmp_path):
    saved = _saved(tmp_path)
    del saved["train"]["ema"]  # a run written before train.ema existed trained without it, as it continues
    assert resume_check.resume_changes(saved, load_config(raw=saved), tmp_path) == {}
    with pytest.raises(LongtailError, match=r"train\.ema"):  # turning it on is still refused
        resume_check.resume_changes(saved, load_config(raw=saved, overrides=["train.ema.decay=0.99"]), tmp_path)


def test_staged_runs_may_lengthen_only_their_last_stage(tmp_path):
    saved = to_plain(load_config(raw=small(tmp_path, "t", stages=[{"epochs": 1}, {"epochs": 1}])))
    assert "stages.1.epochs" in resume_check.resume_changes(saved, load_config(raw=saved, overrides=["stages.1.epochs=3"]), tmp_path)
    with pytest.raises(LongtailError, match="stages.0.epochs"):
        resume_check.resume_changes(saved, load_config(raw=saved, overrides=["stages.0.epochs=3"]), tmp_path)


# ------------------------------------------------------------------------------ resume, end to end
@pytest.fixture
def unfinished(tmp_path):
    """A run stopped after 1 of its 2 epochs, with the digests of its files."""
    cfg = small(tmp_path, "half", train={"epochs": 2})
    run = longtail.train(cfg, stop_after=1).run_dir
    return run, digests(run)


@pytest.mark.parametrize("override", ["optimizer.name=adam", "data.batch_size=8", "loss.name=focal", "optimizer.lr=0.5", "data.image_size=10", "seed=4"])
def test_resume_with_a_change_it_cannot_continue_is_refused(override, unfinished, capsys):
    run, before = unfinished
    code, err = cli(capsys, "train", "--resume", run, override)
    assert code == 2
    one_error(err, f"cannot resume '{run}'", override.split("=")[0], "->", "--overwrite", "name=NEW")
    assert digests(run) == before


def test_resume_with_another_config_file_is_compared_too(unfinished, tmp_path, capsys):
    run, before = unfinished
    other = yaml.safe_load((run / rundir.CONFIG).read_text())
    other["optimizer"]["momentum"] = 0.5
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "other.yaml", other), "--resume", run)
    assert code == 2
    one_error(err, "optimizer.momentum (0.9 -> 0.5)")
    assert digests(run) == before


def test_resume_with_safe_changes_continues_and_records_them(unfinished, caplog):
    run, _ = unfinished
    with caplog.at_level("INFO", logger="longtail"):
        result = longtail.train(resume=run, overrides=["train.threads=1", "train.epochs=3", "eval.majority_threshold=5"])
    assert result.finished and result.results["epochs"] == 3
    assert "resuming" in caplog.text and "train.epochs 2 -> 3" in caplog.text
    (entry,) = rundir.read_jsonl(run / resume_check.RESUMES)
    assert entry["from_epoch"] == 1
    assert entry["changes"]["train.epochs"] == [2, 3] and entry["changes"]["eval.majority_threshold"] == [None, 5]
    assert yaml.safe_load((run / rundir.CONFIG).read_text())["train"]["epochs"] == 3


# ------------------------------------------------------------------------------ divergence
def test_guard_reference_is_the_first_batch_or_a_uniform_guess():
    guard = DivergenceGuard("s", num_classes=10, factor=100, mode="stop")
    assert not guard.exploded(0.01)  # a memorised set: the floor ln(10) is the reference, not 0.01
    assert guard.reference == pytest.approx(math.log(10))
    assert not guard.exploded(100 * math.log(10) - 1e-6)
    assert guard.exploded(100 * math.log(10) + 1e-3)
    assert guard.exploded(float("nan")) and guard.exploded(float("inf"))
    high = DivergenceGuard("s", num_classes=2, factor=10, mode="skip")
    assert not high.exploded(50.0) and high.reference == 50.0 and high.exploded(501.0)
    assert high.skip(1e9, 3, 4, "kept") is True
    with pytest.raises(Diverged, match=r"stage 's', epoch 3, batch 4; kept"):
        DivergenceGuard("s", 2, 10, "stop").skip(float("nan"), 3, 4, "kept")


def _diverging(tmp_path, **train) -> dict:
    """One good stage, then a second stage at lr 1e6: the loss explodes within a few batches."""
    return small(tmp_path, "div", train={"epochs": 1, **train}, stages=[
        {"name": "good", "epochs": 1},
        {"name": "wild", "epochs": 2, "optimizer": {"name": "sgd", "lr": 1e6, "momentum": 0.0}},
    ])


def test_an_exploding_stage_stops_naming_epoch_and_batch_and_keeps_the_good_checkpoint(tmp_path, capsys):
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", _diverging(tmp_path)))
    assert code == 2
    line = one_error(err, "in stage 'wild', epoch 2, batch", "checkpoints/last.pt keeps epoch 1", "train.on_divergence=skip")
    assert "exploded" in line or "became nan" in line
    run = tmp_path / "runs" / "div"
    assert not (run / rundir.RESULTS).exists(), "a diverged run is not reported as finished"
    last = torch.load(run / rundir.LAST, weights_only=True)
    assert last["progress"]["global_epoch"] == 1
    assert [r["epoch"] for r in rundir.read_jsonl(run / rundir.METRICS)] == [1]


def test_skip_leaves_exploded_batches_out_and_counts_them(tmp_path, monkeypatch):
    from longtail.engine import trainer as trainer_module

    real = trainer_module.Trainer._train_one_epoch
    calls = {"n": 0}

    def one_bad_batch(self, parts):
        step = parts.step

        def spiking(**kw):
            loss = step(**kw)
            calls["n"] += 1
            return loss * 1e6 if calls["n"] == 3 else loss  # the third batch of the run explodes once

        parts.step = spiking
        try:
            return real(self, parts)
        finally:
            parts.step = step

    monkeypatch.setattr(trainer_module.Trainer, "_train_one_epoch", one_bad_batch)
    result = longtail.train(small(tmp_path, "skip", train={"epochs": 1, "on_divergence": "skip"}))
    assert result.finished
    (record,) = rundir.read_jsonl(result.run_dir / rundir.METRICS)
    assert record["skipped_steps"] == 1
    assert json.loads((result.run_dir / rundir.RESULTS).read_text())["epochs"] == 1
