"""``build_data``: source -> (class subset/merge) -> long-tail build -> splits -> cap -> checks -> ``DataBundle``.

Order matters and is fixed: ``data.classes`` first keeps or merges the source's classes; a source without native splits first loses its test part (grouped when
it has groups), then the long-tail recipe runs on the training pool, then validation is carved
(never from test): a native ``val`` split if there is one; with a long-tail recipe, a balanced
held-out set of ``long_tail.val_per_class`` images per class taken from the images the recipe left
out (so the training set is exactly the published one); otherwise a stratified/grouped
``split.val`` fraction of the training pool. Split and long-tail seeds come from the config
(``split.seed``, ``long_tail.seed``), so runs over several training seeds share one split.
With ``split.kind: kfold`` (:func:`plan_kfold`, no long-tail recipe) one fold of the pool is held out
instead: the test split of a source without one (validation then carved from the other folds), else
the validation split; splits.json then records ``kind``, ``folds`` and ``fold`` beside the indices.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.errors import ConfigError, DataError
from ..core.registry import DATASETS, warn_deprecated
from .cache import cached_decode
from .classes import apply_classes
from .clips import ClipDataset
from .dataset import FileImageDataset, ImageDataset, TensorImageDataset
from .decode import Decoder, header_ok
from .longtail import make_long_tailed
from .sources.base import Source
from .splits import grouped_stratified_split, kfold_assign, stratified_split, units_per_class
from .stats import channel_mean_std, imagenet_stats

if TYPE_CHECKING:
    from ..core.schema import DataConfig

log = logging.getLogger(__name__)
SPLITS_FORMAT = 1
#: the keys of splits.json that say which fold of a k-fold split a run holds (absent for holdout splits)
KFOLD_KEYS = ("kind", "folds", "fold")


@dataclass
class DataBundle:
    """Everything the engine needs from the data: the three splits and their statistics."""

    class_names: list[str]
    train: ImageDataset
    val: ImageDataset
    test: ImageDataset | None
    split_indices: dict[str, Any]
    norm_mean: list[float]
    norm_std: list[float]
    skipped: dict[str, list[str]] = field(default_factory=dict)
    class_map: dict[str, list[str]] | None = None  # data.classes: new class -> the source classes it holds
    metadata: dict[str, dict[str, str]] | None = None  # item id -> its annotation row's other columns (csv, ham10000)
    pools: dict[str, ImageDataset] | None = None  # the source's decoded native splits, kept only on request (build_data keep_pools)

    def pool_of(self, part: str) -> ImageDataset:
        """Every image of the native split that ``part`` was drawn from (CIFAR's 50,000 training images for a
        long-tailed train split): SADE's official CIFAR test-time step draws its unlabelled images from there."""
        entry = self.split_indices.get(part)
        if self.pools is None or not entry:
            raise DataError(f"the data of this run kept no source pool for its {part} split; rebuild it with keep_pools=True")
        return self.pools[entry["split"]]

    def columns(self, ids: Sequence[Any], names: list[str]) -> dict[str, list[str | None]]:
        """Per-item values of metadata columns for the items ``ids`` (None where an item has no such value)."""
        rows = self.metadata or {}
        return {n: [rows.get(str(i), {}).get(n) for i in ids] for n in names}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_counts(self) -> np.ndarray:
        return np.bincount(self.train.targets[self.train.targets >= 0], minlength=self.num_classes).astype(np.int64)

    @property
    def channels(self) -> int:
        return self.train.channels

    @property
    def image_size(self) -> tuple[int, int]:
        return self.train.image_size

    def storage(self) -> dict[str, str]:
        """How each split holds its images: memory (uint8 tensor), mmap (memory-mapped cache), stream (decoded per access)."""
        return {name: getattr(ds, "storage", "memory") for name, ds in self.splits().items()}

    def splits(self) -> dict[str, ImageDataset]:
        out = {"train": self.train, "val": self.val}
        if self.test is not None:
            out["test"] = self.test
        return out


