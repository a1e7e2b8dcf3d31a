"""Converters from the ISIC 2017/2018/2019 and Derm7pt ground-truth files to the MBIT JSON schema
(seeds.md 2.9) and a plain CSV, with the exact label maps MBIT uses.

MBIT bugs fixed here rather than reproduced: the ISIC 2018 converter read an undefined
``args.file``; Derm7pt set ``num_classes = max id + 1`` (wrong for a split missing the last class),
here it is always 5; the ISIC 2017 ``nv`` column the authors added by hand is derived when absent.
"""

from __future__ import annotations

import csv as csvlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import DataError
from .decode import open_image
from .sources.files import read_csv_rows

ISIC2017_CLASSES = ["MEL", "SK", "NV"]
ISIC2018_CLASSES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
ISIC2018_DX = {"mel": 0, "nv": 1, "bcc": 2, "akiec": 3, "bkl": 4, "df": 5, "vasc": 6}
ISIC2019_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]
DERM7PT_CLASSES = ["BCC", "NV", "MEL", "MISC", "SK"]


@dataclass
class Record:
    image_id: str
    derm_path: str
    label: int | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Converted:
    records: list[Record]
    class_names: list[str]
    num_classes: int


def _flag(value: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise DataError(f"{where}: '{value}' is not a number; expected 0/1 ground-truth values") from None


def _one_hot(row: dict[str, str], columns: list[str], where: str) -> int:
    """``sum_k k * onehot_k`` over ``columns`` (MBIT), checked to be exactly one positive."""
    values = [_flag(row[c], where) for c in columns]
    hot = [k for k, v in enumerate(values) if v >= 0.5]
    if len(hot) != 1:
        raise DataError(f"{where}: {len(hot)} of the columns {', '.join(columns)} are set; each image needs exactly one")
    return hot[0]


def _id_column(columns: list[str], path: Path) -> str:
    for c in ("image_id", "image"):
        if c in columns:
            return c
    raise DataError(f"'{path}' has no 'image_id' or 'image' column (columns: {', '.join(columns)}); is it an ISIC ground-truth CSV?")


def convert_isic2017(csv_file: str | Path, extension: str = ".jpg") -> Converted:
    """ISIC 2017 ``image_id,melanoma,seborrheic_keratosis[,nv]``: label = mel + 2*sk + 3*nv - 1 (MEL 0, SK 1, NV 2)."""
    path = Path(csv_file)
    columns, rows = _rows(path)
    idc = _id_column(columns, path)
    for c in ("melanoma", "seborrheic_keratosis"):
        if c not in columns:
            raise DataError(f"'{path}' has no column '{c}'; expected the ISIC 2017 ground truth image_id,melanoma,seborrheic_keratosis")
    records = []
    for n, r in enumerate(rows, start=2):
        where = f"{path} row {n}"
        mel, sk = _flag(r["melanoma"], where), _flag(r["seborrheic_keratosis"], where)
        nv = _flag(r["nv"], where) if "nv" in columns else 1.0 - mel - sk
        if sorted((mel, sk, nv)) != [0.0, 0.0, 1.0]:
            raise DataError(f"{where}: melanoma={mel:g}, seborrheic_keratosis={sk:g}, nv={nv:g} is not one class")
        records.append(Record(r[idc], r[idc] + extension, int(mel + 2 * sk + 3 * nv - 1)))
    return Converted(records, list(ISIC2017_CLASSES), 3)


def convert_isic2018(csv_file: str | Path, extension: str = ".jpg") -> Converted:
    """ISIC 2018 / HAM10000: metadata (``dx``), one-hot ``MEL..VASC`` ground truth, or an unlabelled id list."""
    path = Path(csv_file)
    columns, rows = _rows(path)
    idc = _id_column(columns, path)
    records = []
    if "dx" in columns:
        for n, r in enumerate(rows, start=2):
            if r["dx"] not in ISIC2018_DX:
                raise DataError(f"{path} row {n}: dx '{r['dx']}' is not one of {', '.join(ISIC2018_DX)}")
            extra = {"lesion_id": r["lesion_id"]} if "lesion_id" in columns else {}
            records.append(Record(r[idc], r[idc] + extension, ISIC2018_DX[r["dx"]], extra))
    elif all(c in columns for c in ISIC2018_CLASSES):
        for n, r in enumerate(rows, start=2):
            records.append(Record(r[idc], r[idc] + extension, _one_hot(r, ISIC2018_CLASSES, f"{path} row {n}")))
    else:
        records = [Record(r[idc], r[idc] + extension, None) for r in rows]
    return Converted(records, list(ISIC2018_CLASSES), 7)


def convert_isic2019(csv_file: str | Path, extension: str = ".jpg") -> Converted:
    """ISIC 2019 ``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK`` (8 labelled classes); a test CSV is unlabelled (9 with UNK)."""
    path = Path(csv_file)
    columns, rows = _rows(path)
    idc = _id_column(columns, path)
    if all(c in columns for c in ISIC2019_CLASSES):
        records = [Record(r[idc], r[idc] + extension, _one_hot(r, ISIC2019_CLASSES, f"{path} row {n}"))
                   for n, r in enumerate(rows, start=2)]
        return Converted(records, list(ISIC2019_CLASSES), 8)
    records = [Record(r[idc], r[idc] + extension, None) for r in rows]
    return Converted(records, [*ISIC2019_CLASSES, "UNK"], 9)


def convert_derm7pt(json_file: str | Path) -> Converted:
    """Derm7pt list ``[{image_id, category_id, clinic_path, derm_path}]``: BCC 0, NV 1, MEL 2, MISC 3, SK 4."""
    path = Path(json_file)
    if not path.is_file():
        raise DataError(f"Derm7pt file '{path}' not found; pass the JSON list of {{image_id, category_id, clinic_path, derm_path}}")
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"'{path}' is not valid JSON (line {e.lineno})") from None
    if isinstance(items, dict) and "annotations" in items:
        items = items["annotations"]
    if not isinstance(items, list):
        raise DataError(f"'{path}' must hold a list of {{image_id, category_id, clinic_path, derm_path}} entries")
    records = []
    for i, it in enumerate(items):
        for key in ("image_id", "derm_path"):
            if key not in it:
                raise DataError(f"{path} entry {i} has no '{key}'")
        cat = it.get("category_id")
        if isinstance(cat, str) and cat.upper() in DERM7PT_CLASSES:
            label: int | None = DERM7PT_CLASSES.index(cat.upper())
        elif cat is None:
            label = None
        else:
            label = int(cat)
            if not 0 <= label < len(DERM7PT_CLASSES):
                raise DataError(f"{path} entry {i}: category_id {cat} is outside 0..4 ({', '.join(DERM7PT_CLASSES)})")
        extra = {"clinic_path": it["clinic_path"]} if it.get("clinic_path") else {}
        records.append(Record(str(it["image_id"]), str(it["derm_path"]), label, extra))
    return Converted(records, list(DERM7PT_CLASSES), 5)


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise DataError(f"ground-truth CSV '{path}' not found; pass an existing file")
    columns, rows = read_csv_rows(path)
    if not rows:
        raise DataError(f"'{path}' has a header but no rows")
    return columns, rows


