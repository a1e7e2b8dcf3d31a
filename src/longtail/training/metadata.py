"""``model.metadata`` in a run: the encoding fitted on the train split once, kept in the run directory.

A new run fits the encoding (:mod:`longtail.data.metadata`) on its train split and writes
``metadata_encoding.json``; a resumed run, ``longtail eval``, ``predict`` and ``export`` read that file
back instead of fitting again, so every later use builds exactly the inputs training saw, even when the
CSV has changed since.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import rundir
from ..core.errors import LongtailError
from ..core.schema import Config
from ..data.metadata import MetadataEncoding, attach_metadata, fit_on_train


def missing_rule(cfg: Config) -> str:
    """``model.metadata_missing`` with its default (``indicator``)."""
    return cfg.model.metadata_missing or "indicator"


def check_supported(cfg: Config, bundle: Any) -> None:
    """Metadata fusion needs an image source and one CNN trained by the engine: SPBL and clips are refused in one line."""
    if cfg.spbl is not None:
        raise LongtailError("model.metadata does not work with an spbl block (its paces fit an SVM on image features only); "
                            "drop model.metadata or the spbl block")
    if getattr(bundle.train, "frames_per_clip", None):
        raise LongtailError("model.metadata takes image sources, but data.source gives clips; drop model.metadata")


def read_encoding(run_dir: str | Path, cfg: Config) -> MetadataEncoding | None:
    """The run's saved encoding (None for an image-only run); a missing or mismatched file is a one-line error."""
    if not cfg.model.metadata:
        return None
    path = Path(run_dir) / rundir.METADATA_ENCODING
    if not path.is_file():
        raise LongtailError(f"'{run_dir}' trains with model.metadata but has no {rundir.METADATA_ENCODING}; "
                            "the run was not trained to the end of its data setup: train it again")
    encoding = MetadataEncoding.from_json(rundir.read_json(path), str(path))
    if encoding.names != list(cfg.model.metadata) or encoding.missing != missing_rule(cfg):
        raise LongtailError(f"'{path}' encodes columns {encoding.names} ({encoding.missing}) but the config's model.metadata is "
                            f"{list(cfg.model.metadata)} ({missing_rule(cfg)}); use the run's own config.yaml")
    return encoding


def run_encoding(cfg: Config, bundle: Any, run_dir: Path) -> MetadataEncoding | None:
    """Training: the run's saved encoding (a resume) or one fitted on ``bundle.train`` (a new run), attached
    to every split of ``bundle``; None for an image-only run. The caller writes a new one (rank 0)."""
    if not cfg.model.metadata:
        return None
    check_supported(cfg, bundle)
    saved = (Path(run_dir) / rundir.METADATA_ENCODING).is_file()
    encoding = read_encoding(run_dir, cfg) if saved else fit_on_train(bundle, cfg.model.metadata, missing_rule(cfg))  # type: ignore[arg-type]
    assert encoding is not None
    attach_metadata(bundle, encoding)
    return encoding


def attach_saved(run_dir: Path, cfg: Config, bundle: Any) -> MetadataEncoding | None:
    """``longtail eval``: the saved encoding attached to the rebuilt splits (None for an image-only run)."""
    encoding = read_encoding(run_dir, cfg)
    if encoding is not None:
        attach_metadata(bundle, encoding)
    return encoding


def width(encoding: MetadataEncoding | None) -> int:
    """The model's metadata input width (0: images only)."""
    return 0 if encoding is None else encoding.width
