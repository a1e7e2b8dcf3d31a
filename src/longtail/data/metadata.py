"""Per-image metadata (age, sex, site; any CSV column) encoded as a float vector: the model's second input.

``model.metadata`` names the columns. The encoding is fitted on the TRAIN split only and then fixed, so
validation, test, ``predict`` and ``export`` see the inputs training saw:

- a column whose every present train value is a number is **numeric**: standardised with the train mean
  and (population) standard deviation (a constant column divides by 1);
- any other column is **categorical**: one-hot over the sorted train values, plus one ``unknown`` slot
  that takes a value training never saw (at validation, test or predict time).

A value is missing when the cell is empty or ``nan`` / ``na`` / ``n/a`` / ``null`` / ``unknown`` (any case;
HAM10000 and the ISIC exports write ``unknown`` for an unrecorded sex or site), the row lacks the
column, or the image has no row. ``model.metadata_missing`` says what happens then:
``indicator`` (default) fills a numeric column with its train mean and sets a per-column missing input to
1, and sends a categorical one to its ``unknown`` slot; ``error`` refuses the image in one line.

Slot layout, column by column in ``model.metadata`` order: numeric ``[z]`` (``[z, missing]`` under
``indicator``); categorical ``[one-hot over the vocabulary..., unknown]``. :meth:`MetadataEncoding.slots`
names every slot; :meth:`MetadataEncoding.to_json` is what the run directory and the export sidecar keep.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from ..core.errors import ConfigError, DataError, did_you_mean

if TYPE_CHECKING:
    from .build import DataBundle

#: cell values read as "no value" (compared lower-case, after stripping spaces)
MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "unknown"})
MISSING_MODES = ("indicator", "error")
UNKNOWN = "unknown"
FORMAT = 1

Missing = Literal["indicator", "error"]
Row = Mapping[str, Any] | None


def is_missing(value: Any) -> bool:
    """Whether a metadata cell holds no value."""
    return value is None or str(value).strip().lower() in MISSING_TOKENS


def _number(value: Any) -> float | None:
    try:
        x = float(str(value).strip())
    except ValueError:
        return None
    return x if math.isfinite(x) else None


@dataclass
class ColumnCode:
    """How one column becomes slots: numeric (mean, std) or categorical (vocabulary + unknown)."""

    name: str
    kind: Literal["numeric", "categorical"]
    mean: float = 0.0
    std: float = 1.0
    vocabulary: list[str] = field(default_factory=list)

    def width(self, missing: Missing) -> int:
        if self.kind == "numeric":
            return 2 if missing == "indicator" else 1
        return len(self.vocabulary) + 1

    def slots(self, missing: Missing) -> list[str]:
        if self.kind == "numeric":
            return [self.name] + ([f"{self.name}:missing"] if missing == "indicator" else [])
        return [f"{self.name}={v}" for v in self.vocabulary] + [f"{self.name}:{UNKNOWN}"]


@dataclass
class MetadataEncoding:
    """The fitted encoding of ``model.metadata``: one :class:`ColumnCode` per column and the missing rule."""

    columns: list[ColumnCode]
    missing: Missing = "indicator"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def width(self) -> int:
        """Length of the encoded vector (the metadata MLP's input size)."""
        return sum(c.width(self.missing) for c in self.columns)

    def slots(self) -> list[str]:
        """A name per slot of the vector, in order (``age``, ``age:missing``, ``sex=female``, ``sex:unknown``, ...)."""
        return [s for c in self.columns for s in c.slots(self.missing)]

    def encode(self, ids: Sequence[str], rows: Sequence[Row], where: str = "the data") -> np.ndarray:
        """``rows[i]`` (column -> raw string; None: the image has no row) as float32 vectors, N x width.

        A missing value under ``metadata_missing: error``, or a value that is not a number in a numeric
        column, is a one-line DataError naming the image and the column."""
        out = np.zeros((len(rows), self.width), dtype=np.float32)
        for i, (item, row) in enumerate(zip(ids, rows)):
            at = 0
            for col in self.columns:
                value = None if row is None else row.get(col.name)
                if is_missing(value) and self.missing == "error":
                    raise DataError(f"image '{item}' has no value in metadata column '{col.name}' ({where}); fill it in, "
                                    "or set model.metadata_missing: indicator to fill it with the train mean / an unknown slot")
                if col.kind == "numeric":
                    if is_missing(value):
                        out[i, at + 1] = 1.0  # the train mean standardises to 0; the indicator says it was filled
                    else:
                        x = _number(value)
                        if x is None:
                            raise DataError(f"image '{item}': metadata column '{col.name}' holds '{value}', not a number, but the column "
                                            f"is numeric in training ({where}); fix the value or leave it empty")
                        out[i, at] = (x - col.mean) / col.std
                else:
                    key = None if is_missing(value) else str(value).strip()
                    slot = col.vocabulary.index(key) if key in col.vocabulary else len(col.vocabulary)
                    out[i, at + slot] = 1.0
                at += col.width(self.missing)
        return out

    def to_json(self) -> dict[str, Any]:
        """What the run directory keeps (``metadata_encoding.json``) and the export sidecar repeats."""
        cols = []
        for c in self.columns:
            entry: dict[str, Any] = {"name": c.name, "kind": c.kind}
            if c.kind == "numeric":
                entry.update(mean=c.mean, std=c.std)
            else:
                entry.update(vocabulary=list(c.vocabulary), unknown_slot=True)
            cols.append(entry)
        return {"format": FORMAT, "missing": self.missing, "width": self.width, "columns": cols, "slots": self.slots()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "metadata_encoding.json") -> "MetadataEncoding":
        """The encoding :meth:`to_json` wrote; a damaged file is a one-line DataError."""
        try:
            missing = data["missing"]
            cols = [ColumnCode(str(c["name"]), c["kind"], float(c.get("mean", 0.0)), float(c.get("std", 1.0)),
                               [str(v) for v in c.get("vocabulary", [])]) for c in data["columns"]]
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"'{where}' is damaged ({type(e).__name__}: {e}); retrain the run to write it again") from None
        if missing not in MISSING_MODES or any(c.kind not in ("numeric", "categorical") for c in cols):
            raise DataError(f"'{where}' is damaged (an unknown missing rule or column kind); retrain the run to write it again")
        encoding = cls(cols, missing)
        if "width" in data and data["width"] != encoding.width:
            raise DataError(f"'{where}' is damaged (width {data['width']} but its columns make {encoding.width}); retrain the run")
        return encoding


