"""The Python API. Everything the CLI does goes through these functions, so a notebook can too.

>>> import longtail
>>> result = longtail.train("configs/quickstart.yaml", overrides=["train.epochs=3"])
>>> longtail.evaluate(result.run_dir, split="test")["balanced_accuracy"]
>>> longtail.predict(result.run_dir, ["lesion.jpg"], out="preds.csv")
>>> longtail.export(result.run_dir, format="onnx")

Each function only delegates (to :mod:`longtail.training.run`, :mod:`longtail.inference.evaluate`,
:mod:`longtail.inference.predict`, :mod:`longtail.inference.export`) and imports it on first call,
so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.schema import Config
    from .training.run import TrainResult


def train(
    config: Config | str | Path | dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    *,
    overwrite: bool = False,
    resume: str | Path | None = None,
    stop_after: int | None = None,
    on_epoch: Callable[[Any], None] | None = None,
) -> TrainResult:
    """Train (or resume) a run; evaluate the best checkpoint on test once at the end.

    ``resume`` is a run directory: its saved config is used (``overrides`` may extend it, e.g.
    ``train.epochs=8``) and training continues from ``checkpoints/last.pt``. ``stop_after`` ends this
    call after that many epochs in total, leaving a resumable run (time-sliced training).
    ``on_epoch`` is called with an :class:`longtail.engine.hooks.EpochReport` after every finished epoch.

    ``train.devices=N`` (N > 1) runs N data-parallel processes on this machine through torch's
    elastic agent and returns rank 0's result; under ``torchrun`` each launched process calls this
    and joins the process group (see ``docs/scaling.md``).
    """
    from .training.run import train as train_run

    return train_run(config, overrides, overwrite=overwrite, resume=resume, stop_after=stop_after, on_epoch=on_epoch)


def evaluate(run_dir: str | Path, split: str = "test", checkpoint: str = "best") -> dict[str, Any]:
    """Metrics of a checkpoint on ``split`` ('val' or 'test'), recomputed from the data.

    ``checkpoint``: ``'best'`` (selected on validation) or ``'last'`` (the final epoch, what
    last-epoch protocols report). The last checkpoint's predictions go to ``predictions/<split>_last.npz``
    so the best checkpoint's stored predictions stay those of ``results.json``; the post-hoc strengths
    stored in the run were chosen for the best checkpoint and are applied to it only.
    """
    from .inference.evaluate import evaluate as evaluate_run

    return evaluate_run(run_dir, split, checkpoint)


def predict(run_dir: str | Path, images: list[str | Path], out: str | Path | None = None, batch_size: int = 64,
            overrides: list[str] | None = None, top_k: int = 3, submission: str | None = None,
            rule_051: bool = True, explain: str | Path | None = None, metadata: str | Path | None = None) -> list[dict[str, Any]]:
    """Predicted label, its probability, the ``top_k`` labels and every class's probability, for image
    files or folders, with the run's best model and post-hoc setting.

    Returns one dict per image (``image``, ``label``, ``probability``, ``top_<i>``,
    ``top_<i>_probability``, ``warning``, one probability per class name); writes a CSV when
    ``out`` is given. ``overrides`` are dotted config overrides for reading the inputs (e.g.
    ``data.on_bad_image=skip``); the model's settings are checked against the checkpoint. Decoding
    matches training exactly (same pre-processing and size). ``warning`` says when an input's
    channels or size are far from the training data's (also logged once). For a clip run the inputs
    are clip folders (or folders holding them), read as evaluation reads clips.

    ``submission`` (``'isic2018'`` or ``'isic2019'``) writes ``out`` as that ISIC challenge's
    submission CSV instead (bare image ids, the challenge's columns, UNK for 2019 as
    ``eval.unk_class`` says, the 0.51 rule unless ``rule_051=False``; see :mod:`longtail.evaluation.submission`).
    ``explain`` (a folder) also writes a Grad-CAM overlay of each image's predicted class there
    (``eval.cam_layer`` picks the layer; needs the ``explain`` extra, grad-cam).
    ``metadata`` (a CSV path) gives a ``model.metadata`` run its columns, one row per image keyed by image id
    or file name (``image_id``, ``image``, ...); such a run needs it, an image-only run refuses it.
    """
    from .inference.predict import predict as predict_run

    return predict_run(run_dir, images, out=out, batch_size=batch_size, overrides=overrides, top_k=top_k,
                       submission=submission, rule_051=rule_051, explain=explain, metadata=metadata)


def export(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None) -> Path:
    """Write the run's deployable model (``format``: onnx or torchscript) and ``<out>.json`` beside it.

    The ONNX file is checked with ``onnx.checker`` and one batch through ``onnxruntime`` against
    the PyTorch model; returns the model's path.
    """
    from .inference.export import export as export_run

    return export_run(run_dir, format, out)