def _size(path: Path) -> tuple[int, int]:
    if not path.exists():
        raise DataError(f"image '{path}' not found; pass --root (the image folder) or --no-check to skip image checks")
    try:
        with open_image(path, None) as img:
            return img.height, img.width
    except DataError as e:
        raise DataError(f"{e} (or pass --no-check)") from None


def write_outputs(conv: Converted, root: str | Path, json_out: str | Path, csv_out: str | Path | None = None,
                  check_images: bool = True, write: Callable[[Path, bytes], None] | None = None) -> dict[str, Any]:
    """Write the MBIT JSON (paths relative to ``root``) and optionally the plain CSV; returns the JSON.

    ``write(path, data)`` stores each file: the CLI passes rundir's atomic writer, which this layer
    cannot import; without it the files are written plainly."""
    root = Path(root)
    anns = []
    for r in conv.records:
        ann: dict[str, Any] = {"image_id": r.image_id}
        if r.label is not None:
            ann["category_id"] = r.label
        if check_images:
            ann["derm_height"], ann["derm_width"] = _size(root / r.derm_path)
        ann["derm_path"] = r.derm_path
        if "clinic_path" in r.extra:
            if check_images:
                ann["clinic_height"], ann["clinic_width"] = _size(root / r.extra["clinic_path"])
            ann["clinic_path"] = r.extra["clinic_path"]
        if "lesion_id" in r.extra:
            ann["lesion_id"] = r.extra["lesion_id"]
        anns.append(ann)
    data = {"annotations": anns, "num_classes": conv.num_classes, "class_names": conv.class_names}
    store = write or _write_plain
    store(Path(json_out), json.dumps(data, indent=1).encode())
    if csv_out is not None:
        store(Path(csv_out), _plain_csv(conv).encode())
    return data


def _plain_csv(conv: Converted) -> str:
    """The plain CSV: image_id, path, label, class_name, group (the lesion id)."""
    text = io.StringIO(newline="")
    w = csvlib.writer(text)
    w.writerow(["image_id", "path", "label", "class_name", "group"])
    for r in conv.records:
        label = "" if r.label is None else r.label
        name = "" if r.label is None else conv.class_names[r.label]
        w.writerow([r.image_id, r.derm_path, label, name, r.extra.get("lesion_id", "")])
    return text.getvalue()


def _write_plain(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


CONVERTERS = {
    "isic2017": convert_isic2017,
    "isic2018": convert_isic2018,
    "isic2019": convert_isic2019,
    "derm7pt": convert_derm7pt,
}
