"""A trained run loaded once for scoring: what `longtail predict` and `longtail serve` both compute.

Loading (config, data.json, model, eval transforms, post-hoc correction, trust fit) happens once;
:meth:`Predictor.score` then turns a batch of decoded uint8 images into the rows `predict` writes, so
a served model and the command line can never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import rundir
from ..catalog.check import load_config
from ..data.decode import Decoder
from ..training.finalize import head_params
from ..training.loading import load_model, load_run_config, read_data_meta, read_posthoc, read_trust
from ..training.metadata import read_encoding


@dataclass
class Scored:
    """One batch's scores: the post-hoc-corrected logits, their softmax, the temperature-calibrated softmax
    (None without a fitted temperature), the conformal sets and abstentions (None when the run has none)."""

    logits: np.ndarray
    probabilities: np.ndarray
    calibrated: np.ndarray | None
    sets: np.ndarray | None
    abstain: np.ndarray | None
    model_input: torch.Tensor

    @property
    def shown(self) -> np.ndarray:
        """The probabilities `predict` writes: calibrated where the run has a temperature."""
        return self.probabilities if self.calibrated is None else self.calibrated


class Predictor:
    """A run directory's best model with everything that scores an input as training evaluated it."""

    def __init__(self, run_dir: str | Path, overrides: list[str] | None = None) -> None:
        from ..data import build_pipeline
        from ..engine.device import select_device
        from ..engine.inference import build_tta

        self.run_dir = Path(run_dir)
        cfg = load_run_config(self.run_dir)
        self.cfg = load_config(self.run_dir / rundir.CONFIG, overrides) if overrides else cfg
        self.meta = read_data_meta(self.run_dir)
        self.class_names: list[str] = list(self.meta["class_names"])
        self.counts = np.asarray(self.meta["train_counts"])
        self.fitted = read_trust(self.run_dir)
        self.encoding = read_encoding(self.run_dir, self.cfg)  # model.metadata: how each image's CSV row becomes the model's second input
        self.device = select_device(self.cfg.train.device)
        self.model = load_model(self.run_dir, self.cfg, len(self.class_names), self.meta["channels"], self.counts, self.device)
        self.pipeline = build_pipeline(self.cfg.data.eval_transforms, self.meta["norm_mean"], self.meta["norm_std"], train=False)
        self.posthoc = read_posthoc(self.run_dir)
        self.tta = build_tta(self.cfg)

    @property
    def clips(self) -> bool:
        return bool(self.meta.get("frames_per_clip"))

    @property
    def trust_columns(self) -> tuple[str, ...]:
        """The trust layer's CSV columns this run has (a conformal set, an abstention flag)."""
        from ..evaluation import prediction

        return tuple(c for c, key in ((prediction.PREDICTION_SET, "conformal"), (prediction.ABSTAIN, "selective")) if key in self.fitted)

    def image_decoder(self) -> Decoder:
        """Decodes an image file at the size and with the pre-processing training used (data.json)."""
        data = self.cfg.data
        return Decoder(self.meta["channels"], self.meta.get("image_size") or (None if data.image_size == "model" else data.image_size),
                       data.preprocess, max_image_pixels=data.max_image_pixels)

    @torch.no_grad()
    def score(self, raw: torch.Tensor, meta: torch.Tensor | None = None) -> Scored:
        """Scores of a batch of decoded uint8 inputs (N x C x H x W, or clips N x C x T x H x W); ``meta``: the
        encoded metadata rows (:meth:`encode_metadata`) that a ``model.metadata`` run needs beside them."""
        from ..engine.batches import meta_kwargs
        from ..engine.device import autocast
        from ..evaluation import trust

        if (self.encoding is None) != (meta is None):
            from ..core.errors import LongtailError

            raise LongtailError(self.metadata_problem() if meta is None else "this run's model takes images only; pass no metadata")
        x = self.pipeline.batch(raw.to(self.device))
        extra = meta_kwargs(None if meta is None else meta.to(self.device))
        with autocast(self.device, self.cfg.train.precision, self.model):
            if self.tta is not None:
                logits, feats = self.tta.predict(lambda v: self.model(v, **extra), x), None
            else:
                logits, feats = self.model(x, return_features=True, **extra)
        logits_np = logits.float().cpu().numpy()
        if self.posthoc:
            from ..evaluation.posthoc import apply_posthoc

            w, b = head_params(self.model)
            logits_np = apply_posthoc(logits_np, None if feats is None else feats.float().cpu().numpy(), self.posthoc, w, b, self.counts)
        probs = trust.calibrated_probs(logits_np, {})
        calibrated = trust.calibrated_probs(logits_np, self.fitted) if self.fitted.get("temperature") else None
        shown = probs if calibrated is None else calibrated
        return Scored(logits_np, probs, calibrated, trust.image_sets(shown, self.fitted), trust.abstains(shown, self.fitted), x)

    def metadata_problem(self) -> str:
        """The one line a metadata run gives when its inputs come without their metadata."""
        names = ", ".join(self.encoding.names) if self.encoding is not None else ""
        return (f"this run's model also takes metadata ({names}) beside each image; pass a CSV with those columns and one row per "
                "image (--metadata FILE.csv, metadata= in Python), keyed by image id or file name")

    def encode_metadata(self, rows: Sequence[Any], names: Sequence[str], where: str) -> torch.Tensor:
        """The encoded metadata of ``rows`` (each image's CSV row, column -> value), as training encoded it."""
        assert self.encoding is not None
        return torch.from_numpy(self.encoding.encode(list(names), list(rows), where))

    def rows(self, scored: Scored, names: Sequence[str], warnings: Sequence[str], top_k: int) -> list[dict[str, Any]]:
        """`predict`'s CSV rows of a scored batch (label, top-k, set, abstention, warning, every probability)."""
        from ..evaluation import prediction

        return [prediction.row(name, p, self.class_names, top_k, warning, None if scored.sets is None else scored.sets[i],
                               None if scored.abstain is None else bool(scored.abstain[i]))
                for i, (name, p, warning) in enumerate(zip(names, scored.shown, warnings))]
