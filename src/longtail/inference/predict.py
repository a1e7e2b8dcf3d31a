"""Scoring new images (or clip folders) with a trained run: decoded, transformed and corrected as in training.

Inputs are decoded at the size and with the pre-processing data.json records, and each input far
from the training data is flagged rather than silently scored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import rundir
from ..core.errors import LongtailError
from ..core.schema import Config
from ..data.decode import shown
from ..training.loading import load_run_config, read_data_meta

log = logging.getLogger("longtail")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def find_images(paths: list[str | Path]) -> list[Path]:
    """Expand folders (recursively) into image files; keep explicit files as given.

    Only regular files are read: a FIFO, a socket or a device (``/dev/zero``), given or found in a
    folder, would hang or never end; each is left out and named in a WARNING line."""
    from ..data.decode import irregular, shown

    found: list[Path] = []
    odd: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            listed = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and not f.is_dir())
        elif p.exists():
            listed = [p]
        else:
            raise LongtailError(f"'{shown(p)}' does not exist; pass image files or folders of images")
        kinds = [irregular(f) for f in listed]
        found += [f for f, kind in zip(listed, kinds) if kind is None]
        odd += [f"'{shown(f)}' ({kind})" for f, kind in zip(listed, kinds) if kind is not None]
    if odd:
        log.warning("skipped %d input(s) that are not regular files: %s; only regular files are read as images", len(odd), ", ".join(odd[:3]) + (" ..." if len(odd) > 3 else ""))
    if not found:
        raise LongtailError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {', '.join(shown(p) for p in paths)}")
    return found


def _prediction_inputs(images: list[str | Path], cfg: Config, meta: dict[str, Any]) -> tuple[Any, list[Any]]:
    """(item i -> uint8 tensor, the inputs): image files, or clip folders for a clip run.

    With ``data.on_bad_image=skip`` unreadable image files are left out (and said so) instead of
    stopping the whole batch."""
    from ..data import Decoder

    if cfg.data.image_size == "model":  # decode at the size training used (recorded in data.json)
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"image_size": meta["image_size"]})})
    if meta.get("frames_per_clip"):
        from ..data.clips import clips_for_prediction, find_clip_folders

        folders = find_clip_folders(list(images))
        clips = clips_for_prediction(folders, Decoder.from_config(cfg.data, meta["channels"]), int(meta["frames_per_clip"]))
        return clips.load, folders
    files = find_images(list(images))
    if cfg.data.on_bad_image == "skip":
        from ..data.decode import readable

        kept = [f for f in files if readable(f, cfg.data.max_image_pixels)]
        if len(kept) < len(files):
            log.warning("skipped %d unreadable image(s) of %d (data.on_bad_image=skip), e.g. '%s'",
                        len(files) - len(kept), len(files), next(f for f in files if f not in kept))
        if not kept:
            raise LongtailError("no readable image among the inputs (data.on_bad_image=skip left out every one)")
        files = kept
    # the size the model was trained at (data.image_size, or the data's own size when it sets none),
    # so an input of another size is resized as training would have, not stacked at its own size
    decoder = Decoder(meta["channels"], meta.get("image_size") or cfg.data.image_size, cfg.data.preprocess,
                      max_image_pixels=cfg.data.max_image_pixels)
    return (lambda i: decoder(files[i])), files


def _metadata_inputs(predictor: Any, files: list[Any], metadata: str | Path | None) -> torch.Tensor | None:
    """The encoded metadata of every input (None for an image-only run); a metadata run without the CSV, an
    image-only run given one, a missing column or an image without a row is a one-line error."""
    if predictor.encoding is None:
        if metadata is not None:
            raise LongtailError("this run's model takes images only (it was trained without model.metadata); drop --metadata")
        return None
    if metadata is None:
        raise LongtailError(predictor.metadata_problem())
    from ..data.metadata import MetadataTable

    table = MetadataTable(metadata, predictor.encoding.names)
    names = [shown(f) for f in files]
    return predictor.encode_metadata([table.row(f) for f in files], names, f"metadata CSV '{table.path}'")


def predict(run_dir: str | Path, images: list[str | Path], out: str | Path | None = None, batch_size: int = 64,
            overrides: list[str] | None = None, top_k: int = 3, submission: str | None = None,
            rule_051: bool = True, explain: str | Path | None = None, metadata: str | Path | None = None) -> list[dict[str, Any]]:
    """:func:`longtail.api.predict`: one row per input (label, top-k, every probability, warning), and the CSV.

    ``metadata``: a CSV of the run's ``model.metadata`` columns, one row per image (a metadata run needs it;
    an image-only run refuses it), encoded with the run's saved encoding before any image is scored."""
    from ..evaluation import prediction
    from .predictor import Predictor

    run_dir = Path(run_dir)
    if out is not None:  # checked before any work: never a folder, never a file a run owns
        out = rundir.check_output(out, "predict", "predictions.csv" if submission is None else f"{submission}_submission.csv")
    load_run_config(run_dir)  # a folder that is not a run: its one-line error before anything is loaded
    meta = read_data_meta(run_dir)
    class_names = meta["class_names"]
    top_k = prediction.check_top_k(top_k, len(class_names))
    predictor = Predictor(run_dir, overrides)
    cfg = predictor.cfg
    header = prediction.columns(class_names, top_k, predictor.trust_columns)
    load, files = _prediction_inputs(images, cfg, meta)
    encoded = _metadata_inputs(predictor, files, metadata)  # every image's row checked before any work
    if submission is not None:
        from ..evaluation.submission import check_challenge

        if out is None:
            raise LongtailError("a submission needs an output file; pass out= (--out on the command line)")
        check_challenge(submission, class_names, cfg.eval.unk_class)  # refuse a run of other classes before any work
    writer = None
    if explain is not None:  # the folder and the model are checked before any image is scored
        from .overlays import OverlayWriter

        writer = OverlayWriter(predictor.model, cfg.eval.cam_layer, rundir.check_output_folder(explain, "predict --explain", "overlays"))
    rows: list[dict[str, Any]] = []
    all_logits: list[np.ndarray] = []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        raw = torch.stack([load(i) for i in range(start, start + len(chunk))])
        scored = predictor.score(raw, None if encoded is None else encoded[start : start + len(chunk)])
        all_logits.append(scored.logits)
        if writer is not None:
            writer.write(raw, scored.model_input, scored.logits.argmax(axis=1), chunk)
        warnings = ["" if predictor.clips else prediction.input_warning(f, meta) for f in chunk]
        rows += predictor.rows(scored, [shown(f) for f in chunk], warnings, top_k)
    flagged = [r for r in rows if r[prediction.WARNING]]
    if flagged:
        log.warning("%d of %d input(s) are far from the training data (see the warning column), e.g. '%s': %s",
                    len(flagged), len(rows), flagged[0]["image"], flagged[0][prediction.WARNING])
    if submission is not None:
        from ..evaluation.submission import write_challenge_csv

        ids = [shown(Path(f).stem) for f in files]
        write_challenge_csv(out, submission, ids, np.concatenate(all_logits), class_names, cfg.eval.unk_class, rule_051)  # type: ignore[arg-type]
    elif out is not None:
        prediction.write_csv(rows, out, header)
    return rows