# ------------------------------------------------------------------------------------ source
def load_source(cfg: "DataConfig") -> Source:
    """The registered source of ``data.source``; its errors name the config file it came from."""
    where = f"{cfg._config_file}: " if cfg._config_file else ""
    kwargs = dict(cfg.source.kwargs)
    if cfg.source.name in ("cifar_jpeg", "ham10000") and "cache_dir" not in kwargs and cfg.cache_dir:
        kwargs["cache_dir"] = cfg.cache_dir
    try:
        DATASETS.check_kwargs(cfg.source.name, kwargs, where="data.source")
        kwargs, messages = DATASETS.rename_deprecated(cfg.source.name, kwargs, where="data.source")
        warn_deprecated(messages)
        source = DATASETS.get(cfg.source.name)(**kwargs)
    except TypeError as e:  # a missing required argument
        missing = str(e).split("argument: ")[-1].strip("'") if "required positional argument" in str(e) else None
        hint = f"set data.source.{missing}" if missing else "see `longtail list datasets`"
        raise ConfigError(f"{where}data.source ({cfg.source.name}): {e}; {hint}") from None
    except (DataError, ConfigError) as e:
        if where and not str(e).startswith(where):
            raise type(e)(f"{where}{e}") from None
        raise
    if not isinstance(source, Source):
        raise TypeError(f"dataset '{cfg.source.name}' returned {type(source).__name__}, not a longtail.data Source")
    return source


def _convert_tensor(ds: TensorImageDataset, decoder: Decoder) -> TensorImageDataset:
    """Channel conversion, pre-processing and resizing for sources that arrive as arrays."""
    images = ds.tensor()
    if images.shape[1] != decoder.channels:
        if decoder.channels == 3:
            images = images.expand(-1, 3, -1, -1)
        else:
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)
    needs = bool(decoder.ops) or (decoder.image_size is not None and tuple(images.shape[-2:]) != decoder.image_size)
    if needs:
        if decoder.ops:
            images = torch.stack([decoder.apply(img) for img in images])
        else:
            images = torch.cat([decoder.apply(images[i : i + 1024]) for i in range(0, len(images), 1024)])
    images = images.contiguous()
    return TensorImageDataset(images, ds.targets, ds.class_names, ids=ds.ids, groups=ds.groups)


def materialize(ds: ImageDataset, cfg: "DataConfig", channels: int, name: str) -> tuple[ImageDataset, list[str]]:
    """A native split decoded with the config's settings: cached tensors, lazy files, or arrays."""
    decoder = Decoder.from_config(cfg, channels)
    if isinstance(ds, ClipDataset):  # decoded on access (other frames every epoch), never cached
        return ds.with_decoder(decoder).checked(cfg.on_bad_image)
    if isinstance(ds, TensorImageDataset):
        return _convert_tensor(ds, decoder), []
    if not isinstance(ds, FileImageDataset):
        return ds, []
    if cfg.cache:
        mmap = cfg.cache == "mmap"
        images, kept, skipped, hit = cached_decode(ds.paths, decoder, cfg.cache_dir, cfg.on_bad_image, mmap=mmap)
        log.info("%s split: %d images %s the tensor cache%s", name, len(kept), "loaded from" if hit else "decoded into",
                 " (memory-mapped)" if mmap else "")
        out = TensorImageDataset(images, ds.targets[kept], ds.class_names, ids=[ds.ids[i] for i in kept],
                                 groups=None if ds.groups is None else ds.groups[kept], storage="mmap" if mmap else "memory")
        return out, skipped
    lazy = ds.with_decoder(decoder)
    if cfg.on_bad_image == "skip":
        ok = np.array([header_ok(p, cfg.max_image_pixels) for p in lazy.paths], dtype=bool)
        skipped = [p for p, good in zip(lazy.paths, ok) if not good]
        return lazy.subset(np.flatnonzero(ok)), skipped
    return lazy, []


# ------------------------------------------------------------------------------------ splits
def _carve(targets: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int, grouped: bool) -> tuple[np.ndarray, np.ndarray]:
    """(rest, carved) positions: a stratified or grouped-stratified ``fraction``."""
    if grouped and groups is not None:
        rest, carved = grouped_stratified_split(targets, groups, [fraction], seed=seed)
    else:
        rest, carved = stratified_split(targets, [fraction], seed=seed)
    return rest, carved


