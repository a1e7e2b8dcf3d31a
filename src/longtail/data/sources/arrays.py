"""Sources that arrive as arrays: scikit-learn digits, MedMNIST ``.npz``, torchvision datasets."""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ...core.errors import DataError
from ...core.registry import DATASETS
from ..dataset import TensorImageDataset
from .base import Source, class_count, require_file

# Class names of the 2D MedMNIST sets (medmnist 3.x INFO 'label'), looked up by file-name prefix.
MEDMNIST_CLASSES: dict[str, list[str]] = {
    "breastmnist": ["malignant", "normal, benign"],
    "pneumoniamnist": ["normal", "pneumonia"],
    "retinamnist": ["0", "1", "2", "3", "4"],
    "dermamnist": [
        "actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma", "benign keratosis-like lesions",
        "dermatofibroma", "melanoma", "melanocytic nevi", "vascular lesions",
    ],
    "bloodmnist": [
        "basophil", "eosinophil", "erythroblast", "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)",
        "lymphocyte", "monocyte", "neutrophil", "platelet",
    ],
}


def to_nchw(images: np.ndarray, where: str) -> torch.Tensor:
    """(N,H,W) or (N,H,W,C) or (N,C,H,W) uint8 array -> uint8 N x C x H x W tensor."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise DataError(f"{where}: images must be uint8, got {arr.dtype}; convert the file to 0-255 uint8")
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    elif arr.ndim != 4:
        raise DataError(f"{where}: images have shape {arr.shape}; expected (N,H,W) or (N,H,W,C)")
    return torch.from_numpy(np.ascontiguousarray(arr))


@DATASETS.register("digits")
def digits() -> Source:
    """scikit-learn 8x8 handwritten digits (1797 images, 10 balanced classes, ships with scikit-learn)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    pixels = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # 0-16 -> 0-255
    ds = TensorImageDataset(to_nchw(pixels, "digits"), d.target, [str(i) for i in range(10)],
                            ids=[f"digits_{i:04d}" for i in range(len(pixels))])
    return Source([str(i) for i in range(10)], {"all": ds}, channels=1)


@DATASETS.register("medmnist", renamed={"file": "root"})
def medmnist(root: str, classes: Sequence[str] | None = None) -> Source:
    """An official MedMNIST .npz (any 2D set and resolution) with its train/val/test splits; ``root`` is the .npz file."""
    path = require_file(root, "MedMNIST file", "root")
    names_of = ["train", "val", "test"]
    arrays = read_npz(path, [f"{s}_{k}" for s in names_of for k in ("images", "labels")])
    raw = {s: (arrays[f"{s}_images"], arrays[f"{s}_labels"]) for s in names_of}
    labels = {s: _labels(path, s, *raw[s]) for s in names_of}
    if classes is None:
        stem = path.stem.split("_")[0].lower()
        everything = [(s, i, v) for s in names_of for i, v in enumerate(labels[s])]
        classes = MEDMNIST_CLASSES.get(stem) or [str(i) for i in range(class_count(
            [v for _, _, v in everything], None, lambda k: f"{path.name} {everything[k][0]}_labels (item {everything[k][1]})", allow_unlabelled=False))]
    names = [str(c) for c in classes]
    splits = {}
    for s in names_of:
        class_count(labels[s], len(names), lambda i, s=s: f"{path.name} {s}_labels (item {i})", allow_unlabelled=False)
        targets = np.asarray(labels[s], dtype=np.int64)
        tensor = to_nchw(raw[s][0], f"{path.name} {s}_images")
        splits[s] = TensorImageDataset(tensor, targets, names, ids=[f"{s}_{i}" for i in range(len(targets))])
    return Source(names, splits, channels=splits["train"].channels)


def read_npz(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The named arrays of an .npz file, never unpickled: an array of Python objects (a pickle, which could
    run code when loaded) is refused with a one-line error, as is a damaged or foreign file."""
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(_npz_problem(path, e)) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"'{path}' is a single .npy array, not an .npz of named arrays; download the official MedMNIST file again")
    with npz:
        missing = [k for k in keys if k not in npz.files]
        if missing:
            raise DataError(f"'{path}' lacks {', '.join(missing)}; expected the official MedMNIST keys {{train,val,test}}_{{images,labels}}")
        try:
            return {k: npz[k] for k in keys}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise DataError(_npz_problem(path, e)) from None


def _npz_problem(path: Path, e: BaseException) -> str:
    """The one-line message for an .npz numpy could not read without unpickling."""
    if "pickle" in str(e) or "Object arrays" in str(e):
        return (f"'{path}' holds a pickled object array, which longtail never loads (unpickling can run code); "
                "use the official MedMNIST file (plain uint8 images, integer labels)")
    return f"'{path}' is not a readable .npz ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'damaged'}); download the official MedMNIST file again"


def _labels(path: Path, split: str, images: np.ndarray, labels: np.ndarray) -> list[int]:
    """One integer label per image of a MedMNIST split, as Python ints (checked against the classes later)."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"'{path}': {split}_labels are {labels.dtype}, not integers; use the official MedMNIST file")
    n_images = images.shape[0] if images.ndim else 0
    if labels.ndim == 0 or len(labels) != n_images:
        raise DataError(f"'{path}': {split}_labels has {labels.size} labels for {n_images} images; use the official MedMNIST file")
    per_image = labels.reshape(len(labels), -1).shape[1]
    if per_image != 1:
        raise DataError(f"'{path}' is multi-label ({per_image} labels per image); longtail handles single-label sets only")
    return labels.reshape(-1).tolist()


TORCHVISION_SETS = {
    "cifar10": ("CIFAR10", "cifar-10-python.tar.gz (or the extracted cifar-10-batches-py/)"),
    "cifar100": ("CIFAR100", "cifar-100-python.tar.gz (or the extracted cifar-100-python/)"),
    "mnist": ("MNIST", "the MNIST/raw/*-ubyte(.gz) files"),
    "fashion_mnist": ("FashionMNIST", "the FashionMNIST/raw/*-ubyte(.gz) files"),
}


@DATASETS.register("torchvision")
def torchvision_source(name: str, root: str = "data", download: bool = True) -> Source:
    """CIFAR-10/100, MNIST or Fashion-MNIST through torchvision (downloads only when online)."""
    import torchvision.datasets as tvd

    if name not in TORCHVISION_SETS:
        raise DataError(f"data.source.name '{name}' is not one of {sorted(TORCHVISION_SETS)}")
    cls_name, files = TORCHVISION_SETS[name]
    cls = getattr(tvd, cls_name)
    splits = {}
    for split, train in (("train", True), ("test", False)):
        try:
            try:
                ds = cls(root=root, train=train, download=False)
            except RuntimeError:
                if not download:
                    raise
                ds = cls(root=root, train=train, download=True)
        except Exception as e:  # noqa: BLE001  (network errors come in many types)
            raise DataError(
                f"torchvision {name} not found in '{Path(root)}' and could not be downloaded ({type(e).__name__}); "
                f"put {files} in '{Path(root)}' (data.source.root)"
            ) from None
        data = ds.data.numpy() if isinstance(ds.data, torch.Tensor) else np.asarray(ds.data)
        targets = np.asarray(ds.targets, dtype=np.int64)
        splits[split] = TensorImageDataset(to_nchw(data, name), targets, list(ds.classes),
                                           ids=[f"{split}_{i}" for i in range(len(targets))])
    names = list(splits["train"].class_names)
    return Source(names, splits, channels=splits["train"].channels)
