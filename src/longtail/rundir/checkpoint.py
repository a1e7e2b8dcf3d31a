"""Checkpoint files: the one safe loader and the one saver that every part of longtail uses.

Run directories are shared between people, so a checkpoint is untrusted input: it is always read
with ``torch.load(weights_only=True)``, which builds tensors and plain containers and never runs
code from the file. The saver stores only such data (RNG states as tensors and lists), plus what
a reader needs to refuse a file that does not belong to the run: a format version, the model name,
a hash of the model section of the config, and the class names and count.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import random
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import LongtailError
from ..core.safe_load import torch_load_safely
from .files import atomic_torch_save

#: bumped when the layout of a checkpoint changes in a way an older reader cannot handle
FORMAT_VERSION = 1
#: model settings that only change the initialisation, never the architecture
_INIT_ONLY = ("pretrained", "weights")
#: model options added after runs were written: unset (None), they are left out, so a run that does not use them hashes as before
_ADDED_OPTIONS = ("metadata", "metadata_missing", "metadata_hidden", "contrastive")


def config_hash(model_section: Mapping[str, Any]) -> str:
    """A short hash of the model section of a config (``cfg.model.model_dump(mode='json')``).

    Settings that only choose the initial weights (``pretrained``, ``weights``) are left out, so the
    hash names the architecture a state dict fits; so are the later options of :data:`_ADDED_OPTIONS`
    while unset, so that an image-only run keeps the hash it had before ``model.metadata`` existed.
    """
    plain = {k: v for k, v in model_section.items() if k not in _INIT_ONLY and not (k in _ADDED_OPTIONS and v is None)}
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_checkpoint(
    path: str | Path,
    state: Mapping[str, Any],
    *,
    model_name: str,
    class_names: Sequence[str],
    config_hash: str,
) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically, with the identity fields.

    numpy arrays and scalars are stored as tensors and Python numbers so that the file loads with
    ``weights_only=True``. A full disk or unwritable folder is a one-line :class:`LongtailError`.
    """
    payload = dict(_plain(dict(state)))
    payload.update(
        format_version=FORMAT_VERSION,
        model_name=model_name,
        class_names=[str(c) for c in class_names],
        num_classes=len(class_names),
        config_hash=config_hash,
    )
    atomic_torch_save(payload, Path(path))


def load_checkpoint(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a longtail checkpoint without executing anything from it, or raise a one-line error.

    Refused with :class:`LongtailError`: a missing, empty, truncated or garbage file; a pickle that
    needs code to load (it is never run); a file that is not a longtail checkpoint; a format newer
    than this version of longtail.
    """
    p = Path(path)
    if not p.is_file():
        raise LongtailError(f"checkpoint '{p}' not found; train the run (or resume it) to write it")
    if p.stat().st_size == 0:
        raise LongtailError(f"checkpoint '{p}' is empty (0 bytes); delete it and resume from another checkpoint or retrain")
    try:
        state = torch_load_safely(p, map_location)
    except pickle.UnpicklingError as e:
        needs = re.search(r"[Uu]nsupported (?:global: )?(?:GLOBAL|class) ([\w.]+)", str(e))
        if needs is None:  # not a pickle at all, or a broken one
            raise LongtailError(
                f"checkpoint '{p}' is truncated or not a torch checkpoint ({_unpickler_detail(e)}); "
                "delete it and resume from another checkpoint or retrain"
            ) from None
        raise LongtailError(
            f"checkpoint '{p}' is not plain tensor data and was not loaded (it needs {needs.group(1)}, which could run code); "
            "use a checkpoint written by longtail, never one from an untrusted source"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, KeyError, AttributeError, TypeError, IndexError) as e:
        raise LongtailError(
            f"checkpoint '{p}' is truncated or not a torch checkpoint ({type(e).__name__}: {_first_line(e)}); "
            "delete it and resume from another checkpoint or retrain"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "model_name" not in state:
        raise LongtailError(f"checkpoint '{p}' is not a longtail checkpoint (no model and model_name entries); pass a run directory written by `longtail train`")
    version = state.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise LongtailError(f"checkpoint '{p}' has format version {version}, newer than this longtail reads ({FORMAT_VERSION}); upgrade longtail")
    return state


def check_checkpoint(
    state: Mapping[str, Any],
    path: str | Path,
    *,
    model_name: str,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    config_hash: str | None = None,
) -> None:
    """Refuse a checkpoint whose architecture or classes differ from what the run expects.

    ``None`` skips a comparison (e.g. the class list before the data is built). Checkpoints written
    before format version 1 carry no class names or hash; for them those checks are skipped.
    """
    if num_classes is None and class_names is not None:
        num_classes = len(class_names)
    if state.get("model_name") != model_name or (num_classes is not None and state.get("num_classes") != num_classes):
        want = f" with {num_classes} classes" if num_classes is not None else ""
        raise LongtailError(
            f"checkpoint '{path}' is from model '{state.get('model_name')}' with {state.get('num_classes')} classes, "
            f"but the config asks for '{model_name}'{want}; resume with the run's own config"
        )
    saved_hash = state.get("config_hash")
    if config_hash is not None and saved_hash is not None and saved_hash != config_hash:
        raise LongtailError(
            f"checkpoint '{path}' was trained with other model settings (config hash {saved_hash}, the config gives {config_hash}); "
            "restore the run's model section or start a new run"
        )
    saved_names = state.get("class_names")
    if class_names is not None and saved_names is not None:
        names = [str(c) for c in class_names]
        diff = [i for i, (a, b) in enumerate(zip(saved_names, names)) if a != b]
        if diff:
            i = diff[0]
            raise LongtailError(
                f"checkpoint '{path}' has class {i} '{saved_names[i]}' where the data has '{names[i]}'; "
                "use the data (and class list) the run was trained on"
            )


# ------------------------------------------------------------------------------ RNG state as data
def check_for_model(state: Mapping[str, Any], path: str | Path, model_cfg: Any, num_classes: int | None = None,
                    class_names: Sequence[str] | None = None) -> None:
    """:func:`check_checkpoint` against a config's ``model:`` section (its name and settings hash)."""
    check_checkpoint(state, path, model_name=model_cfg.name, num_classes=num_classes, class_names=class_names,
                     config_hash=config_hash(model_cfg.model_dump(mode="json")))


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states as tensors, lists and numbers (safe to load)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (or the numpy-array layout of older checkpoints)."""
    py = state["python"]
    random.setstate((int(py[0]), tuple(int(x) for x in py[1]), py[2]))
    npy = state["numpy"]
    if isinstance(npy, Mapping):
        keys = np.asarray(npy["keys"].numpy() if isinstance(npy["keys"], torch.Tensor) else npy["keys"], dtype=np.uint32)
        np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    else:
        np.random.set_state(tuple(npy))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------ helpers
def _plain(obj: Any) -> Any:
    """numpy values -> tensors / Python numbers, recursively; containers without numpy are returned as they are."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj.copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        new = {k: _plain(v) for k, v in obj.items()}
        return obj if all(new[k] is obj[k] for k in obj) else new
    if isinstance(obj, (list, tuple)):
        items = [_plain(v) for v in obj]
        return obj if all(a is b for a, b in zip(items, obj)) else type(obj)(items)
    return obj


def _unpickler_detail(e: BaseException) -> str:
    """The line of torch's weights-only error that says what was wrong (its other lines are boilerplate)."""
    for line in str(e).splitlines():
        line = line.replace("WeightsUnpickler error:", "").strip()
        if line and not line.startswith(("Weights only load failed", "Please file an issue", "Check the documentation")):
            return line[:200]
    return "not a pickle"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else "no detail"
