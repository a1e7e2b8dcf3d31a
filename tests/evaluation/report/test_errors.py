"""The Most confident errors section: a gallery drawn from predictions/errors.npz."""

from __future__ import annotations

import numpy as np

from longtail.evaluation.report.sections.errors import error_gallery_sections

from .common import hand_run


def test_gallery_from_the_stored_errors(tmp_path) -> None:
    run = hand_run(tmp_path)
    assert error_gallery_sections(run) == []
    (tmp_path / "predictions").mkdir()
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "predictions" / "errors.npz", images=rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8),
             sizes=np.array([[16, 16], [12, 16], [16, 8]]), targets=np.array([2, 1, 0]), predictions=np.array([0, 0, 1]),
             confidence=np.array([0.9, 0.8, 0.7]))
    [section] = error_gallery_sections(run)
    assert section.title == "Most confident errors (test)"
    assert section.text[0].startswith("The 3 test images the model got wrong")
    [(stem, png)] = section.figures
    assert stem == "errors" and png.startswith(b"\x89PNG")
