"""The gallery sections: the most confident errors and a sample of correct predictions, from predictions/*.npz."""

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


def test_correct_sample_and_grad_cam_maps_are_drawn_beside_the_images(tmp_path) -> None:
    run = hand_run(tmp_path)
    (tmp_path / "predictions").mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    common = {"images": images, "sizes": np.array([[16, 16]] * 4), "confidence": np.array([0.9, 0.8, 0.7, 0.6])}
    np.savez(tmp_path / "predictions" / "correct.npz", **common, targets=np.array([0, 0, 1, 2]), predictions=np.array([0, 0, 1, 2]),
             overlays=255 - images, cam_layer=np.asarray("backbone.layer4"))
    [sample] = error_gallery_sections(run)
    assert sample.title == "Correct predictions (test, a sample per class)"
    assert sample.text[0].startswith("4 test images the model got right, up to 2 per class drawn at random")
    assert "Grad-CAM map of the predicted class at layer backbone.layer4" in sample.text[0]
    [(stem, png)] = sample.figures
    assert stem == "correct"
    np.savez(tmp_path / "predictions" / "errors.npz", **common, targets=np.array([1, 1, 2, 0]), predictions=np.array([0, 2, 1, 1]))
    errors, _ = error_gallery_sections(run)
    assert "Grad-CAM" not in errors.text[0]  # no maps stored: the images alone

    from io import BytesIO

    from PIL import Image

    with_maps = Image.open(BytesIO(png))
    without = Image.open(BytesIO(errors.figures[0][1]))
    assert with_maps.width > 1.8 * without.width  # each image has its map beside it
