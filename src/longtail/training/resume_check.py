"""What a resume may change: the config a run continues with, against the config it was trained with.

A resumed run must continue the training its checkpoint holds. A change of the model, the data,
the image or batch size, the optimizer, the loss, the schedule or the seed cannot be continued
exactly (the optimizer state would not load, or the run would silently become two runs glued
together), so it is an error naming the keys. Changes that only say where and how the run is
watched, evaluated or extended are allowed and recorded in the run's ``resumes.jsonl``.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from .. import rundir
from ..core.config import to_plain
from ..core.errors import LongtailError
from ..core.schema import Config
from ..core.wording import option
from ..rundir import layout

#: the run's record of its resumes: one line per resume with the epoch and the allowed changes
RESUMES = layout.RESUMES

#: where the run is: a resume continues the folder it is given, whatever these say (not compared)
PLACE_KEYS = ("name", "output_dir")

#: keys (and sections, by prefix) a resume may change: they leave the training trajectory as it was
SAFE_KEYS = (
    "eval", "posthoc",                                      # applied after training, to the best checkpoint
    "train.progress", "train.tensorboard",                  # what is shown and logged
    "train.threads", "train.devices", "train.device",       # where it runs (resume with another process count is tested)
    "data.num_workers", "data.cache", "data.cache_dir",     # how images are read, not which
    "data.eval_batch_size",                                 # inference batching
    "train.on_divergence", "train.divergence_factor",       # the guard, not the training
    "tracking", "data.license",                             # where the run is logged (MLflow), what its model card says
)

#: keys a resume may raise (a longer run; a shorter one would end before the epochs already trained)
LONGER_KEYS = ("train.epochs",)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{dotted key: leaf value}``; lists of sections get their index (``stages.1.epochs``)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out or {prefix.rstrip("."): {}}
    if isinstance(tree, list) and any(isinstance(v, dict) for v in tree):
        out = {}
        for i, value in enumerate(tree):
            out.update(flatten(value, f"{prefix}{i}."))
        return out or {prefix.rstrip("."): []}
    return {prefix.rstrip("."): tree}


def _without_place(flat: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flat.items() if k not in PLACE_KEYS}


def _is_safe(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in SAFE_KEYS)


def _longer_keys(saved: dict[str, Any]) -> set[str]:
    """``train.epochs``, or with stages the last stage's ``epochs`` (an earlier stage's would move later stages)."""
    stages = [k for k in saved if k.startswith("stages.") and k.endswith(".epochs")]
    if not stages:
        return set(LONGER_KEYS)
    last = max(int(k.split(".")[1]) for k in stages)
    return {*LONGER_KEYS, f"stages.{last}.epochs"}


def _shown(value: Any) -> str:
    return "(unset)" if value is _MISSING else json.dumps(value, default=str)


_MISSING = object()


def _added_later(saved: Any, new: Any) -> bool:
    """An optional section the saved config lacks and the new one leaves off (``train.ema: null``): one that
    longtail gained after the run was written, so the run trained without it, as it continues."""
    return saved is _MISSING and new is None


def resume_changes(saved: dict[str, Any], resolved: Config, run_dir: Path) -> dict[str, tuple[Any, Any]]:
    """The allowed changes ``{key: (saved, new)}`` of a resume; a one-line error naming any other.

    ``saved`` is the config the run trained with (the checkpoint's copy, or ``config.yaml`` for
    checkpoints written before it was stored)."""
    old, new = (_without_place(flatten(c)) for c in (saved, to_plain(resolved)))
    differ = {k: (old.get(k, _MISSING), new.get(k, _MISSING)) for k in sorted(old.keys() | new.keys())
              if old.get(k, _MISSING) != new.get(k, _MISSING) and not _added_later(old.get(k, _MISSING), new.get(k, _MISSING))}
    longer = _longer_keys(old)
    refused = {}
    for key, (a, b) in differ.items():
        if _is_safe(key):
            continue
        if key in longer and isinstance(a, int) and isinstance(b, int) and b >= a:
            continue
        refused[key] = (a, b)
    if refused:
        shown = ", ".join(f"{k} ({_shown(a)} -> {_shown(b)})" for k, (a, b) in list(refused.items())[:6])
        more = f" and {len(refused) - 6} more" if len(refused) > 6 else ""
        raise LongtailError(
            f"cannot resume '{run_dir}': the config changes {shown}{more}, which a resumed run cannot continue exactly; "
            f"train it as a new run (longtail train -c {run_dir / rundir.CONFIG} name=NEW KEY=VALUE), replace it ({option('overwrite')}), "
            "or resume without the change"
        )
    return differ


def saved_config(state: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The config a checkpoint was trained with: its own copy, else the run's ``config.yaml`` as it is."""
    if isinstance(state.get("run_config"), dict):
        return state["run_config"]
    from ..catalog.check import load_config

    return to_plain(load_config(run_dir / rundir.CONFIG))


def record_resume(run_dir: Path, epoch: int, changes: dict[str, tuple[Any, Any]]) -> None:
    """Append this resume (the finished epochs it continues from, the allowed changes) to ``resumes.jsonl``."""
    entry = {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "from_epoch": epoch,
        "changes": {k: [None if a is _MISSING else a, None if b is _MISSING else b] for k, (a, b) in changes.items()},
    }
    rundir.append_jsonl(run_dir / RESUMES, entry)


def describe(changes: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} {_shown(a)} -> {_shown(b)}" for k, (a, b) in changes.items())
