"""SPBL's feature classifier: a weighted SVM (or softmax regression) over CNN features, its
scores, optional calibration, safe persistence, and the head that puts it behind a CNN.

Scores follow the original: the row softmax of the SVM's one-vs-rest decision values. The
classifier is saved with ``skops`` (no pickle): loading allows scikit-learn estimators, NumPy
arrays and the calibration types in :data:`TRUSTED_TYPES` only, so a tampered file is refused
instead of executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core.errors import LongtailError

#: types a classifier file may hold beyond what skops trusts by default (scikit-learn estimators,
#: NumPy arrays): the internals of a calibrated classifier. Anything else is refused unread.
TRUSTED_TYPES = [
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
]


def make_classifier(kind: str, svm_c: float, svm_gamma: str | float, seed: int, feature_norm: str = "none") -> Any:
    """An unfitted scikit-learn classifier: rbf ``SVC`` (one-vs-rest decision values) or softmax
    regression, behind a row-wise L2 normaliser when ``feature_norm='l2'`` (part of the saved model,
    so every later use normalises the same way)."""
    if kind == "svm":
        from sklearn.svm import SVC

        clf: Any = SVC(kernel="rbf", C=svm_c, gamma=svm_gamma, decision_function_shape="ovr")
    elif kind == "softmax":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=svm_c, max_iter=2000, random_state=seed)
    else:
        raise LongtailError(f"spbl.classifier '{kind}' is not one of: svm, softmax")
    if feature_norm == "l2":
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import Normalizer

        return Pipeline([("l2", Normalizer(norm="l2")), ("classifier", clf)])
    return clf


def fit_classifier(clf: Any, features: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> Any:
    """Fit on all feature blocks with per-row weights (the SPBL cost of each row's class)."""
    from sklearn.pipeline import Pipeline

    if len(np.unique(labels)) < 2:
        raise LongtailError("spbl: the feature classifier needs images of at least two classes")
    key = "classifier__sample_weight" if isinstance(clf, Pipeline) else "sample_weight"
    clf.fit(np.asarray(features, dtype=np.float64), labels, **{key: np.asarray(weights, dtype=np.float64)})
    return clf


def classifier_logits(clf: Any, features: np.ndarray, num_classes: int) -> np.ndarray:
    """Scores as logits (N x C): decision values (their softmax is SPBL's score), or the log of
    calibrated probabilities. Classes the classifier never saw get -inf-like logits."""
    x = np.asarray(features, dtype=np.float64)
    if hasattr(clf, "calibrated_classifiers_"):
        values = np.log(np.clip(clf.predict_proba(x), 1e-12, None))
    else:
        values = clf.decision_function(x)
        if values.ndim == 1:  # two classes: one signed margin -> symmetric logits, softmax = sigmoid(margin)
            values = np.stack([-values / 2, values / 2], axis=1)
    classes = np.asarray(clf.classes_, dtype=np.int64)
    out = np.full((len(x), num_classes), -1e4, dtype=np.float32)
    out[:, classes] = values
    return out


def calibrate(clf: Any, method: str, features: np.ndarray, labels: np.ndarray) -> Any:
    """Platt ('sigmoid') or isotonic calibration of a fitted classifier on held-out (validation) rows."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    if len(np.unique(labels)) < 2:
        raise LongtailError("spbl.calibration needs validation images of at least two classes")
    return CalibratedClassifierCV(FrozenEstimator(clf), method=method).fit(np.asarray(features, dtype=np.float64), labels)


def save_classifier(clf: Any, path: Path) -> None:
    """Write with skops (atomically: a temp file renamed into place)."""
    import skops.io as sio

    from ..rundir import atomic_write_bytes

    atomic_write_bytes(path, sio.dumps(clf))


def load_classifier(path: Path) -> Any:
    """Read a classifier file, refusing any type skops does not trust beyond :data:`TRUSTED_TYPES` (nothing is executed)."""
    import skops.io as sio

    if not path.is_file():
        raise LongtailError(f"no SPBL classifier '{path}'; the run has not finished a pace (resume it with --resume)")
    try:
        data = path.read_bytes()
        untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in TRUSTED_TYPES]
    except Exception as e:  # noqa: BLE001 - any reader failure means a damaged file
        raise LongtailError(f"SPBL classifier '{path}' cannot be read ({type(e).__name__}); retrain the pace with --resume after deleting it") from None
    if untrusted:
        raise LongtailError(f"SPBL classifier '{path}' contains untrusted types ({', '.join(untrusted)}); it was not loaded")
    return sio.loads(data, trusted=TRUSTED_TYPES)


class FeatureClassifierHead(nn.Module):
    """A fitted scikit-learn classifier as a model head: features -> logits (no gradients).

    Putting it in the ``head`` slot of a :class:`~longtail.models.Classifier` lets evaluation,
    prediction and TTA run an SPBL model through the same code as any other model.
    """

    def __init__(self, clf: Any, num_classes: int) -> None:
        super().__init__()
        self.clf = clf
        self.num_classes = num_classes

    def forward(self, features: Tensor) -> Tensor:
        logits = classifier_logits(self.clf, features.detach().float().cpu().numpy(), self.num_classes)
        return torch.as_tensor(logits, device=features.device)
