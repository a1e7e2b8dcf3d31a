"""Export a trained run for deployment: ONNX or TorchScript, plus a preprocessing sidecar JSON.

The exported graph is what ``longtail predict`` computes after decoding: the run's evaluation
transforms, normalisation, the best checkpoint's model and the post-hoc correction chosen on
validation (tau-norm rewrites the head weights, and leaves the bias out where posthoc.json's
tau_norm entry says ``bias: drop``; logit adjustment becomes a constant logit offset), then softmax.
Its input is a float32 batch in [0, 1] at the size the run decodes images to, so a deployment only
has to decode, resize and divide by 255; the sidecar says how. The batch size is dynamic.

A ``model.metadata`` run exports a graph with a second input, ``metadata``: the float32 N x M vector
that the run's encoding makes of each image's columns. The sidecar's ``metadata`` entry holds that
encoding (columns, kinds, train means / stds, vocabularies, the name of every slot), so a deployment
builds the vector without longtail: a numeric column is ``(value - mean) / std`` (with a 0/1 missing
slot after it under ``missing: indicator``), a categorical one is one-hot over its vocabulary with a
last ``unknown`` slot for a value training never saw (or a missing one).
"""

from __future__ import annotations

import io
import json
import logging
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import rundir
from ..core.errors import LongtailError

log = logging.getLogger("longtail")

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
INPUT_NAME = "image"
METADATA_NAME = "metadata"  # the second input of a model.metadata run's graph
OUTPUT_NAME = "probabilities"
OPSET = 18


class Deployed(nn.Module):
    """Float input in [0, 1] (and a metadata run's encoded metadata) -> eval transforms -> normalise -> model -> post-hoc -> softmax."""

    def __init__(self, model: nn.Module, ops: list[Any], mean: list[float], std: list[float],
                 head: nn.Module | None, offset: torch.Tensor | None, clips: bool, temperature: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model = model
        self.takes_metadata = bool(getattr(model, "metadata_dim", 0))  # a Python flag: the traced graph has one fixed shape
        self.ops = ops  # deterministic batched ops (resize, center_crop): plain tensor code, traced
        shape = (1, -1, 1, 1, 1) if clips else (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape))
        self.head = head  # a tau-normalised linear head on the backbone's features, or None
        self.adjust = offset is not None  # a Python flag, so tracing keeps no data-dependent branch
        self.register_buffer("offset", offset if offset is not None else torch.zeros(0))
        self.scale = temperature is not None  # trust.json's temperature (scalar, or one per class)
        self.register_buffer("temperature", temperature if temperature is not None else torch.zeros(0))

    def forward(self, x: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        x = (x - self.mean) / self.std
        if self.takes_metadata:
            logits = self.model(x, meta=metadata) if self.head is None else self.head(self.model.features(x, metadata))
        elif self.head is not None:
            logits = self.head(self.model.backbone(x))
        else:
            logits = self.model(x)
        if self.adjust:
            logits = logits - self.offset
        if self.scale:
            logits = logits / self.temperature
        return torch.softmax(logits, dim=1)


def build_deployed(run_dir: Path) -> tuple[Deployed, dict[str, Any]]:
    """The run's best model with its post-hoc correction folded in, and its sidecar description."""
    from ..data import build_pipeline
    from ..evaluation.posthoc import prior_shift, tau_norm_bias_mode
    from ..models.heads import tau_normalize_weight
    from ..training.finalize import head_params
    from ..training.loading import load_model, load_run_config, read_data_meta, read_posthoc, read_trust
    from ..training.metadata import read_encoding

    cfg = load_run_config(run_dir)
    if cfg.spbl is not None:
        raise LongtailError(f"'{run_dir}' is an SPBL run: its head is a scikit-learn classifier (an SVM on the CNN's features), "
                            "which has no ONNX/TorchScript form; use `longtail predict` to score images with it")
    if cfg.eval.tta is not None:
        raise LongtailError(f"'{run_dir}' predicts with test-time augmentation (eval.tta), which the exported graph does not "
                            "include, so the exported model would disagree with `longtail predict`")
    meta = read_data_meta(run_dir)
    names, counts = meta["class_names"], np.asarray(meta["train_counts"])
    device = torch.device("cpu")
    model = load_model(run_dir, cfg, len(names), meta["channels"], counts, device)
    pipeline = build_pipeline(cfg.data.eval_transforms, meta["norm_mean"], meta["norm_std"], train=False)
    ops = pipeline.ops[:-1]  # the last op is Normalize, folded in as buffers
    if pipeline.sample is not None or any(getattr(op, "random", True) for op in ops):
        raise LongtailError(f"'{run_dir}' has random or per-sample eval transforms ({cfg.data.eval_transforms}); "
                            "only deterministic batched ones (resize, center_crop) can be exported")
    posthoc = read_posthoc(run_dir)
    unknown = set(posthoc) - {"tau_norm", "logit_adjust"}
    if unknown:
        raise LongtailError(f"{run_dir / rundir.POSTHOC} has unknown entries {sorted(unknown)}; rerun `longtail eval`")
    head = None
    if "tau_norm" in posthoc:
        w, b = head_params(model)
        if w is None:
            raise LongtailError(f"'{run_dir}' uses tau-norm but its model has no linear head weight to fold it into")
        tau = float(posthoc["tau_norm"]["tau"])
        # bias drop (classifier-balancing's tau_norm.py): the head is folded in without its bias, as apply_posthoc scores it
        keep_bias = b is not None and tau_norm_bias_mode(posthoc["tau_norm"]) == "keep"
        head = nn.Linear(w.shape[1], w.shape[0], bias=keep_bias)
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(tau_normalize_weight(w, tau), dtype=torch.float32))
            if keep_bias:
                head.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
    offset = None
    if "logit_adjust" in posthoc:
        entry = posthoc["logit_adjust"]
        offset = torch.as_tensor(float(entry["tau"]) * prior_shift(counts, entry.get("target_prior"), entry.get("source_prior", "train")), dtype=torch.float32)
    clips = bool(meta.get("frames_per_clip"))
    fitted = read_trust(run_dir).get("temperature")
    temperature = None if fitted is None else torch.as_tensor(fitted["value"], dtype=torch.float32)
    deployed = Deployed(model, ops, meta["norm_mean"], meta["norm_std"], head, offset, clips, temperature).eval()
    info = sidecar(cfg, meta, posthoc)
    encoding = read_encoding(run_dir, cfg)
    if encoding is not None:  # the graph's second input and how to build it
        info["metadata"] = {"input_name": METADATA_NAME, "input_shape": ["batch", encoding.width], "input_dtype": "float32",
                            "encoding": encoding.to_json()}
    if fitted is not None:
        info["inside_model"]["temperature"] = fitted["value"]  # logits / T after the post-hoc correction, before the softmax
    return deployed, info


