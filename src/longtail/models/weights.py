"""Reading weight files and loading them with one-line errors instead of PyTorch's key dumps.

Two entry points:

- :func:`load_checkpoint_weights`: a whole model from a checkpoint (resume, evaluate, predict).
  Every key must match.
- :func:`load_backbone_weights`: pretrained weights for a backbone. The file may be in the
  backbone's own layout, a longtail checkpoint (``backbone.*`` keys) or the original library's
  layout (torchvision/timm ``*.pth``). Classifier keys of the source model are dropped. A
  3-channel first convolution is adapted to the data's channel count. Every other backbone key
  must match, so weights of the wrong architecture fail loudly instead of half-loading.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..core.errors import LongtailError
from ..core.safe_load import torch_load_safely
from .dropblock import DropBlock2d

# top-level names under which checkpoints of common tools keep the model's state dict
_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "model_state", "net", "feat_model")
# first key components that name the source model's classifier (never part of a backbone)
_CLASSIFIER_NAMES = {"fc", "linear", "classifier", "head", "heads", "last_linear"}
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


def read_weights_file(path: str | Path) -> dict[str, Any]:
    """Load a ``.pt``/``.pth``/``.bin``/``.safetensors`` file on the CPU, without unpickling code."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise LongtailError(f"model.weights: file '{p}' not found; pass an existing .pt/.pth/.safetensors weight file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(p), device="cpu"))
        except Exception as e:  # noqa: BLE001 - any reader failure means a bad file
            raise LongtailError(f"model.weights: '{p}' is not a readable safetensors file ({one_line(e)})") from None
    try:
        obj = torch_load_safely(p, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise LongtailError(
            f"model.weights: '{p}' cannot be read as plain tensors ({one_line(e)}); "
            "re-save it with torch.save(model.state_dict(), path)"
        ) from None
    if not isinstance(obj, Mapping):
        raise LongtailError(f"model.weights: '{p}' holds a {type(obj).__name__}, not a state dict; save model.state_dict() instead")
    return dict(obj)


def unwrap_state_dict(obj: Mapping[str, Any], source_name: str = "the weight file") -> tuple[dict[str, Tensor], str | None]:
    """(tensor state dict, architecture recorded in the file or None) from a checkpoint-like mapping.

    Descends into ``state_dict``/``model``/... entries and strips DDP / torch.compile prefixes.
    """
    arch = _recorded_arch(obj)
    current: Mapping[str, Any] = obj
    while not _all_tensors(current):
        nested = next((current[k] for k in _NESTED_KEYS if isinstance(current.get(k), Mapping)), None)
        if nested is None:
            break
        arch = arch or _recorded_arch(nested)
        current = nested
    tensors = {k: v for k, v in current.items() if isinstance(v, Tensor)}
    if not tensors:
        raise LongtailError(f"{source_name}: holds no tensors; save model.state_dict() (or a dict with it under 'model')")
    out = {}
    for key, value in tensors.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out, arch


def load_checkpoint_weights(model: nn.Module, state_dict: Mapping[str, Any], source_name: str) -> None:
    """Load every key of ``model`` from ``state_dict``; any mismatch is a one-line LongtailError.

    A checkpoint whose head was switched to LWS (``head.scales``) or to MiSLAS's scaled linear head
    (``head.logit_scales``) switches the model's head too, so a decoupled run can be evaluated from
    the config it was built from.
    """
    sd, file_arch = unwrap_state_dict(state_dict, source_name)
    set_head = getattr(model, "set_head", None)
    if callable(set_head) and "head.scales" in sd and not hasattr(getattr(model, "head", None), "scales"):
        set_head("lws")
    if callable(set_head) and "head.logit_scales" in sd and not hasattr(getattr(model, "head", None), "logit_scales"):
        set_head("scaled_linear")
    _load_exact(model, sd, source_name, file_arch, optional=_optional_keys(model))


def load_backbone_weights(backbone: nn.Module, state_dict: Mapping[str, Any], source_name: str) -> None:
    """Load pretrained weights into ``backbone`` (strict on backbone keys, classifier keys dropped)."""
    sd, file_arch = unwrap_state_dict(state_dict, source_name)
    expected = backbone.state_dict()
    mapped = _best_mapping(sd, expected, _key_mappings(backbone))
    classifier_prefixes = tuple(getattr(backbone, "classifier_prefixes", ()))
    kept = {
        k: v
        for k, v in mapped.items()
        if k in expected or not (k.startswith(classifier_prefixes) or k.split(".", 1)[0] in _CLASSIFIER_NAMES)
    }
    first_conv = next((k for k, v in expected.items() if v.ndim >= 4), None)  # 2D or 3D (clip) kernels
    if first_conv in kept:
        want, have = expected[first_conv].shape, kept[first_conv].shape
        if have[0] == want[0] and have[2:] == want[2:] and have[1] != want[1]:
            kept[first_conv] = adapt_conv_weight(kept[first_conv], want[1])
    _load_exact(backbone, kept, source_name, file_arch, optional=_optional_keys(backbone))


def adapt_conv_weight(weight: Tensor, in_channels: int) -> Tensor:
    """A first-convolution kernel for ``in_channels`` inputs made from one trained on ``weight.shape[1]``.

    One channel: the sum over input channels, so a grey image gives exactly the response the
    trained kernel gave to the same image as R=G=B. Other counts: the kernel tiled over the new
    channels and scaled by ``old / new``, which keeps the response's overall magnitude
    (approximate; channels beyond RGB have no trained meaning anyway).
    """
    have = weight.shape[1]
    if have == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_channels // have)
    return weight.repeat(1, reps, *[1] * (weight.ndim - 2))[:, :in_channels] * (have / in_channels)


def model_arch(model: nn.Module) -> str:
    """The architecture name used in messages ('resnet32', 'torchvision:resnet18', ...)."""
    arch = getattr(model, "arch", None)
    return str(arch) if arch else type(model).__name__


# --------------------------------------------------------------------------------- internals
def _load_exact(model: nn.Module, sd: dict[str, Tensor], source: str, file_arch: str | None, optional: set[str]) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd and k not in optional]
    unexpected = [k for k in sd if k not in expected]
    wrong = [k for k in sd if k in expected and sd[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatches ({k}: file {list(sd[k].shape)} vs model {list(expected[k].shape)})")
        held = f" (the file holds a '{file_arch}' model)" if file_arch else ""
        raise LongtailError(
            f"{source}: weights do not fit model '{model_arch(model)}'{held}: {'; '.join(parts)}; "
            f"use weights saved from a '{model_arch(model)}' model or set model.name to the file's architecture"
        )
    model.load_state_dict({k: v for k, v in sd.items() if k in expected}, strict=False)


def _optional_keys(model: nn.Module) -> set[str]:
    """Keys a file may lack: DropBlock step counters (start at 0) and BN batch counters."""
    keys = {f"{name}.step" if name else "step" for name, m in model.named_modules() if isinstance(m, DropBlock2d)}
    keys |= {k for k in model.state_dict() if k.endswith("num_batches_tracked")}
    return keys


def _key_mappings(backbone: nn.Module) -> list[Callable[[str], str | None]]:
    """Candidate renamings from file keys to backbone keys: as is, longtail checkpoint, native layout."""
    mappings: list[Callable[[str], str | None]] = [
        lambda k: k,
        lambda k: k[len("backbone.") :] if k.startswith("backbone.") else None,
    ]
    if isinstance(getattr(backbone, "net", None), nn.Module):  # torchvision / timm wrappers
        mappings.append(lambda k: "net." + k)
    return mappings


def _best_mapping(
    sd: dict[str, Tensor], expected: Mapping[str, Tensor], mappings: Iterable[Callable[[str], str | None]]
) -> dict[str, Tensor]:
    """The renaming of the file's keys that matches the most backbone keys."""
    best: dict[str, Tensor] = {}
    best_hits = -1
    for fn in mappings:
        renamed = {}
        for k, v in sd.items():
            new = fn(k)
            if new is not None:
                renamed[new] = v
        hits = sum(k in expected for k in renamed)
        if hits > best_hits:
            best, best_hits = renamed, hits
    return best


def _recorded_arch(obj: Mapping[str, Any]) -> str | None:
    for key in ("arch", "model_name"):  # ours / the engine's checkpoints
        if isinstance(obj.get(key), str):
            return str(obj[key])
    config = obj.get("config")
    if isinstance(config, Mapping) and isinstance(config.get("model"), Mapping):
        name = config["model"].get("name")
        return str(name) if name else None
    return None


def _all_tensors(d: Mapping[str, Any]) -> bool:
    return bool(d) and all(isinstance(v, Tensor) for v in d.values())


def _few(keys: list[str], n: int = 3) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... {len(keys) - n} more" if len(keys) > n else "")


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__
