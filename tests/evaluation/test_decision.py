"""Decision views of stored predictions: one-vs-rest AUC/AP, operating points, metrics under a deployment prior."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, precision_score, roc_auc_score, roc_curve

from longtail.catalog.check import load_config
from longtail.core.errors import ConfigError
from longtail.evaluation import decision as D


def test_one_vs_rest_auc_and_ap_by_hand_and_against_sklearn():
    # class 0 vs rest: scores of positives 0.9, 0.4; negatives 0.6, 0.2, 0.1
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.2, 0.8], [0.1, 0.9]])
    targets = np.array([0, 0, 1, 1, 1])
    (c0, c1) = D.one_vs_rest(probs, targets, ["a", "b"])
    # AUC = share of (positive, negative) pairs ranked right: 0.9 beats all 3, 0.4 beats 0.2 and 0.1 -> 5/6
    assert c0["auc"] == pytest.approx(5 / 6)
    # AP = sum over positives of precision at its rank: 0.9 first (1/1), 0.4 third (2/3) -> (1 + 2/3) / 2
    assert c0["ap"] == pytest.approx((1 + 2 / 3) / 2)
    assert c0["positives"] == 2 and c1["positives"] == 3
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 4))
    targets = rng.integers(0, 4, 300)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for c, entry in enumerate(D.one_vs_rest(p, targets, list("wxyz"), with_curves=True)):
        assert entry["auc"] == pytest.approx(roc_auc_score(targets == c, p[:, c]))
        assert entry["ap"] == pytest.approx(average_precision_score(targets == c, p[:, c]))
        assert entry["tpr"][-1] == 1.0 and entry["recall"][0] == 1.0
    absent = D.one_vs_rest(p[targets != 3], targets[targets != 3], list("wxyz"))
    assert absent[3]["auc"] is None and absent[3]["ap"] is None  # no positive of class 3: n/a, not 0 or NaN


def brute_force_threshold(scores, positive, specificity):
    """Every distinct score as a threshold: the highest sensitivity whose specificity reaches the target."""
    best = None
    for t in sorted(set(scores.tolist()) | {np.inf}, reverse=True):
        called = scores >= t
        spec = (~called[~positive]).mean()
        sens = called[positive].mean()
        if spec >= specificity and (best is None or sens > best[1]):
            best = (t, sens, spec)
    return best


def test_operating_points_choose_on_validation_and_read_on_test():
    # validation: 4 positives, 10 negatives (scores = P(positive set) = p0 + p1)
    val_pos_scores = [0.95, 0.7, 0.55, 0.3]
    val_neg_scores = [0.9, 0.6, 0.5, 0.4, 0.35, 0.2, 0.15, 0.1, 0.05, 0.01]
    val_scores = np.array(val_pos_scores + val_neg_scores)
    val_targets = np.array([0, 1, 0, 1] + [2] * 10)
    val_probs = np.stack([val_scores / 2, val_scores / 2, 1 - val_scores], axis=1)
    test_scores = np.array([0.8, 0.58, 0.52, 0.2, 0.56, 0.3, 0.1, 0.05])
    test_targets = np.array([0, 1, 1, 0, 2, 2, 2, 2])
    test_probs = np.stack([test_scores, np.zeros(8), 1 - test_scores], axis=1)
    rows = D.operating_points(val_probs, val_targets, test_probs, test_targets, positive=[0, 1])
    # by hand: spec >= 0.80 allows 2 negatives above the threshold -> t = 0.55 (negatives 0.9, 0.6 above), sens 3/4
    assert rows[0]["threshold"] == pytest.approx(0.55) and rows[0]["val_sensitivity"] == 0.75 and rows[0]["val_specificity"] == 0.8
    # spec >= 0.90 allows 1 negative (0.9): t = 0.7, sens 2/4; spec >= 0.95 allows none: t = 0.95, sens 1/4
    assert [r["threshold"] for r in rows[1:]] == pytest.approx([0.7, 0.95])
    assert [r["val_sensitivity"] for r in rows] == [0.75, 0.5, 0.25]
    # test at t = 0.55: positives 0.8, 0.58 called (2 of 4), negatives 0.56 called (3 of 4 right)
    assert rows[0]["test_sensitivity"] == 0.5 and rows[0]["test_specificity"] == 0.75
    assert rows[2]["test_sensitivity"] == 0.0 and rows[2]["test_specificity"] == 1.0
    rng = np.random.default_rng(1)
    scores = rng.random(200)
    positive = rng.random(200) < 0.3
    for spec in D.SPECIFICITIES:
        t = D.threshold_for_specificity(scores, positive, spec)
        ref_t, ref_sens, ref_spec = brute_force_threshold(scores, positive, spec)
        assert D.sensitivity_specificity(scores, positive, t) == pytest.approx((ref_sens, ref_spec))
        fpr, tpr, _ = roc_curve(positive, scores)
        assert ref_sens == pytest.approx(tpr[1 - fpr >= spec].max())
    with pytest.raises(ConfigError, match="validation split needs images of the positive and of the other classes"):
        D.operating_points(val_probs, np.full(14, 2), None, None, positive=[0])


def test_prior_metrics_by_hand_and_at_the_split_prior_equal_plain_metrics():
    # 2 classes, test: 10 of class 0 (8 right), 90 of class 1 (81 right)
    targets = np.array([0] * 10 + [1] * 90)
    pred = np.array([0] * 8 + [1] * 2 + [0] * 9 + [1] * 81)
    rates = D.conditional_rates(pred, targets, 2)
    assert rates.tolist() == [[0.8, 0.2], [0.1, 0.9]]
    own = D.prior_metrics(rates, np.array([10, 90]), positive=[0])
    assert own["accuracy"] == pytest.approx(accuracy_score(targets, pred))
    assert own["per_class"][0]["ppv"] == pytest.approx(precision_score(targets, pred, pos_label=0))
    assert own["positive"]["ppv"] == pytest.approx(8 / 17) and own["positive"]["npv"] == pytest.approx(81 / 83)
    # a clinic with prevalence 0.5: accuracy 0.5*0.8 + 0.5*0.9; PPV 0.4 / (0.4 + 0.05); NPV 0.45 / (0.45 + 0.1)
    clinic = D.prior_metrics(rates, np.array([0.5, 0.5]), positive=[0])
    assert clinic["accuracy"] == pytest.approx(0.85)
    assert clinic["positive"]["ppv"] == pytest.approx(0.4 / 0.45) and clinic["positive"]["npv"] == pytest.approx(0.45 / 0.55)
    assert clinic["positive"]["sensitivity"] == pytest.approx(0.8)
    # 3 classes, positive set {0, 2} (a union): P(pred in S | k) = rows summed over S
    rates3 = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    prior = np.array([0.2, 0.5, 0.3])
    m = D.prior_metrics(rates3, prior, positive=[0, 2])
    called = np.array([0.7, 0.3, 0.9])  # P(pred in {0,2} | k)
    assert m["positive"]["ppv"] == pytest.approx((0.2 * 0.7 + 0.3 * 0.9) / (prior @ called))
    assert m["positive"]["npv"] == pytest.approx(0.5 * 0.7 / (prior @ (1 - called)))
    assert m["accuracy"] == pytest.approx(0.2 * 0.6 + 0.5 * 0.7 + 0.3 * 0.8)
    # a class the prior weighs but the test split never showed: n/a
    absent = D.conditional_rates(np.array([0, 1]), np.array([0, 1]), 3)
    assert D.prior_metrics(absent, np.array([0.3, 0.3, 0.4]))["accuracy"] is None
    assert D.prior_metrics(absent, np.array([0.5, 0.5, 0.0]))["accuracy"] == 1.0


def test_eval_positive_and_target_prior_errors_are_one_line(tmp_path, repo_root):
    quick = f"{repo_root}/configs/quickstart.yaml"
    with pytest.raises(ConfigError, match=r"eval.target_prior.*sum to 0.9; they must sum to 1"):
        load_config(quick, ["eval.target_prior=[0.5,0.4]"])
    with pytest.raises(ConfigError, match=r"eval.target_prior.0' \(1.5\): Input should be less than or equal to 1"):
        load_config(quick, ["eval.target_prior=[1.5,-0.5]"])
    with pytest.raises(ConfigError, match=r"eval.target_prior.1' \(-0.5\): Input should be greater than or equal to 0"):
        load_config(quick, ["eval.target_prior=[0.5,-0.5]"])
    with pytest.raises(ConfigError, match="posthoc.target_prior needs eval.target_prior"):
        load_config(quick, ["posthoc.logit_adjust=true", "posthoc.target_prior=true"])
    with pytest.raises(ConfigError, match="set posthoc.logit_adjust: true as well"):
        load_config(quick, ["posthoc.target_prior=true", f"eval.target_prior=[{','.join(['0.1'] * 10)}]"])
    with pytest.raises(ConfigError, match=r"eval.positive: 'mell' is not a class \(did you mean 'mel'\?\); classes: mel, nv"):
        D.positive_indices(["mell"], ["mel", "nv"])
    assert D.positive_indices(["nv", "mel", "nv"], ["mel", "nv", "bcc"]) == [0, 1]
    with pytest.raises(ConfigError, match=r"eval.target_prior has 2 values but the data has 3 classes \(mel, nv, bcc\)"):
        D.check_target_prior([0.5, 0.5], ["mel", "nv", "bcc"])


def test_logit_adjustment_toward_a_target_prior_is_chosen_on_validation():
    from longtail.evaluation.posthoc import apply_posthoc, fit_posthoc, logit_adjust

    counts = np.array([400, 80, 20])
    target = np.array([0.2, 0.3, 0.5])
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    logits = rng.normal(size=(600, 3)) + 1.5 * np.eye(3)[y] + np.log(counts / counts.sum())
    grid = [0.0, 0.5, 1.0, 1.5]
    chosen = fit_posthoc(logits, y, counts, logit_adjustment=True, grid=grid, target_prior=target)["logit_adjust"]
    by_hand = {t: D.prior_accuracy(logits - t * (np.log(counts / counts.sum()) - np.log(target)), y, target) for t in grid}
    assert chosen["metric"] == "target_prior_accuracy" and chosen["target_prior"] == target.tolist()
    assert chosen["val_scores"] == pytest.approx([by_hand[t] for t in grid])
    assert chosen["tau"] == max(grid, key=lambda t: (by_hand[t], -t))
    # applying it = subtracting tau * (log train prior - log target prior), up to a per-row constant
    applied = apply_posthoc(logits, None, {"logit_adjust": chosen}, train_counts=counts)
    manual = logits - chosen["tau"] * (np.log(counts / counts.sum()) - np.log(target))
    assert np.allclose(applied - manual, (applied - manual)[:, :1])
    assert np.allclose(logit_adjust(logits, counts, 1.0, [1 / 3] * 3), logit_adjust(logits, counts, 1.0))  # uniform = the default


def test_a_run_records_the_decision_block_and_its_most_confident_errors(tmp_path):
    import longtail
    from longtail import rundir
    from longtail.evaluation.gallery import ERRORS_FILE, confident_errors
    from longtail.evaluation.posthoc import apply_posthoc
    from longtail.metrics import softmax

    from ..helpers import tiny_config

    prior = [0.28] + [0.08] * 9
    cfg = tiny_config(tmp_path, train={"epochs": 1, "progress": False, "tensorboard": False}, eval={"positive": ["0", "1"], "target_prior": prior},
                      posthoc={"logit_adjust": True, "target_prior": True, "grid": [0.0, 1.0]})
    run = longtail.train(cfg).run_dir
    res = rundir.read_json(run / rundir.RESULTS)
    decision = res["decision"]
    test = rundir.load_predictions(run, "test")
    val = rundir.load_predictions(run, "val")
    assert decision["positive"] == ["0", "1"] and len(decision["operating_points"]) == 3
    for row in decision["operating_points"]:  # the threshold was chosen on validation, then read on test
        v = softmax(val["logits"].astype(np.float64))[:, :2].sum(1)
        t = softmax(test["logits"].astype(np.float64))[:, :2].sum(1)
        assert row["val_specificity"] >= row["target_specificity"]
        assert (row["val_sensitivity"], row["val_specificity"]) == pytest.approx(D.sensitivity_specificity(v, np.isin(val["targets"], [0, 1]), row["threshold"]))
        assert (row["test_sensitivity"], row["test_specificity"]) == pytest.approx(D.sensitivity_specificity(t, np.isin(test["targets"], [0, 1]), row["threshold"]))
    columns = decision["target_prior"]["columns"]
    assert list(columns) == ["test split's prior", "target prior", "target prior, logit-adjusted toward it"]
    assert columns["test split's prior"]["accuracy"] == pytest.approx(res["test"]["accuracy"])
    chosen = rundir.read_json(run / rundir.POSTHOC)["logit_adjust"]
    assert chosen["metric"] == "target_prior_accuracy" and chosen["target_prior"] == pytest.approx(prior)
    assert [a["auc"] for a in decision["one_vs_rest"]] == pytest.approx([roc_auc_score(test["targets"] == c, softmax(test["logits"].astype(np.float64))[:, c]) for c in range(10)])
    with np.load(run / rundir.PREDICTIONS / ERRORS_FILE) as e:  # the errors of the final, post-hoc-corrected predictions
        corrected = apply_posthoc(test["logits"], None, rundir.read_json(run / rundir.POSTHOC), None, None, np.asarray(res["train_counts"]))
        assert not np.allclose(corrected, test["logits"])
        expected = confident_errors(corrected, test["targets"], 16)
        assert e["ids"].tolist() == [str(test["ids"][i]) for i in expected]
        assert e["images"].shape[1:] == (8, 8, 1)  # digits are 8 x 8 grey
    page = (run / "report.html").read_text()
    assert "<h2>Operating points (positive: 0 + 1)</h2>" in page and "<h2>Metrics under the deployment prior</h2>" in page
    assert "toward eval.target_prior (chosen on validation by target_prior_accuracy" in page
    with pytest.raises(ConfigError, match=r"eval.positive: 'ten' is not a class"):
        longtail.train(tiny_config(tmp_path, name="bad", eval={"positive": ["ten"]}))


def test_thumbnails_shrink_to_the_longest_side_and_clips_keep_their_middle_frame():
    import torch

    from longtail.evaluation.gallery import THUMBNAIL, confident_errors, thumbnail

    image = torch.full((3, 150, 200), 7, dtype=torch.uint8)
    assert thumbnail(image).shape == (150 * THUMBNAIL // 200, THUMBNAIL, 3) and (thumbnail(image) == 7).all()
    clip = torch.stack([torch.full((3, 20, 30), v, dtype=torch.uint8) for v in (1, 2, 3, 4, 5)], dim=1)  # C x T x H x W
    assert thumbnail(clip).shape == (20, 30, 3) and (thumbnail(clip) == 3).all()
    logits = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]]))
    assert confident_errors(logits, np.array([1, 0, 0, -1]), 5).tolist() == [0, 1, 2]  # by confidence 0.9, 0.8, 0.6; right rows and unlabelled ones are left out


def test_the_correct_sample_is_seeded_per_class_and_only_right_rows():
    from longtail.evaluation.gallery import correct_sample

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    y[-2:] = -1  # unlabelled rows are never drawn
    pred = y.copy()
    pred[[0, 1, 2, 10]] = 2  # wrong: never drawn
    pred[pred < 0] = 0
    logits = np.eye(3)[pred] + rng.normal(scale=0.01, size=(30, 3))
    picked = correct_sample(logits, y, 3, seed=5)
    assert (y[picked] == pred[picked]).all() and np.bincount(y[picked]).tolist() == [3, 3, 3]
    assert set(picked) <= set(np.flatnonzero((y == pred) & (y >= 0)))
    assert picked.tolist() == correct_sample(logits, y, 3, seed=5).tolist() != correct_sample(logits, y, 3, seed=6).tolist()
    assert np.bincount(y[correct_sample(logits, y, 100)]).tolist() == [7, 9, 8]  # a class with fewer right rows gives them all
    assert correct_sample(logits, y, 0).tolist() == []


def test_summary_falls_back_to_validation_when_the_test_split_is_unlabelled():
    rng = np.random.default_rng(2)
    val_y = np.tile(np.arange(3), 20)
    val_z = rng.normal(size=(60, 3)) + 2 * np.eye(3)[val_y]
    out = D.summarise(val_z, val_y, rng.normal(size=(10, 3)), np.full(10, -1), ["a", "b", "c"], positive=["a"], target_prior=[0.2, 0.3, 0.5])
    assert out["split"] == "val" and "test_sensitivity" not in out["operating_points"][0]
    assert out["one_vs_rest"][0]["auc"] == pytest.approx(roc_auc_score(val_y == 0, np.exp(val_z[:, 0]) / np.exp(val_z).sum(1)))
    assert list(out["target_prior"]["columns"]) == ["val split's prior", "target prior"]