def fit_encoding(columns: Sequence[str], ids: Sequence[str], rows: Sequence[Row], missing: Missing = "indicator") -> MetadataEncoding:
    """Fit the encoding of ``columns`` on the TRAIN split's ``rows`` (one per id; None: the image has no row)."""
    if missing not in MISSING_MODES:
        raise ConfigError(f"model.metadata_missing '{missing}' is not one of {', '.join(MISSING_MODES)}")
    codes = []
    for name in columns:
        present = [str(r[name]).strip() for r in rows if r is not None and not is_missing(r.get(name))]
        if not present:
            raise DataError(f"metadata column '{name}' has no value in the training split; drop it from model.metadata or fill it in")
        numbers = [_number(v) for v in present]
        if all(x is not None for x in numbers):
            values = np.asarray(numbers, dtype=np.float64)
            std = float(values.std())
            codes.append(ColumnCode(name, "numeric", float(values.mean()), std if std > 0 else 1.0))
        else:
            codes.append(ColumnCode(name, "categorical", vocabulary=sorted(set(present))))
    encoding = MetadataEncoding(codes, missing)
    if missing == "error":
        encoding.encode(ids, rows, "the training split")  # a missing train value is refused here, naming the image
    return encoding


def require_columns(columns: Sequence[str], metadata: Mapping[str, Mapping[str, str]] | None) -> None:
    """Every ``model.metadata`` column is in the data's metadata (one line naming the column and what there is)."""
    if not metadata:
        raise ConfigError(f"model.metadata names column '{columns[0]}', but this data source has no per-image metadata; use a "
                          "source that has it (csv: the CSV's other columns; ham10000: age, sex, localization) or drop model.metadata")
    available = sorted({k for row in metadata.values() for k in row})
    for name in columns:
        if name not in available:
            raise ConfigError(f"model.metadata: column '{name}' is not in the data's metadata{did_you_mean(name, available)} "
                              f"(columns: {', '.join(available)}); fix the name in model.metadata")


