"""The gallery sections: the test images the model got most confidently wrong, and a sample it got right.

Reads ``predictions/errors.npz`` and ``predictions/correct.npz`` (written at evaluation, see
``evaluation.gallery``), so the report needs no access to the dataset or the model. Where the run
stored Grad-CAM overlays, each image has its map of the predicted class beside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..figures import figure_gallery
from ..run import Run
from ..section import Section


def _load(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _cam_note(items: dict[str, np.ndarray]) -> str:
    if "overlays" not in items:
        return ""
    layer = str(items["cam_layer"]) if "cam_layer" in items else ""
    return (f" Beside each image, its Grad-CAM map of the predicted class{f' at layer {layer}' if layer else ''} (red: where the "
            "evidence for that class lies, scaled per image).")


def error_gallery_sections(run: Run) -> list[Section]:
    """The errors gallery and the sample of correct predictions; none for a file the run did not store."""
    sections = []
    errors = _load(run.run_dir / "predictions" / "errors.npz")
    if errors is not None:
        gallery = Section("Most confident errors (test)", figures=[("errors", figure_gallery(errors, run.class_names))])
        gallery.text.append(f"The {len(errors['targets'])} test images the model got wrong with the highest predicted probability "
                            "(true class, predicted class and its probability)." + _cam_note(errors))
        sections.append(gallery)
    correct = _load(run.run_dir / "predictions" / "correct.npz")
    if correct is not None:
        per_class = int(np.bincount(correct["targets"]).max())
        sample = Section("Correct predictions (test, a sample per class)", figures=[("correct", figure_gallery(correct, run.class_names))])
        sample.text.append(f"{len(correct['targets'])} test images the model got right, up to {per_class} per class drawn at random "
                           "(eval.gallery_correct; the run's seed), not the most confident ones." + _cam_note(correct))
        sections.append(sample)
    return sections
