"""train.early_stopping: the patience rule on hand-made score sequences, in a run, and across a resume."""

from __future__ import annotations

import pytest

import longtail
from longtail import metrics, rundir
from longtail.core.errors import ConfigError
from longtail.engine.early_stopping import EarlyStopping

from ..helpers import tiny_config


def stops_at(scores: list[float], patience: int, min_delta: float = 0.0, every: int = 1) -> int | None:
    """The epoch at which the rule stops for validation scores at epochs every, 2*every, ..."""
    rule = EarlyStopping(patience, min_delta)
    for i, s in enumerate(scores, start=1):
        if rule.update(s, i * every):
            return i * every
    return None


def test_stops_patience_epochs_after_the_best():
    # best 0.6 at epoch 2; epochs 3 (tie), 4, 5 do not improve -> the third of them stops (patience 3)
    assert stops_at([0.5, 0.6, 0.6, 0.55, 0.59, 0.9], patience=3) == 5
    # an improvement resets the counter: 0.7 at epoch 3 restarts it, stop at 3 + 2
    assert stops_at([0.5, 0.4, 0.7, 0.1, 0.2, 0.3], patience=2) == 5
    assert stops_at([0.1, 0.2, 0.3, 0.4], patience=1) is None  # always improving: never stops


def test_min_delta_and_sparse_validation():
    # 0.605 beats 0.6 by less than min_delta 0.01: not an improvement
    assert stops_at([0.6, 0.605, 0.608], patience=2, min_delta=0.01) == 3
    # validated every 2 epochs: each validation without improvement adds 2 epochs -> stop at epoch 6 (patience 3)
    assert stops_at([0.5, 0.4, 0.3, 0.2], patience=3, every=2) == 6


def test_state_round_trip_continues_the_count():
    rule = EarlyStopping(3)
    for epoch, s in enumerate([0.5, 0.4, 0.3], start=1):
        assert not rule.update(s, epoch)
    restored = EarlyStopping.from_state(rule.state_dict())
    assert restored == rule and restored.epochs_without_improvement == 2
    assert restored.update(0.45, 4)


def test_config_rejects_a_zero_patience_and_typos(tmp_path):
    with pytest.raises(ConfigError, match="train.early_stopping.patience"):
        longtail.load_config(raw=tiny_config(tmp_path, train={"early_stopping": {"patience": 0}}))
    with pytest.raises(ConfigError, match="unknown key 'train.early_stopping.min_detla'.*min_delta"):
        longtail.load_config(raw=tiny_config(tmp_path, train={"early_stopping": {"patience": 3, "min_detla": 0.1}}))


def test_spbl_refuses_early_stopping(tmp_path):
    with pytest.raises(ConfigError, match="spbl paces train their stages for a fixed number of epochs; remove train.early_stopping"):
        longtail.load_config(raw=tiny_config(tmp_path, spbl={}, train={"early_stopping": {"patience": 2}}))


def scripted_validation(monkeypatch, scores: list[float]) -> None:
    """Validation balanced accuracy follows ``scores`` (one per validation), then the real values."""
    real = metrics.compute
    queue = list(scores)

    def compute(*args, **kwargs):
        result = real(*args, **kwargs)
        if queue:
            result["balanced_accuracy"] = queue.pop(0)
        return result

    monkeypatch.setattr(metrics, "compute", compute)


# best at epoch 2; patience 3 stops the run at epoch 5 (exactly one score per validation, so the final
# evaluation of the stopped run reports real metrics)
SCORES = [0.3, 0.5, 0.5, 0.4, 0.45]


def test_run_stops_and_records_the_epoch(tmp_path, monkeypatch):
    scripted_validation(monkeypatch, SCORES)
    cfg = tiny_config(tmp_path, train={"epochs": 8, "early_stopping": {"patience": 3}})
    result = longtail.train(cfg)
    assert result.finished
    lines = rundir.read_jsonl(result.run_dir / rundir.METRICS)
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4, 5]
    assert [r["epochs_without_improvement"] for r in lines] == [0, 0, 1, 2, 3]
    assert [r.get("early_stop", False) for r in lines] == [False] * 4 + [True]
    res = result.results
    assert res["stopped_epoch"] == 5 and res["epochs"] == 5 and res["best_epoch"] == 2
    assert "test" in res  # the stopped run is evaluated like a finished one


def test_patience_counter_survives_a_resume(tmp_path, monkeypatch):
    scripted_validation(monkeypatch, SCORES)
    cfg = tiny_config(tmp_path, train={"epochs": 8, "early_stopping": {"patience": 3}})
    first = longtail.train(cfg, stop_after=4)  # counter at 2 when the run pauses
    assert not first.finished
    resumed = longtail.train(resume=first.run_dir)
    # a fresh counter would take 0.45 at epoch 5 as an improvement and run on; the saved one stops there
    assert resumed.finished and resumed.results["stopped_epoch"] == 5
    assert [r["epoch"] for r in rundir.read_jsonl(resumed.run_dir / rundir.METRICS)] == [1, 2, 3, 4, 5]
    again = longtail.train(resume=first.run_dir)  # a stopped run is complete
    assert again.finished and again.results["stopped_epoch"] == 5


def test_only_the_selecting_stage_counts(tmp_path, monkeypatch):
    # select_from last_stage: stage 1's falling scores never stop the run; stage 2 starts its own count
    scripted_validation(monkeypatch, [0.9, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2])
    cfg = tiny_config(tmp_path, stages=[{"name": "a", "epochs": 4}, {"name": "b", "epochs": 4}],
                      train={"early_stopping": {"patience": 2}})
    res = longtail.train(cfg).results
    assert res["stopped_epoch"] == 7 and res["best_epoch"] == 5