def sidecar(cfg: Any, meta: dict[str, Any], posthoc: dict[str, Any]) -> dict[str, Any]:
    """What a deployment must do before the model, and what the model already does inside."""
    size = meta.get("image_size")
    channels = int(meta["channels"])
    frames = meta.get("frames_per_clip")
    shape: list[Any] = ["batch", channels, *([int(frames)] if frames else []), *(size or ["height", "width"])]
    return {
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_shape": shape,
        "input_dtype": "float32",
        "input_range": [0.0, 1.0],
        "channel_order": "RGB" if channels == 3 else "L",
        "layout": "NCTHW" if frames else "NCHW",
        "image_size": size,  # [height, width]; resize antialiased bilinear to this before the model (None: the data's own size)
        "preprocess": [{"name": c.name, **c.kwargs} for c in cfg.data.preprocess],  # done at decoding, before resizing
        "inside_model": {
            "eval_transforms": [{"name": c.name, **c.kwargs} for c in cfg.data.eval_transforms],
            "mean": meta["norm_mean"],
            "std": meta["norm_std"],
            # tau_norm "bias": "drop" when the head's bias is left out (classifier-balancing's form); absent: kept
            "posthoc": {k: {"tau": v["tau"], **({"target_prior": v["target_prior"]} if "target_prior" in v else {}),
                            **({"source_prior": v["source_prior"]} if "source_prior" in v else {}),
                            **({"bias": "drop"} if k == "tau_norm" and v.get("bias") == "drop" else {})} for k, v in posthoc.items()},
            "softmax": True,
        },
        "class_names": meta["class_names"],
    }


def default_out(run_dir: Path, fmt: str) -> Path:
    return run_dir / f"model{FORMATS[fmt]}"


