"""longtail predict ... --explain OUT_DIR (issue #26): one Grad-CAM overlay per input, checked before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from longtail.evaluation.explain import cam_target_layer, grad_cams, overlay

from ..robustness.common import cli, digests, one_error

pytest.importorskip("pytorch_grad_cam")


def _digit_images(folder, n=3):
    from sklearn.datasets import load_digits

    folder.mkdir()
    digits = load_digits()
    for i in range(n):
        Image.fromarray((digits.images[i] * 16).astype(np.uint8)).save(folder / f"d{i}.png")
    return folder


def test_explain_writes_the_overlay_of_each_predicted_class(done, tmp_path, capsys):
    run, before = done
    images = _digit_images(tmp_path / "imgs")
    out = tmp_path / "maps"
    code, err = cli(capsys, "predict", run, images, "--out", tmp_path / "p.csv", "--explain", out)
    assert (code, err) == (0, [])
    assert sorted(p.name for p in out.iterdir()) == ["d0.png", "d1.png", "d2.png"]
    # the overlay is the documented blend of the map of the predicted class, recomputed here
    import longtail
    from longtail.training.loading import load_model, load_run_config, read_data_meta

    cfg, meta = load_run_config(run), read_data_meta(run)
    model = load_model(run, cfg, len(meta["class_names"]), meta["channels"], meta["train_counts"], torch.device("cpu"))
    row = longtail.predict(run, [images / "d0.png"])[0]
    img = torch.from_numpy(np.array(Image.open(images / "d0.png").convert("L")))[None]
    x = ((img.float() / 255.0 - torch.tensor(meta["norm_mean"]).view(-1, 1, 1)) / torch.tensor(meta["norm_std"]).view(-1, 1, 1))[None]
    cam = grad_cams(model, x, [meta["class_names"].index(row["label"])], cam_target_layer(model))[0]
    assert np.abs(np.asarray(Image.open(out / "d0.png")).astype(int) - overlay(img, cam).astype(int)).max() <= 1
    assert digests(run) == before


@pytest.mark.parametrize("case", ["into a run's checkpoints", "an unknown eval.cam_layer"])
def test_a_refused_explain_is_one_line_before_any_work(case, done, tmp_path, capsys):
    run, before = done
    images = _digit_images(tmp_path / "imgs")
    args, parts = {
        "into a run's checkpoints": ((run / "checkpoints",), ("checkpoints", "owns")),
        "an unknown eval.cam_layer": ((tmp_path / "maps", "eval.cam_layer=backbone.nope"), ("eval.cam_layer", "has no module 'backbone.nope'")),
    }[case]
    code, err = cli(capsys, "predict", run, images, "--explain", *args)
    assert code == 2
    one_error(err, *parts)
    assert not (tmp_path / "maps").exists() and digests(run) == before


def test_the_report_gallery_holds_the_grad_cam_of_each_predicted_class(done):
    """finalize stores, for the errors and the correct sample, each image's overlay of its predicted class, and the report draws them."""
    from longtail.data import build_data, build_pipeline
    from longtail.evaluation.explain import Explainer
    from longtail.evaluation.gallery import thumbnail
    from longtail.training.loading import load_model, load_run_config, read_data_meta

    run, _ = done
    cfg, meta = load_run_config(run), read_data_meta(run)
    model = load_model(run, cfg, len(meta["class_names"]), meta["channels"], meta["train_counts"], torch.device("cpu"))
    explain = Explainer(model, None, build_pipeline(cfg.data.eval_transforms, meta["norm_mean"], meta["norm_std"], train=False), torch.device("cpu"))
    test = build_data(cfg.data, seed=cfg.seed).test
    where = {str(i): k for k, i in enumerate(test.ids)}
    for name in ("errors", "correct"):
        with np.load(run / "predictions" / f"{name}.npz") as g:
            assert str(g["cam_layer"]) == explain.layer_name == "backbone.layers.2"
            assert g["overlays"].shape[:3] == g["images"].shape[:3] and g["overlays"].shape[3] == 3
            if name == "correct":
                assert (g["targets"] == g["predictions"]).all() and np.bincount(g["targets"]).max() <= cfg.eval.gallery_correct
            for k, image_id in enumerate(g["ids"][:3]):
                h, w = g["sizes"][k]
                expected = thumbnail(torch.from_numpy(explain(test[where[str(image_id)]][0], int(g["predictions"][k]))).permute(2, 0, 1))
                assert np.abs(g["overlays"][k, :h, :w].astype(int) - expected.astype(int)).max() <= 1
    page = (run / "report.html").read_text()
    assert "<h2>Correct predictions (test, a sample per class)</h2>" in page and "Grad-CAM map of the predicted class at layer backbone.layers.2" in page
