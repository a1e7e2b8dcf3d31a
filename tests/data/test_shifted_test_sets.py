"""The test sets of SADE's test-agnostic protocol (data/longtail.py shifted_counts / shifted_subset) against
the official IMBALANCECIFAR10.get_img_num_per_cls(imb_type='exp', reverse) and gen_imbalanced_data."""

from __future__ import annotations

import numpy as np
import pytest

from longtail.core.errors import DataError
from longtail.data.longtail import shifted_counts, shifted_subset


def official_counts(img_max: float, cls_num: int, imb_factor: float, reverse: bool) -> list[int]:
    """Vanint/SADE-AgnosticLT data_loader/imbalance_cifar.py, transcribed."""
    out = []
    for cls_idx in range(cls_num):
        exponent = (cls_num - 1 - cls_idx) if reverse else cls_idx
        out.append(int(img_max * (imb_factor ** (exponent / (cls_num - 1.0)))))
    return out


@pytest.mark.parametrize("ratio", [2, 5, 10, 25, 50])
@pytest.mark.parametrize("classes", [10, 100])
def test_counts_are_the_officials(ratio, classes):
    img_max = 10000 // classes
    assert shifted_counts(img_max, classes, "forward", ratio) == official_counts(img_max, classes, 1 / ratio, False)
    assert shifted_counts(img_max, classes, "backward", ratio) == official_counts(img_max, classes, 1 / ratio, True)
    assert shifted_counts(img_max, classes, "uniform", 1) == [img_max] * classes


def balanced_targets(per_class: int = 100, classes: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).permutation(np.repeat(np.arange(classes), per_class))


def test_subset_follows_the_profile_and_the_officials_selection():
    y = balanced_targets()
    forward = shifted_subset(y, 10, "forward", 50)
    assert np.bincount(y[forward], minlength=10).tolist() == official_counts(100, 10, 1 / 50, False)
    backward = shifted_subset(y, 10, "backward", 10)
    assert np.bincount(y[backward], minlength=10).tolist() == official_counts(100, 10, 1 / 10, True)
    # gen_imbalanced_data: np.random.seed(0), then per class shuffle its indices and keep the first n
    np.random.seed(0)
    expected = []
    for c, n in enumerate(official_counts(100, 10, 1 / 50, False)):
        idx = np.where(y == c)[0]
        np.random.shuffle(idx)
        expected.extend(idx[:n])
    assert forward.tolist() == sorted(expected)
    assert np.array_equal(shifted_subset(y, 10, "uniform"), np.arange(len(y)))
    assert np.array_equal(shifted_subset(y, 10, "forward", 50), forward)  # deterministic


def test_an_unbalanced_split_keeps_the_ratio_from_its_smallest_class():
    y = np.concatenate([np.repeat(np.arange(4), [40, 30, 20, 25])])
    counts = np.bincount(y[shifted_subset(y, 4, "forward", 4)], minlength=4)
    assert counts.tolist() == [20, 12, 7, 5] and counts[0] / counts[-1] == 4
    assert np.bincount(y[shifted_subset(y, 4, "uniform")]).tolist() == [20] * 4


def test_one_line_errors():
    y = balanced_targets(5, 3)
    with pytest.raises(DataError, match="class 3 has no image"):
        shifted_subset(y, 4, "forward", 2)
    with pytest.raises(DataError, match="not one of forward, uniform, backward"):
        shifted_subset(y, 3, "sideways", 2)
    with pytest.raises(DataError, match="ratio must be >= 1"):
        shifted_subset(y, 3, "backward", 0.5)