def _balanced_from_leftovers(targets: np.ndarray, kept: np.ndarray, per_class: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation of ``per_class`` images per class from the positions a long-tail recipe left
    out; a class with too few leftovers gives up the shortfall from its training images."""
    rng = np.random.default_rng(seed)
    in_train = np.zeros(len(targets), dtype=bool)
    in_train[kept] = True
    val, drop = [], []
    for c in range(num_classes):
        left = np.flatnonzero((targets == c) & ~in_train)
        left = left[rng.permutation(len(left))][:per_class]
        val.append(left)
        short = per_class - len(left)
        if short > 0:
            mine = np.flatnonzero((targets == c) & in_train)
            if short >= len(mine):
                short = max(len(mine) - 1, 0)  # keep at least one training image
            take = mine[rng.permutation(len(mine))][:short]
            val.append(take)
            drop.append(take)
    val_pos = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train_pos = np.setdiff1d(kept, np.concatenate(drop)) if drop else kept
    return train_pos, val_pos


def plan_kfold(native: dict[str, ImageDataset], cfg: "DataConfig") -> dict[str, tuple[str, np.ndarray] | None]:
    """``data.split.kind: kfold``: fold ``split.fold`` of the pool held out, the other folds kept.

    The pool is the source's ``all`` split (fold ``fold`` is then the test split and validation a
    ``split.val / (1 - 1/folds)`` carve of the other folds, about ``split.val`` of the data), else its
    ``train`` split (fold ``fold`` is validation, the source's test split stays as it is: the shape of
    a k-fold CV of the ISIC 2018 train set)."""
    sp = cfg.split
    pool_name = "all" if "all" in native else "train"
    ds = native[pool_name]
    grouped = sp.group_by_source_groups and ds.groups is not None
    groups = ds.groups if grouped else None
    check_fold_units(ds, groups, sp.folds, pool_name)
    fold_of = kfold_assign(ds.targets, groups, sp.folds, sp.seed)
    held, rest = np.flatnonzero(fold_of == sp.fold), np.flatnonzero(fold_of != sp.fold)
    if not len(held):
        raise ConfigError(f"fold {sp.fold} of data.split.folds {sp.folds} is empty: the '{pool_name}' split's groups cannot fill "
                          f"{sp.folds} folds; lower data.split.folds or set data.split.group_by_source_groups: false")
    if pool_name == "train":
        if "val" in native:
            log.warning("data.split.kind kfold: fold %d of the 'train' split is the validation split; the source's own 'val' split "
                        "is left unused", sp.fold)
        test = ("test", np.arange(len(native["test"]))) if "test" in native else None
        return {"train": ("train", rest), "val": ("train", held), "test": test}
    share = 1.0 - 1.0 / sp.folds  # of the data in the other folds
    if sp.val <= 0:
        raise ConfigError("data.split.val is 0 but kfold on a source without a validation split carves it from the other folds; "
                          "set data.split.val > 0")
    if sp.val >= share:
        raise ConfigError(f"data.split.val {sp.val} leaves no training data: with data.split.folds {sp.folds} the other folds hold "
                          f"{share:.3g} of the data; lower data.split.val")
    kept, carved = _carve(ds.targets[rest], None if ds.groups is None else ds.groups[rest], sp.val / share, sp.seed + 1, grouped)
    return {"train": ("all", np.sort(rest[kept])), "val": ("all", np.sort(rest[carved])), "test": ("all", held)}


def check_fold_units(ds: ImageDataset, groups: np.ndarray | None, folds: int, pool_name: str) -> None:
    """Too few items (groups) for the folds is an error; a class with fewer than ``folds`` is allowed, with a WARNING
    naming it (some folds hold none of it, so their held-out split misses the class)."""
    unit = "groups" if groups is not None else "items"
    n = len(np.unique(np.asarray(groups).astype(str))) if groups is not None else len(ds)
    if n < folds:
        raise ConfigError(f"data.split.folds {folds} needs at least {folds} {unit} in the source's '{pool_name}' split, it has {n}; "
                          f"lower data.split.folds to {max(n, 2)} or less" + (" (or set data.split.group_by_source_groups: false)" if groups is not None else ""))
    names = list(ds.class_names)
    for c, count in units_per_class(ds.targets[ds.targets >= 0], None if groups is None else groups[ds.targets >= 0]).items():
        if count < folds:
            name = names[c] if 0 <= c < len(names) else str(c)
            logging.getLogger("longtail").warning(
                "class '%s' has %d %s in the '%s' split, fewer than data.split.folds %d: %d fold(s) hold none of it, so their "
                "held-out split misses that class", name, count, unit, pool_name, folds, folds - count)


def plan_splits(native: dict[str, ImageDataset], cfg: "DataConfig", num_classes: int) -> dict[str, tuple[str, np.ndarray] | None]:
    """part -> (native split name, indices into it) for train/val/test."""
    sp = cfg.split
    if sp.kind == "kfold":
        return plan_kfold(native, cfg)
    if "all" in native:
        pool_name = "all"
        ds = native["all"]
        grouped = sp.group_by_source_groups and ds.groups is not None
        pool = np.arange(len(ds))
        test = None
        if sp.test > 0:
            rest, carved = _carve(ds.targets, ds.groups, sp.test, sp.seed, grouped)
            pool, test = rest, ("all", carved)
        val_fraction = sp.val / (1.0 - sp.test) if sp.test < 1 else 0.0
    else:
        pool_name = "train"
        ds = native["train"]
        grouped = sp.group_by_source_groups and ds.groups is not None
        pool = np.arange(len(ds))
        test = ("test", np.arange(len(native["test"]))) if "test" in native else None
        val_fraction = sp.val
    targets = ds.targets
    groups = ds.groups
    val: tuple[str, np.ndarray] | None = ("val", np.arange(len(native["val"]))) if "val" in native else None
    lt = cfg.long_tail
    if lt is not None:
        res = make_long_tailed(targets[pool], num_classes, recipe=lt.recipe, profile=lt.profile,
                               imbalance_ratio=lt.imbalance_ratio, val_per_class=lt.val_per_class,
                               pareto_alpha=lt.pareto_alpha, seed=lt.seed)
        if res.val is not None and (val is None or lt.recipe == "cdb"):
            val = (pool_name, pool[res.val])
            pool = pool[res.train]
        elif val is None:
            train_pos, val_pos = _balanced_from_leftovers(targets[pool], res.train, lt.val_per_class, num_classes, sp.seed)
            val = (pool_name, pool[val_pos])
            pool = pool[train_pos]
        else:
            pool = pool[res.train]
    if val is None:
        if val_fraction <= 0:
            raise ConfigError("data.split.val is 0 but the source has no validation split; set data.split.val > 0 (validation is never taken from test)")
        rest, carved = _carve(targets[pool], None if groups is None else groups[pool], val_fraction, sp.seed + 1, grouped)
        val = (pool_name, pool[carved])
        pool = pool[rest]
    return {"train": (pool_name, np.sort(pool)), "val": (val[0], np.sort(val[1])), "test": test}


def cap_per_class(targets: np.ndarray, indices: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """At most ``cap`` items per label (unlabelled counted as one label), a seeded choice."""
    rng = np.random.default_rng(seed)
    keep = []
    sub = targets[indices]
    for c in np.unique(sub):
        pos = np.flatnonzero(sub == c)
        keep.append(np.sort(pos[rng.permutation(len(pos))[:cap]]) if len(pos) > cap else pos)
    return np.sort(indices[np.concatenate(keep)]) if keep else indices


def splits_to_json(plan: dict[str, tuple[str, np.ndarray] | None], native: dict[str, ImageDataset], source: str,
                   kfold: dict[str, Any] | None = None) -> dict[str, Any]:
    """splits.json: the indices of every part; ``kfold`` ({"kind": "kfold", "folds": k, "fold": i}) beside them for a k-fold split
    (a holdout split's file has no such keys, as before k-fold existed)."""
    out: dict[str, Any] = {"format": SPLITS_FORMAT, "source": source, "sizes": {k: len(v) for k, v in native.items()}}
    if kfold is not None:
        out.update({key: kfold[key] for key in KFOLD_KEYS})
    for part in ("train", "val", "test"):
        entry = plan.get(part)
        out[part] = None if entry is None else {"split": entry[0], "indices": [int(i) for i in entry[1]]}
    return out


def splits_from_json(data: dict[str, Any], native: dict[str, ImageDataset], where: str) -> dict[str, tuple[str, np.ndarray] | None]:
    if not isinstance(data, dict) or data.get("format") != SPLITS_FORMAT or "train" not in data:
        raise DataError(f"{where} is not a longtail splits file (format {SPLITS_FORMAT}); use the splits.json of a run directory")
    sizes = {k: len(v) for k, v in native.items()}
    if data.get("sizes") != sizes:
        raise DataError(f"{where} was made for a source with splits {data.get('sizes')}, this one has {sizes}; remove data.split.file or use the matching data")
    plan: dict[str, tuple[str, np.ndarray] | None] = {}
    for part in ("train", "val", "test"):
        entry = data.get(part)
        if entry is None:
            if part != "test":
                raise DataError(f"{where} has no '{part}' split; use the splits.json of a run directory")
            plan[part] = None
            continue
        idx = np.asarray(entry["indices"], dtype=np.int64)
        if entry["split"] not in native or (len(idx) and (idx.min() < 0 or idx.max() >= sizes[entry["split"]])):
            raise DataError(f"{where}: '{part}' indexes split '{entry['split']}' out of range; the file does not match this source")
        plan[part] = (entry["split"], idx)
    return plan


def kfold_of(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """The k-fold record of a splits.json ({"kind", "folds", "fold"}), None for a holdout file (and files older than k-fold)."""
    if not isinstance(data, dict) or data.get("kind") != "kfold":
        return None
    return {key: data.get(key) for key in KFOLD_KEYS}


def load_splits_file(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"splits file '{p}' not found; set data.split.file to a run's splits.json or remove it")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        raise DataError(f"splits file '{p}' is not valid JSON; use a run's splits.json") from None


# ------------------------------------------------------------------------------------ bundle
def normalization(
    cfg: "DataConfig", train: ImageDataset, channels: int, model_stats: tuple[Sequence[float], Sequence[float]] | None = None
) -> tuple[list[float], list[float]]:
    """Per-channel mean/std in [0, 1] units; ``model_stats`` is the backbone's RGB mean/std for ``normalize: model``."""
    norm = cfg.normalize
    if norm == "dataset":
        return channel_mean_std(train)
    if norm == "imagenet":
        return imagenet_stats(channels)
    if norm == "model":
        if model_stats is None:
            raise ConfigError("data.normalize: 'model' needs the backbone's pretrained config; build the data through longtail.train (or pass model_stats)")
        mean, std = [float(m) for m in model_stats[0]], [float(s) for s in model_stats[1]]
        if channels == 1 and len(mean) == 3:  # grey images: the channel averages, as for imagenet
            return [sum(mean) / 3], [sum(std) / 3]
        return mean, std
    if norm == "none":
        return [0.0] * channels, [1.0] * channels
    mean, std = list(norm.mean), list(norm.std)
    if len(mean) != channels or len(std) != channels:
        raise ConfigError(f"data.normalize has {len(mean)} mean / {len(std)} std values for {channels}-channel images; give {channels} of each")
    if min(std) <= 0:
        raise ConfigError("data.normalize.std values must be > 0")
    return [float(m) for m in mean], [float(s) for s in std]


def check_train(train: ImageDataset, class_names: list[str]) -> None:
    counts = np.bincount(train.targets[train.targets >= 0], minlength=len(class_names))
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        c = int(empty[0])
        raise DataError(
            f"class '{class_names[c]}' (index {c}) has no training images after the split/long-tail build; "
            "lower data.split.val/test or long_tail.imbalance_ratio, raise data.max_per_class, or add images of that class"
        )


def check_evaluation_classes(parts: dict[str, ImageDataset | None], class_names: list[str], require: bool) -> None:
    """Name the classes absent from validation or test (a class of one image lands in train): that split's
    metrics leave them out without a word (balanced accuracy averages the classes present). A WARNING per
    split, or with ``data.require_all_classes`` a DataError."""
    for part, split in (("val", "validation"), ("test", "test")):
        ds = parts.get(part)
        if ds is None or not (ds.targets >= 0).any():  # an unlabelled test split has no class to miss
            continue
        absent = np.flatnonzero(ds.class_counts(len(class_names)) == 0)
        if not len(absent):
            continue
        one = len(absent) == 1
        named = ", ".join(f"'{class_names[c]}'" for c in absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
        what = f"class{'' if one else 'es'} {named} (of {len(class_names)}) {'has' if one else 'have'} no image in the {split} split"
        if require:
            raise DataError(f"{what} and data.require_all_classes is true; add images of {'that class' if one else 'those classes'} "
                            f"or raise data.split.{part}, or set data.require_all_classes: false")
        log.warning("%s, so its %s metrics leave %s out (balanced accuracy averages the other classes); add images of %s "
                    "(data.require_all_classes: true makes this an error)", what, split, "it" if one else "them", "it" if one else "them")


def build_data(
    cfg: "DataConfig",
    seed: int,
    splits: dict[str, Any] | None = None,
    model_stats: tuple[Sequence[float], Sequence[float]] | None = None,
    keep_pools: bool = False,
) -> DataBundle:
    """Source -> (classes) -> (long-tail) -> train/val/test -> (cap) -> checks -> normalisation statistics.

    ``splits`` (or ``data.split.file``) reuses the ``split_indices`` of an earlier run. ``seed``
    only drives the ``max_per_class`` subsample; splits use ``split.seed``, long tails ``long_tail.seed``.
    ``model_stats`` (the backbone's pretrained mean/std) serves ``data.normalize: model``. ``keep_pools``
    keeps the decoded native splits in the bundle (:meth:`DataBundle.pool_of`); off by default, since a
    training run needs only its parts and the pools can be many times larger.
    """
    source = load_source(cfg)
    class_map = None
    if cfg.classes is not None:
        source, class_map = apply_classes(source, cfg.classes)
    first = next(iter(source.splits.values()))
    channels = int(cfg.channels or source.channels or first.channels)
    native: dict[str, ImageDataset] = {}
    skipped: dict[str, list[str]] = {}
    for name, ds in source.splits.items():
        native[name], bad = materialize(ds, cfg, channels, name)
        if bad:
            skipped[name] = bad
            log.warning("skipped %d unreadable image(s) in the %s split (first: %s)", len(bad), name, bad[0])
    names = list(source.class_names)
    if splits is None and cfg.split.file:
        splits = load_splits_file(cfg.split.file)
    if splits is not None:
        plan = splits_from_json(splits, native, cfg.split.file or "splits")
        kfold = kfold_of(splits)
    else:
        plan = plan_splits(native, cfg, len(names))
        sp = cfg.split
        kfold = {"kind": "kfold", "folds": sp.folds, "fold": sp.fold} if sp.kind == "kfold" else None
        if cfg.max_per_class is not None:
            for part, entry in plan.items():
                if entry is not None:
                    plan[part] = (entry[0], cap_per_class(native[entry[0]].targets, entry[1], cfg.max_per_class, seed))
    parts: dict[str, ImageDataset | None] = {}
    for part in ("train", "val", "test"):
        entry = plan.get(part)
        parts[part] = None if entry is None else native[entry[0]].subset(entry[1])
    train, val = parts["train"], parts["val"]
    assert train is not None and val is not None
    if isinstance(train, ClipDataset):
        train.random_frames = True  # a random frame per segment in training, segment middles elsewhere
    if len(val) == 0:
        raise DataError("the validation split is empty; raise data.split.val (or long_tail.val_per_class)")
    if (train.targets < 0).any() or (val.targets < 0).any():
        raise DataError("the train/val splits contain unlabelled images (label -1); only the test split may be unlabelled")
    check_train(train, names)
    check_evaluation_classes(parts, names, cfg.require_all_classes)
    mean, std = normalization(cfg, train, channels, model_stats)
    return DataBundle(class_names=names, train=train, val=val, test=parts["test"],
                      split_indices=splits_to_json(plan, native, cfg.source.name, kfold), norm_mean=mean, norm_std=std,
                      skipped=skipped, class_map=class_map, metadata=source.info.get("metadata"), pools=native if keep_pools else None)
