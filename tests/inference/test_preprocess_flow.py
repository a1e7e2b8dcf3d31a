"""``data.preprocess`` reaches every way a run sees an image: training's decoder, ``predict``, ``serve``
(through ``Predictor.image_decoder``) and the export sidecar, so a colour-constancy op is applied the
same way at inference as in training."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from longtail.catalog.check import load_config
from longtail.data.decode import Decoder, read_image
from longtail.data.preprocess import ShadesOfGray
from longtail.inference.export import sidecar
from longtail.inference.predict import _prediction_inputs
from longtail.inference.predictor import Predictor

from ..helpers import tiny_config

PRE = [{"name": "shades_of_gray", "power": 6}]


def _cast_png(path):
    rng = np.random.default_rng(0)
    hwc = (rng.integers(0, 256, (10, 12, 3)) * np.array([1.0, 0.7, 0.4])).astype(np.uint8)  # a warm colour cast
    Image.fromarray(hwc).save(path)
    return path


def test_predict_serve_and_export_apply_the_runs_preprocessing(tmp_path):
    png = _cast_png(tmp_path / "lesion.png")
    cfg = load_config(raw=tiny_config(tmp_path, data={"preprocess": PRE, "image_size": [10, 12]}))
    meta = {"channels": 3, "image_size": [10, 12], "class_names": ["a", "b"], "norm_mean": [0.5] * 3, "norm_std": [0.25] * 3}
    want = ShadesOfGray(power=6)(read_image(png, 3))
    assert not torch.equal(want, read_image(png, 3))  # the op does change this image

    trained = Decoder.from_config(cfg.data, 3)(png)  # how training decodes an image file
    load, files = _prediction_inputs([png], cfg, meta)  # `longtail predict`
    predictor = object.__new__(Predictor)  # `longtail serve` decodes uploads with Predictor.image_decoder
    predictor.cfg, predictor.meta = cfg, meta
    served = predictor.image_decoder()(png)
    assert files == [png]
    for got in (trained, load(0), served):
        assert torch.equal(got, want)

    assert sidecar(cfg, meta, {})["preprocess"] == PRE  # export: the deployment is told to do it at decoding
