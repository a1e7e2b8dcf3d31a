"""The test-agnostic protocol on a tiny SADE run (inference/test_agnostic.py): each test set drawn from the
run's test split, scored as shipped, with the known prior, and after test-time aggregation."""

from __future__ import annotations

import numpy as np
import pytest

import longtail
from longtail import rundir
from longtail.core.errors import LongtailError
from longtail.data.longtail import shifted_subset
from longtail.engine.test_time import AggregationSettings, predict_experts
from longtail.inference.evaluate import load_for_scoring
from longtail.inference.test_agnostic import Shift, evaluate_shifted, expert_accuracies

from ..helpers import tiny_config

DIGIT_VIEWS = ({"name": "random_crop", "size": 8, "padding": 1}, {"name": "hflip", "p": 0.5})
SHIFTS = (Shift("forward", 5), Shift("uniform"), Shift("backward", 5))


@pytest.fixture(scope="module")
def sade_run(tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("sade"), name="sade",
                      model={"name": "ride_resnet32", "num_experts": 3, "blocks": 1, "head": "cosine"}, loss={"name": "sade"})
    return longtail.train(cfg).run_dir


def accuracy(logits: np.ndarray, targets: np.ndarray) -> float:
    return float((logits.argmax(1) == targets).mean())


def test_rows_score_each_shifted_test_set_three_ways(sade_run):
    rows = evaluate_shifted(sade_run, SHIFTS, ("none", "target_prior", "test_time_aggregation"),
                            prior_source="uniform", settings=AggregationSettings(epochs=2, batch_size=32), views=DIGIT_VIEWS)
    saved = rundir.load_predictions(sade_run, "test")
    logits, y = saved["logits"], saved["targets"]
    cfg, bundle, model, pipeline, device = load_for_scoring(sade_run)
    experts, expert_targets = predict_experts(model, bundle.test, pipeline, device, cfg.data.eval_batch_size)
    assert np.array_equal(expert_targets, y)
    assert [(r["test_set"], r["adaptation"]) for r in rows] == [
        (s, a) for s in ("forward5", "uniform", "backward5") for a in ("none", "target_prior", "test_time_aggregation")]
    for row in rows:
        shift = Shift.parse(row["test_set"])
        keep = shifted_subset(y, 10, shift.direction, shift.ratio)
        assert row["images"] == len(keep)
        if row["adaptation"] == "none":  # the run's own test logits, on the subset
            assert row["accuracy"] == pytest.approx(accuracy(logits[keep], y[keep]), abs=1e-9)
        elif row["adaptation"] == "target_prior":  # uniform-prior logits + log(C q), q the subset's prior
            q = np.bincount(y[keep], minlength=10) / len(keep)
            assert row["accuracy"] == pytest.approx(accuracy(logits[keep] + np.log(10 * q), y[keep]), abs=1e-9)
            assert row["tau"] == 1.0 and row["prior_source"] == "uniform"
        else:
            assert len(row["expert_weights"]) == 3 and sum(row["expert_weights"]) == pytest.approx(1.0, abs=1e-3)
            assert 1 <= row["epochs"] <= 2
            assert row["expert_accuracy"] == pytest.approx([accuracy(experts[keep][:, e], y[keep]) for e in range(3)], abs=1e-4)
    assert Shift.parse("forward50") == Shift("forward", 50.0) and Shift("backward", 10).name == "backward10"


def test_expert_accuracies_score_each_expert_alone():
    # 4 images, 2 experts, 3 classes: expert 0 right on images 0 and 1, expert 1 right on images 1, 2 and 3
    experts = np.zeros((4, 2, 3))
    for image, (first, second) in enumerate([(0, 1), (1, 1), (0, 2), (1, 0)]):
        experts[image, 0, first] = experts[image, 1, second] = 1.0
    assert expert_accuracies(experts, np.array([0, 1, 2, 0])) == [0.5, 0.75]