def export(run_dir: str | Path, format: str = "onnx", out: str | Path | None = None) -> Path:
    """Write the run's deployable model (``format``: onnx or torchscript), ``<out>.json`` and ``model_card.md`` beside it.

    All three paths are checked before any work (never a file the run owns, never a folder, never another
    run's card). The model is built in memory, checked there (ONNX with ``onnx.checker``; one batch through
    ``onnxruntime`` or TorchScript against the PyTorch model), then written atomically: a kill or a full
    disk leaves the old file or the new one. The card names the exported file and its sha256; the three
    files go to the run's MLflow record when it has one (``longtail.tracking``). Returns the model's path.
    """
    if format not in FORMATS:
        raise LongtailError(f"export format '{format}' is not one of {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    path, within = _output(run_dir, format, out)
    deployed, info = build_deployed(run_dir)
    example = _example_input(info)
    example_meta = _example_metadata(info)
    inputs = (example,) if example_meta is None else (example, example_meta)
    with torch.no_grad(), warnings.catch_warnings():
        # torch marks jit.trace and the TorchScript-based ONNX exporter deprecated; both still work and are checked below
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # shape checks in the eval transforms see H x W, which the input fixes; only the batch size varies
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        expected = deployed(*inputs).numpy()
        data = _torchscript_bytes(deployed, inputs) if format == "torchscript" else _onnx_bytes(deployed, inputs)
    diff = float(np.abs(_probabilities(data, format, example.numpy(), None if example_meta is None else example_meta.numpy()) - expected).max())
    if diff > 1e-4:
        raise LongtailError(f"the exported {format} model disagrees with the PyTorch model (max abs difference {diff:.2e}); nothing was written")
    info["format"] = format
    rundir.atomic_write_bytes(path, data, within)
    rundir.write_json(sidecar_path(path), info, within)
    card = _write_card(run_dir, path)
    _log_artifacts(run_dir, [p for p in (path, sidecar_path(path), card) if p is not None])
    return path


def card_path(model_path: str | Path) -> Path:
    """``DIR/model.onnx`` -> ``DIR/model_card.md``: the card lies beside the exported model (in the run: rundir.CARD)."""
    return Path(model_path).with_name(rundir.CARD)


def _write_card(run_dir: Path, model_path: Path) -> Path | None:
    """The model card beside the exported model (``model_card.md`` in its folder), naming the exported file;
    the model is written already, so a card that cannot be written is a warning (`longtail card` retries it)."""
    from ..evaluation.card import write_card

    try:
        return write_card(run_dir, card_path(model_path), exported=model_path)
    except LongtailError as e:
        log.warning("the model was exported but its card was not written (%s); write it with `longtail card %s --out FILE`", e, run_dir)
        return None


def _log_artifacts(run_dir: Path, paths: list[Path]) -> None:
    """Add the exported files to the run's MLflow record (``longtail.tracking``; a no-op for a run without tracking)."""
    try:
        from ..tracking import log_artifacts
    except ImportError:  # a longtail without the tracking package: nothing to log to
        return
    log_artifacts(run_dir, paths)


def _output(run_dir: Path, format: str, out: str | Path | None) -> tuple[Path, Path | None]:
    """The model's path, checked with its sidecar's and its card's (rundir.outputs), and the run to keep the default one in
    (no link out of it)."""
    from ..evaluation.card import check_card_output

    example = default_out(run_dir, format).name
    path = rundir.check_output(out if out is not None else default_out(run_dir, format), "export", example)
    rundir.check_output(sidecar_path(path), "export", example, label="the sidecar JSON")
    check_card_output(run_dir, card_path(path))  # before any work: never over a file a run owns, nor another run's card
    return path, run_dir if out is None else None


def sidecar_path(model_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def _example_input(info: dict[str, Any]) -> torch.Tensor:
    shape = [2, *info["input_shape"][1:]]
    if any(not isinstance(s, int) for s in shape):
        raise LongtailError("this run's data has no fixed image size (data.image_size unset and images of their own size); "
                            "set data.image_size and retrain to export a model with a fixed input size")
    return torch.rand(shape, generator=torch.Generator().manual_seed(0))


def _example_metadata(info: dict[str, Any]) -> torch.Tensor | None:
    """A batch of 2 encoded metadata vectors for the check (None for an image-only run): one-hot slots drawn at
    random would be as good as real ones for comparing two implementations of the same graph."""
    entry = info.get("metadata")
    if entry is None:
        return None
    return torch.rand((2, int(entry["input_shape"][1])), generator=torch.Generator().manual_seed(1))


def _torchscript_bytes(deployed: nn.Module, example: tuple[torch.Tensor, ...]) -> bytes:
    """The traced model as a TorchScript file's bytes (built in memory: the file is written atomically after the check)."""
    buf = io.BytesIO()
    torch.jit.save(torch.jit.trace(deployed, example, check_trace=False), buf)
    return buf.getvalue()


def _onnx_bytes(deployed: nn.Module, example: tuple[torch.Tensor, ...]) -> bytes:
    """The model as an ONNX file's bytes, checked with ``onnx.checker`` (built in memory, like :func:`_torchscript_bytes`)."""
    try:
        import onnx
    except ImportError:
        raise LongtailError("ONNX export needs the export extra: pip install 'longtail[export]' (onnx and onnxruntime)") from None
    from torch.onnx.errors import UnsupportedOperatorError

    buf = io.BytesIO()
    names = [INPUT_NAME, METADATA_NAME][: len(example)]
    try:
        torch.onnx.export(deployed, example, buf, input_names=names, output_names=[OUTPUT_NAME],
                          dynamic_axes={**{n: {0: "batch"} for n in names}, OUTPUT_NAME: {0: "batch"}}, opset_version=OPSET, dynamo=False)
    except UnsupportedOperatorError as e:
        op = str(e).split("'")[1] if "'" in str(e) else "an operator"
        hint = " (the antialiased resize of data.eval_transforms)" if "_aa" in op else ""
        raise LongtailError(f"the model uses {op}{hint}, which ONNX opset {OPSET} cannot express; export with --format torchscript") from None
    onnx.checker.check_model(onnx.load_model_from_string(buf.getvalue()))
    return buf.getvalue()


def run_exported(path: str | Path, x: np.ndarray, metadata: np.ndarray | None = None) -> np.ndarray:
    """Probabilities of an exported model, whatever its file name: a TorchScript file is a zip archive, an ONNX file is not.
    ``metadata``: the encoded metadata batch a model.metadata run's graph takes as its second input."""
    return _probabilities(Path(path).read_bytes(), "torchscript" if zipfile.is_zipfile(path) else "onnx", x, metadata)


def _probabilities(data: bytes, format: str, x: np.ndarray, metadata: np.ndarray | None = None) -> np.ndarray:
    """Probabilities of the exported model ``data`` (the bytes of a ``format`` file) on the batch ``x`` (and ``metadata``)."""
    if format == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise LongtailError("checking an ONNX model needs onnxruntime: pip install 'longtail[export]'") from None
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        feeds = {INPUT_NAME: x.astype(np.float32)}
        if metadata is not None:
            feeds[METADATA_NAME] = metadata.astype(np.float32)
        return session.run(None, feeds)[0]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    args = [torch.as_tensor(x, dtype=torch.float32)] + ([] if metadata is None else [torch.as_tensor(metadata, dtype=torch.float32)])
    with torch.no_grad():
        return module(*args).numpy()


def add_commands(sub: Any) -> None:
    """``longtail export RUN_DIR --format onnx|torchscript [--out FILE]``."""
    p = sub.add_parser("export", help="export a run's best model (post-hoc correction folded in) to ONNX or TorchScript")
    p.add_argument("run_dir", help="a run directory made by `longtail train`")
    p.add_argument("--format", choices=sorted(FORMATS), default="onnx", help="onnx (checked with onnxruntime) or torchscript (default: onnx)")
    p.add_argument("--out", metavar="FILE", help="model file (default: RUN_DIR/model.onnx or RUN_DIR/model.pt); the sidecar JSON is FILE.json, "
                   "the model card model_card.md in FILE's folder")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: Any) -> int:
    path = export(args.run_dir, args.format, args.out)
    card = card_path(path)
    also = f", {card}" if card.is_file() else ""
    print(f"wrote {path} and {sidecar_path(path)}{also} (input: float32 {json.dumps(rundir.read_json(sidecar_path(path))['input_shape'])} in [0, 1])")
    return 0