def attach_metadata(bundle: "DataBundle", encoding: MetadataEncoding) -> None:
    """Encode every split's items from ``bundle.metadata`` and attach the vectors (``ImageDataset.meta``)."""
    rows = bundle.metadata or {}
    for name, ds in bundle.splits().items():
        values = encoding.encode(ds.ids, [rows.get(str(i)) for i in ds.ids], f"the {name} split")
        ds.set_meta(torch.from_numpy(values))


def fit_on_train(bundle: "DataBundle", columns: Sequence[str], missing: Missing = "indicator") -> MetadataEncoding:
    """The encoding of ``columns`` fitted on ``bundle.train`` only (validation and test never move it)."""
    require_columns(columns, bundle.metadata)
    rows = bundle.metadata or {}
    ids = list(bundle.train.ids)
    return fit_encoding(columns, ids, [rows.get(str(i)) for i in ids], missing)


# ------------------------------------------------------------------------- a CSV beside new images
#: the columns that key a metadata CSV's rows to image files, the first one present wins
KEY_COLUMNS = ("image_id", "image", "id", "file", "filename", "path")


class MetadataTable:
    """A metadata CSV for new images (``longtail predict --metadata FILE.csv``): one row per image, keyed by its
    id or file name (the first of :data:`KEY_COLUMNS` the CSV has), checked to hold ``columns``.

    A key matches an image by its file name, its stem (``ISIC_0024306`` for ``ISIC_0024306.jpg``) or its path
    as given; a key value that is a relative path matches by its own name and stem too."""

    def __init__(self, path: str | Path, columns: Sequence[str]) -> None:
        from .sources.base import require_file
        from .sources.files import read_csv_rows

        self.path = require_file(path, "metadata CSV", "metadata")
        header, rows = read_csv_rows(self.path)
        key = next((c for c in KEY_COLUMNS if c in header), None)
        if key is None:
            raise DataError(f"metadata CSV '{self.path}' has no key column ({', '.join(KEY_COLUMNS)}) naming each row's image; "
                            "add one, e.g. image_id with the file names' stems")
        for name in columns:
            if name not in header:
                raise DataError(f"metadata CSV '{self.path}' has no column '{name}', which this run's model takes "
                                f"(model.metadata: [{', '.join(columns)}]); add the column (values may be empty) to the CSV")
        self.key, self.rows = key, rows
        self._lookup: dict[str, int] = {}
        for i, row in enumerate(rows):
            value = row.get(key, "")
            for k in {value, Path(value).name, Path(value).stem} - {""}:
                self._lookup[k] = i if self._lookup.get(k, i) == i else -1  # -1: two rows claim this key

    def row(self, image: str | Path) -> dict[str, str]:
        """The CSV row of ``image``; an image without one (or with two) is a one-line DataError."""
        p = Path(image)
        for k in (str(image), p.name, p.stem):
            found = self._lookup.get(k)
            if found == -1:
                raise DataError(f"image '{image}' matches more than one row of metadata CSV '{self.path}' (column '{self.key}' "
                                f"value '{k}'); keep one row per image")
            if found is not None:
                return self.rows[found]
        raise DataError(f"image '{image}' has no row in metadata CSV '{self.path}' (column '{self.key}' is matched against file "
                        "names and their stems); add a row for it")
