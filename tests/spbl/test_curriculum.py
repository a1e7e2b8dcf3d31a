"""SPBL's per-pace arithmetic on small arrays, each answer worked out by hand (seeds.md 1.4)."""

from __future__ import annotations

import numpy as np
import pytest

from longtail.core.errors import LongtailError
from longtail.losses import spbl_cost_vector
from longtail.spbl.curriculum import class_complexity, initial_split, reconstruction_deltas, resample_block, select_per_class, stored_weight_factor


def test_initial_split_takes_the_ceiling_of_the_ratio_per_class_and_is_seeded():
    targets = np.array([0] * 10 + [1] * 3 + [2] * 1)
    initial, pool = initial_split(targets, 0.2, 3, np.random.default_rng(0))
    # ceil(0.2 * 10) = 2, ceil(0.2 * 3) = 1, ceil(0.2 * 1) = 1: a singleton class lives in the initial set
    assert np.bincount(targets[initial], minlength=3).tolist() == [2, 1, 1]
    assert np.bincount(targets[pool], minlength=3).tolist() == [8, 2, 0]
    assert sorted(np.concatenate([initial, pool]).tolist()) == list(range(14))
    again, _ = initial_split(targets, 0.2, 3, np.random.default_rng(0))
    other, _ = initial_split(targets, 0.2, 3, np.random.default_rng(1))
    assert again.tolist() == initial.tolist() and other.tolist() != initial.tolist()
    with pytest.raises(LongtailError, match="train_ratio"):
        initial_split(targets, 0.0, 3, np.random.default_rng(0))


def test_selection_takes_the_most_confident_ceil_r_of_each_class():
    pool_targets = np.array([0, 0, 0, 1, 1, 0])
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1], [0.7, 0.3]])
    selected, counts = select_per_class(pool_targets, scores, 0.5)
    # class 0 has 4 items (own scores .9 .2 .6 .7) -> ceil(2.0) = 2: positions 0 and 5
    # class 1 has 2 items (own scores .7 .1) -> ceil(1.0) = 1: position 3
    assert counts.tolist() == [2, 1] and selected.tolist() == [0, 3, 5]
    selected, counts = select_per_class(pool_targets, scores, 0.3)  # ceil(1.2) = 2, ceil(0.6) = 1
    assert counts.tolist() == [2, 1]
    assert select_per_class(pool_targets, scores, 1.0)[1].tolist() == [4, 2]


def test_complexity_is_pool_size_over_exp_mean_loss_and_rescaled_to_the_pool_range():
    pool_targets = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([[0.5, 0.5], [0.25, 0.75], [0.9, 0.1], [0.9, 0.1], [0.5, 0.5], [0.5, 0.5]])
    selected = np.array([0, 1, 4])
    raw, scaled = class_complexity(pool_targets, scores, selected)
    # class 0: L = (ln 2 + ln 4) / 2 = 1.5 ln 2 -> H = 4 / 2^1.5; class 1: L = ln 2 -> H = 2 / 2 = 1
    assert raw == pytest.approx([4 / 2**1.5, 1.0])
    # min H -> min |U_c| = 2, max H -> max |U_c| = 4 (then the ceiling)
    assert scaled.tolist() == [4.0, 2.0]
    three = np.array([0, 0, 1, 1, 1, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.5, 0.4], [0.1, 0.2, 0.7], [0.1, 0.1, 0.8]])
    raw, scaled = class_complexity(three, p, np.arange(6))
    # H: class 0 = 2 * .8 = 1.6, class 1 = 3 * (.8 * .5 * .2)^(1/3) = 1.2927, class 2 = 1 * .8
    assert raw == pytest.approx([1.6, 3 * 0.08 ** (1 / 3), 0.8])
    # onto [1, 3]: class 1 -> (1.2927 - .8) / .8 * 2 + 1 = 2.23 -> ceiling 3
    assert scaled.tolist() == [3.0, 3.0, 1.0]
    _, flat = class_complexity(np.array([0, 1]), np.array([[0.5, 0.5], [0.5, 0.5]]), np.array([0, 1]))
    assert flat.tolist() == [1.0, 1.0]


def test_cost_vector_properties():
    h = np.array([40.0, 5.0, 12.0, 30.0, 8.0, 20.0])
    cost = spbl_cost_vector(h, seed=7, max_value=10)
    assert cost.min() == 1.0 and cost.max() <= 10.0
    assert cost[0] == 1.0  # largest H (many, easy) -> smallest cost
    assert cost[1] == cost.max()  # smallest H -> largest cost
    assert np.array_equal(cost, spbl_cost_vector(h, seed=7, max_value=10))
    assert sorted(cost.tolist()) == sorted(spbl_cost_vector(h, seed=7)[np.argsort(-h)].tolist())