def test_train_pool_aggregation_learns_on_training_images_drawn_at_the_test_prior(sade_run):
    from longtail.core.errors import DataError

    _, bundle, *_ = load_for_scoring(sade_run, keep_pools=True)
    pool = bundle.pool_of("train")
    assert set(bundle.train.ids) <= set(pool.ids) and len(pool) > len(bundle.train)  # the run's train split was drawn from it
    with pytest.raises(DataError, match="keep_pools=True"):
        load_for_scoring(sade_run)[1].pool_of("train")
    settings = AggregationSettings(epochs=1, batch_size=32)
    shift = (Shift("forward", 5),)
    pooled = evaluate_shifted(sade_run, shift, ("test_time_aggregation",), settings=settings, views=DIGIT_VIEWS, adapt_images="train_pool")[0]
    own = evaluate_shifted(sade_run, shift, ("test_time_aggregation",), settings=settings, views=DIGIT_VIEWS)[0]
    y = rundir.load_predictions(sade_run, "test")["targets"]
    assert pooled["images"] == own["images"] == len(shifted_subset(y, 10, "forward", 5))  # both score the test set
    assert pooled["adapt_images"] == "train_pool" and pooled["adapt_size"] == len(shifted_subset(pool.targets, 10, "forward", 5))
    assert own["adapt_images"] == "test" and own["adapt_size"] == own["images"] and pooled["adapt_size"] != own["adapt_size"]
    assert len(pooled["expert_agreement"]) == 3 and pooled["expert_weights"] != own["expert_weights"]


def test_one_line_errors(sade_run, tmp_path):
    with pytest.raises(LongtailError, match="adaptation 'guess'"):
        evaluate_shifted(sade_run, SHIFTS, ("guess",))
    with pytest.raises(LongtailError, match="adapt_images 'train'"):
        evaluate_shifted(sade_run, SHIFTS, ("test_time_aggregation",), adapt_images="train")
    with pytest.raises(LongtailError, match="prior_source"):
        evaluate_shifted(sade_run, SHIFTS, ("none",), prior_source="test")
    with pytest.raises(LongtailError, match="forward<ratio>"):
        Shift.parse("forwards")
    single = longtail.train(tiny_config(tmp_path, name="ce", train={"epochs": 1, "progress": False, "tensorboard": False})).run_dir
    with pytest.raises(LongtailError, match="single head"):
        evaluate_shifted(single, SHIFTS, ("test_time_aggregation",), views=DIGIT_VIEWS)


def test_eval_test_set_prints_one_line_per_test_set_and_adaptation(sade_run, capsys):
    from longtail.cli.commands import main

    assert main(["eval", str(sade_run), "--test-set", "forward5", "--test-set", "uniform", "--adapt", "none", "--adapt", "test_time_aggregation"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["test", "set"] and len(lines) == 1 + 2 * 2
    forward = [line.split() for line in lines[1:] if line.startswith("forward5")]
    # three expert weights, then "|" and each expert's view agreement, then "|" and each expert's accuracy alone
    assert [f[2] for f in forward] == ["none", "test_time_aggregation"] and len(forward[1]) == 6 + 3 + 1 + 3 + 1 + 3
    assert forward[1][9] == forward[1][13] == "|" and all(0.0 <= float(a) <= 1.0 for a in forward[1][14:])
    expected = {(r["test_set"], r["adaptation"]): r for r in evaluate_shifted(sade_run, (Shift("forward", 5),), ("none",))}
    assert float(forward[0][3]) == pytest.approx(expected[("forward5", "none")]["accuracy"], abs=1e-4)
    assert main(["eval", str(sade_run), "--adapt", "target_prior"]) == 2
    assert "add --test-set" in capsys.readouterr().err
    assert main(["eval", str(sade_run), "--test-set", "uniform", "--split", "val"]) == 2
    assert "drop --split" in capsys.readouterr().err
