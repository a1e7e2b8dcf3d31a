"""ISIC submission CSV writer: header, UNK column modes, the 0.51 rule, input checks."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from longtail.core.errors import LongtailError
from longtail.evaluation.submission import write_isic_submission

NAMES = ["MEL", "NV", "BCC"]


def read(path) -> tuple[list[str], list[str], np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [r[0] for r in rows[1:]], np.array([[float(v) for v in r[1:]] for r in rows[1:]])


def test_plain_csv_round_trips(tmp_path) -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    path = write_isic_submission(tmp_path / "sub" / "a.csv", ["ISIC_1", "ISIC_2"], torch.tensor(probs), NAMES)
    header, ids, values = read(path)
    assert header == ["image", "MEL", "NV", "BCC"]
    assert ids == ["ISIC_1", "ISIC_2"]
    np.testing.assert_allclose(values, probs, atol=1e-6)


def test_unk_zero_and_rule_051(tmp_path) -> None:
    probs = np.array([[0.4, 0.35, 0.25], [0.9, 0.05, 0.05], [0.5, 0.3, 0.2]])
    header, _, values = read(write_isic_submission(tmp_path / "b.csv", ["a", "b", "c"], probs, NAMES, add_unk=True, rule_051=True))
    assert header == ["image", "MEL", "NV", "BCC", "UNK"]
    np.testing.assert_allclose(values[:, 3], 0.0)
    np.testing.assert_allclose(values[0], [0.51, 0.35, 0.25, 0.0])  # max 0.4 <= 0.5 -> 0.51
    np.testing.assert_allclose(values[1], [0.9, 0.05, 0.05, 0.0])  # untouched
    np.testing.assert_allclose(values[2], [0.51, 0.3, 0.2, 0.0])  # exactly 0.5 counts as <= 0.5


def test_unk_one_minus_max_sigmoid_is_resoftmaxed(tmp_path) -> None:
    sig = np.array([[0.9, 0.2, 0.1], [0.3, 0.2, 0.1]])
    _, _, values = read(write_isic_submission(tmp_path / "c.csv", ["a", "b"], sig, NAMES, add_unk=True, unk_mode="one_minus_max_sigmoid"))
    with_unk = np.concatenate([sig, 1 - sig.max(1, keepdims=True)], axis=1)
    expected = np.exp(with_unk) / np.exp(with_unk).sum(1, keepdims=True)
    np.testing.assert_allclose(values, expected, atol=1e-6)
    assert values[1].argmax() == 3  # low confidence everywhere -> UNK wins


def test_bad_inputs(tmp_path) -> None:
    with pytest.raises(LongtailError, match="N x 3"):
        write_isic_submission(tmp_path / "d.csv", ["a"], np.ones((1, 2)) / 2, NAMES)
    with pytest.raises(LongtailError, match="1 image ids for 2"):
        write_isic_submission(tmp_path / "d.csv", ["a"], np.ones((2, 3)) / 3, NAMES)
    with pytest.raises(LongtailError, match="not raw logits"):
        write_isic_submission(tmp_path / "d.csv", ["a"], np.array([[3.0, -1.0, 0.0]]), NAMES)
    with pytest.raises(LongtailError, match="unk_mode"):
        write_isic_submission(tmp_path / "d.csv", ["a"], np.ones((1, 3)) / 3, NAMES, add_unk=True, unk_mode="max")  # type: ignore[arg-type]


# ------------------------------------------------------------- challenge CSVs from logits (predict --format)
def test_isic2019_csv_from_logits_reorders_columns_adds_unk_zero_and_applies_051(tmp_path) -> None:
    from longtail.evaluation.submission import write_challenge_csv

    run_names = ["NV", "MEL", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]  # the run's order differs from the challenge's
    logits = np.array([[3.0, 1.0, 0, 0, 0, 0, 0, 0], [0.2, 0.1, 0, 0, 0, 0, 0, 0]])
    _, ids, values = read(write_challenge_csv(tmp_path / "s.csv", "isic2019", ["ISIC_1", "ISIC_2"], logits, run_names))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = np.c_[probs[:, [1, 0, 2, 3, 4, 5, 6, 7]], np.zeros(2)]
    assert probs[1].max() <= 0.5
    expected[1, expected[1].argmax()] = 0.51  # the 0.51 rule on the second row only
    np.testing.assert_allclose(values, expected, atol=1e-6)
    np.testing.assert_allclose(values[0].sum(), 1.0, atol=1e-5)


def test_isic2019_csv_sigmoid_unk_is_resoftmaxed(tmp_path) -> None:
    from longtail.evaluation.submission import CHALLENGE_CLASSES, write_challenge_csv

    logits = np.array([[2.0, -1, -1, -1, -1, -1, -1, -1], [-3.0, -2, -4, -4, -4, -4, -4, -4]])
    header, _, values = read(write_challenge_csv(tmp_path / "s.csv", "isic2019", ["a", "b"], logits, list(CHALLENGE_CLASSES["isic2019"]),
                                                 unk_class="sigmoid", rule_051=False))
    s = 1 / (1 + np.exp(-logits))
    nine = np.c_[s, 1 - s.max(1)]
    np.testing.assert_allclose(values, np.exp(nine) / np.exp(nine).sum(1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(values.sum(1), 1.0, atol=1e-5)
    assert header[-1] == "UNK" and values[1].argmax() == 8


def test_challenge_csv_refuses_other_classes(tmp_path) -> None:
    from longtail.evaluation.submission import write_challenge_csv

    with pytest.raises(LongtailError, match="isic2018 submission needs a run trained on exactly the classes"):
        write_challenge_csv(tmp_path / "s.csv", "isic2018", ["a"], np.zeros((1, 3)), NAMES)
    with pytest.raises(LongtailError, match="only the isic2019 format"):
        write_challenge_csv(tmp_path / "s.csv", "isic2018", ["a"], np.zeros((1, 7)), ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"], unk_class="sigmoid")