def test_reconstruction_hands_small_counts_to_easy_classes_and_applies_both_caps():
    # k = selected counts, H = complexity (class 0 the easiest, class 3 the hardest)
    k = np.array([50, 10, 300, 20])
    h = np.array([9.0, 1.0, 5.0, 3.0])
    target, delta = reconstruction_deltas(k, h, cap=100, shrink_factor=3)
    # counts sorted ascending [10, 20, 50, 300] go to H descending: class 0, 2, 3, 1
    assert target.tolist() == [10, 300, 20, 50]
    # raw deltas [-40, 290, -280, 30]; m = 3 * ceil(mean k = 95) = 285
    # class 0: k=50 < m -> 0; class 1: +290 capped at 100; class 2: k=300 >= m and target 20 < m -> m - k = -15
    assert delta.tolist() == [0, 100, -15, 30]
    # the "keep" branch: k and target both at least m; m = 1 * ceil(mean [400, 300, 10, 10]) = 180
    target, delta = reconstruction_deltas(np.array([400, 300, 10, 10]), np.array([3.0, 1.0, 9.0, 5.0]), cap=50, shrink_factor=1)
    assert target.tolist() == [300, 400, 10, 10]
    assert delta.tolist() == [-100, 50, 0, 0]


def test_resampled_blocks_have_the_planned_sizes_and_come_from_their_class():
    x = np.arange(20, dtype=np.float64).reshape(10, 2)
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])
    delta = np.array([-2, 3, 0])
    feats, labels, sources = resample_block(x, y, delta, np.random.default_rng(0))
    assert np.bincount(labels).tolist() == [4, 6, 1]  # 6 - 2, 3 + 3, 1 + 0
    assert np.all(y[sources] == labels) and np.array_equal(feats, x[sources])
    assert sources[labels == 1][:3].tolist() == [6, 7, 8]  # every original row kept, then the duplicates
    again = resample_block(x, y, delta, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(again, (feats, labels, sources)))


def test_smote_resampling_interpolates_inside_the_class():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (8, 3)), rng.normal(10, 1, (4, 3))])
    y = np.array([0] * 8 + [1] * 4)
    feats, labels, sources = resample_block(x, y, np.array([0, 5]), np.random.default_rng(1), method="smote", smote_k=2)
    assert np.bincount(labels).tolist() == [8, 9]
    synthetic = feats[sources == -1]
    assert len(synthetic) == 5 and np.all(labels[sources == -1] == 1)
    lo, hi = x[y == 1].min(axis=0), x[y == 1].max(axis=0)
    assert np.all((synthetic >= lo - 1e-9) & (synthetic <= hi + 1e-9))  # on segments between class-1 rows
    # a class too small for k neighbours is duplicated instead
    _, small_labels, small_sources = resample_block(x[:10], y[:10], np.array([0, 3]), np.random.default_rng(1), method="smote", smote_k=2)
    assert np.bincount(small_labels).tolist() == [8, 5] and (small_sources >= 0).all()


def test_stored_weight_factor_is_the_share_of_the_training_set_a_block_stood_for():
    assert stored_weight_factor(0.0, 0.2) == pytest.approx(0.2)  # the initial set: x train_ratio
    assert stored_weight_factor(0.5, 0.2) == pytest.approx(0.6)
    assert stored_weight_factor(1.0, 0.2) == pytest.approx(1.0)


def test_spbl_metric_table_matches_imbalanced_learn():
    from imblearn.metrics import classification_report_imbalanced

    from longtail.metrics import compute, spbl_tables

    y = np.array([0, 1, 2, 2, 1, 0, 1, 2, 2, 0])
    pred = np.array([0, 1, 1, 2, 1, 2, 0, 2, 2, 0])
    (header, rows), (_, summary) = spbl_tables(compute(np.eye(3)[pred] * 4, y))
    ref = classification_report_imbalanced(y, pred, output_dict=True, digits=6)
    keys = ["pre", "rec", "spe", "f1", "geo", "iba"]
    for c in range(3):
        assert [float(v) for v in rows[c][1:7]] == pytest.approx([ref[str(c)][k] for k in keys], abs=1e-4)
        assert int(rows[c][7]) == ref[str(c)]["sup"]
    weighted = rows[4]
    assert weighted[0] == "weighted" and [float(v) for v in weighted[1:7]] == pytest.approx([ref[f"avg_{k}"] for k in keys], abs=1e-4)
    macro = rows[3]
    assert [float(v) for v in macro[1:7]] == pytest.approx([np.mean([ref[str(c)][k] for c in range(3)]) for k in keys], abs=1e-4)
    recalls = [ref[str(c)]["rec"] for c in range(3)]
    assert float(dict(summary)["G-mean (multi-class, zero recall -> 0.001)"]) == pytest.approx(np.prod(recalls) ** (1 / 3), abs=1e-4)


def test_l2_feature_norm_makes_the_classifier_scale_free():
    from longtail.spbl.classifier import classifier_logits, fit_classifier, make_classifier

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (30, 5)) + [3, 0, 0, 0, 0], rng.normal(0, 1, (30, 5)) - [3, 0, 0, 0, 0]])
    y = np.array([0] * 30 + [1] * 30)
    clf = fit_classifier(make_classifier("svm", 1.0, "scale", 0, feature_norm="l2"), x, y, np.ones(60))
    assert np.allclose(classifier_logits(clf, x * 800, 2), classifier_logits(clf, x, 2), atol=1e-5)
    assert (classifier_logits(clf, x, 2).argmax(1) == y).mean() > 0.9
