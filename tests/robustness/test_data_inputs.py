"""Hostile data (issue #31): images that are not what their name says, decompression bombs, files
that are not regular files, names that are not UTF-8, malformed annotation files, a tensor cache
fooled by a kept mtime, and classes that end up missing from validation or test.

Failures are checked as the house rules ask: the one-line message, the exit status of the
``longtail`` command (run in-process) and the sha256 of every file of a finished run.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from longtail.catalog.check import load_config
from longtail.data import build_data
from longtail.data.cache import cached_decode
from longtail.data.decode import Decoder, read_image
from longtail.data.sources.files import IMAGE_EXTENSIONS

from .common import cli, csv_config, csv_rows, digests, folder_config, image_folder, one_error, small, write_yaml

# a real EPS file: Pillow's EPS plugin would hand it to Ghostscript, which would loop for ever
EPS = "%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n{ } loop\nshowpage\n%%EOF\n"


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` and that holds no pixel: all a decompression bomb shows before it is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def rgb(path: Path, side: int = 8, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(autouse=True)
def no_eps(monkeypatch) -> None:
    """Fail any test in which Pillow's EPS plugin parses a file or starts Ghostscript."""
    from PIL import EpsImagePlugin

    def called(*args, **kwargs):
        raise AssertionError("Pillow's EPS plugin was called")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", called)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", called)


@pytest.fixture
def fifo_guard() -> Iterator[Callable[[Path], Path]]:
    """Make FIFOs whose readers are released after 20 s, so that a regression fails the test instead of hanging it."""
    made: list[Path] = []

    def release() -> None:
        for f in made:
            try:
                os.close(os.open(f, os.O_WRONLY | os.O_NONBLOCK))  # a reader blocked in open() gets EOF
            except OSError:
                pass  # nobody reading: nothing to release

    timer = threading.Timer(20, release)
    timer.start()

    def make(path: Path) -> Path:
        os.mkfifo(path)
        made.append(path)
        return path

    yield make
    timer.cancel()


def special(kind: str, path: Path, monkeypatch, fifo: Callable[[Path], Path]) -> Path:
    """A file system entry of ``kind`` at ``path``: a FIFO, a socket or a folder (named like an image)."""
    if kind == "FIFO":
        return fifo(path)
    if kind == "socket":
        monkeypatch.chdir(path.parent)  # a socket path is limited to 108 bytes: bind the short relative name
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path.name)  # the socket file stays after the socket is closed
        return path
    path.mkdir()
    return path


# ------------------------------------------------------------------------------ images
BAD_IMAGES = {
    # case: (file name, bytes, overrides, parts of the message)
    "EPS named .png": ("photo.png", EPS.encode(), [], ["photo.png' is EPS, not one of the raster formats longtail reads (PNG, JPEG",
                                                       "convert it or set data.on_bad_image=skip"]),
    "PDF named .jpg": ("scan.jpg", b"%PDF-1.4\n1 0 obj << >> endobj\n", [], ["scan.jpg' is PDF, not one of the raster formats"]),
    "30000x30000 PNG header": ("bomb.png", png_header(30000, 30000), [],
                               ["bomb.png' is 30000x30000 (900,000,000 pixels), above data.max_image_pixels (89,478,485)",
                                "resize it, raise the limit, or set data.on_bad_image=skip"]),
    "over a lowered limit": ("big.png", None, ["data.max_image_pixels=100"], ["big.png' is 16x16 (256 pixels), above data.max_image_pixels (100)"]),
}


def bad_image(root: Path, case: str) -> Path:
    name, data, _, _ = BAD_IMAGES[case]
    path = root / "a" / name
    if data is None:
        rgb(path, side=16)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_image_of_another_format_or_too_many_pixels_is_a_bad_image(case, tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    bad = bad_image(root, case)
    _, _, overrides, parts = BAD_IMAGES[case]
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", folder_config(tmp_path, root)), *overrides)
    assert code == 2
    one_error(err, str(bad.parent), *parts)
    assert not (tmp_path / "runs" / "files").exists()
    for cache in (True, False):  # decoded into the tensor cache, or checked from the header for lazy decoding
        cfg = load_config(write_yaml(tmp_path / "c.yaml", folder_config(tmp_path, root)),
                          [*overrides, "data.on_bad_image=skip", f"data.cache={cache}", f"data.cache_dir={tmp_path / 'cache'}"])
        bundle = build_data(cfg.data, seed=0)
        assert bundle.skipped == {"all": [str(bad)]}, cache
    assert digests(run) == before


@pytest.mark.parametrize("case", [c for c in BAD_IMAGES if not BAD_IMAGES[c][2]])
def test_predict_refuses_a_bad_image_or_skips_it(case, tmp_path, capsys, caplog, done):
    run, before = done
    (tmp_path / "in" / "a").mkdir(parents=True)
    good, bad = rgb(tmp_path / "in" / "good.png"), bad_image(tmp_path / "in", case)
    _, _, overrides, parts = BAD_IMAGES[case]
    code, err = cli(capsys, "predict", run, good, bad, *overrides, "--out", tmp_path / "p.csv")
    assert code == 2
    one_error(err, *parts)
    with caplog.at_level(logging.WARNING, logger="longtail"):
        code, err = cli(capsys, "predict", run, good, bad, *overrides, "data.on_bad_image=skip", "--out", tmp_path / "p.csv")
    assert code == 0 and err == []
    assert [r.split(",")[0] for r in (tmp_path / "p.csv").read_text().splitlines()[1:]] == [str(good)]
    assert "skipped 1 unreadable image(s) of 2" in caplog.text
    assert digests(run) == before


@pytest.mark.parametrize("pillow_limit", [40, 16])  # 8x8 = 64 pixels: Pillow would warn above 40, refuse above 2 x 16
def test_data_max_image_pixels_is_the_one_limit_not_pillows(pillow_limit, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    path = rgb(tmp_path / "x.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray DecompressionBombWarning either
        assert read_image(path, 3).shape == (3, 8, 8)
        assert Decoder(3, max_image_pixels=None)(rgb(tmp_path / "y.png", side=32)).shape == (3, 32, 32)


@pytest.mark.parametrize("ext", IMAGE_EXTENSIONS)
def test_every_promised_extension_is_a_raster_format_longtail_reads(ext, tmp_path):
    path = tmp_path / f"x{ext}"
    img = Image.fromarray(np.full((8, 8, 3), 120, np.uint8))
    (img.convert("L") if ext == ".pgm" else img).save(path)
    assert np.abs(read_image(path, 3).numpy().astype(int) - 120).max() <= 4  # JPEG / WEBP are lossy


# ------------------------------------------------------------------------------ files that are not regular files
@pytest.mark.parametrize("kind", ["FIFO", "socket"])
def test_class_folder_scan_skips_what_is_not_a_regular_file_with_one_warning(kind, tmp_path, caplog, monkeypatch, fifo_guard):
    root = image_folder(tmp_path / "imgs")
    odd = special(kind, root / "a" / "odd.png", monkeypatch, fifo_guard)
    cfg = load_config(write_yaml(tmp_path / "c.yaml", folder_config(tmp_path, root)), ["data.cache=true", f"data.cache_dir={tmp_path / 'cache'}"])
    with caplog.at_level(logging.WARNING, logger="longtail"):
        bundle = build_data(cfg.data, seed=0)
    assert sum(len(ds) for ds in bundle.splits().values()) == 12  # the 12 images, not the odd entry
    warned = [r.getMessage() for r in caplog.records if "not a regular file" in r.getMessage()]
    assert len(warned) == 1 and f"'{odd}' (a {kind})" in warned[0], warned


@pytest.mark.parametrize("what, kind", [("listed image", "FIFO"), ("listed image", "socket"), ("listed image", "folder"), ("CSV file", "FIFO")])
def test_annotation_naming_what_is_not_a_regular_file_is_one_line_not_not_found(what, kind, tmp_path, capsys, monkeypatch, fifo_guard, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    cfg = csv_config(tmp_path, csv_rows(root) + [("a/odd.png", "a")], root)
    if what == "CSV file":
        odd = Path(cfg["data"]["source"]["file"])
        odd.unlink()
        special(kind, odd, monkeypatch, fifo_guard)
    else:
        odd = special(kind, root / "a" / "odd.png", monkeypatch, fifo_guard)
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg))
    assert code == 2
    line = one_error(err, f"'{odd}' is a {kind}, not a regular file")
    assert "not found" not in line
    assert not (tmp_path / "runs" / "csvrun").exists()
    assert digests(run) == before


def test_predict_reads_only_regular_files(tmp_path, capsys, caplog, monkeypatch, fifo_guard, done):
    run, before = done
    (tmp_path / "in").mkdir()
    good = rgb(tmp_path / "in" / "good.png")
    fifo = special("FIFO", tmp_path / "in" / "pipe.png", monkeypatch, fifo_guard)
    sock = special("socket", tmp_path / "in" / "sock.png", monkeypatch, fifo_guard)
    with caplog.at_level(logging.WARNING, logger="longtail"):
        code, err = cli(capsys, "predict", run, tmp_path / "in", "/dev/zero", "--out", tmp_path / "p.csv")
    assert code == 0 and err == []
    assert [r.split(",")[0] for r in (tmp_path / "p.csv").read_text().splitlines()[1:]] == [str(good)]
    warned = [r.getMessage() for r in caplog.records if "not regular files" in r.getMessage()]
    assert len(warned) == 1 and all(s in warned[0] for s in (f"'{fifo}' (a FIFO)", f"'{sock}' (a socket)", "'/dev/zero' (a character device)"))
    code, err = cli(capsys, "predict", run, "/dev/zero")
    assert code == 2
    one_error(err, "no images")
    assert digests(run) == before


# ------------------------------------------------------------------------------ names that are not UTF-8
@pytest.mark.parametrize("where", ["file", "class folder"])
def test_names_that_are_not_utf8(where, tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    raw = os.fsencode(root)
    if where == "file":  # read, and its id written readably in every file of the run
        rgb(Path(os.fsdecode(raw + b"/a/\xff\xfe.png")))
    else:
        os.rename(raw + b"/b", raw + b"/b\xe9")
    cfg = folder_config(tmp_path, root)
    cfg["data"].update(cache=True, cache_dir=str(tmp_path / "cache"))
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg))
    if where == "class folder":
        assert code == 2
        one_error(err, f"class folder '{root}/b\\xe9' has a name that is not UTF-8; rename the folder")
        assert not (tmp_path / "runs" / "files").exists()
    else:
        assert code == 0 and err == []
        out = tmp_path / "runs" / "files"
        for name in ("data.json", "splits.json", "results.json"):
            json.loads((out / name).read_bytes().decode("utf-8"))  # strict UTF-8 JSON
        ids = [str(i) for ds in build_data(load_config(tmp_path / "c.yaml").data, seed=0).splits().values() for i in ds.ids]
        assert "a/\\xff\\xfe.png" in ids and all(i.encode("utf-8") for i in ids)
    assert digests(run) == before


# ------------------------------------------------------------------------------ annotation files
class Pickled:
    """Unpickling it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _csv(text: str | bytes, classes: list[str] | None = None) -> Callable[[Path, Path], dict]:
    def write(tmp: Path, root: Path) -> dict:
        f = tmp / "ann.csv"
        f.write_bytes(text if isinstance(text, bytes) else text.encode())
        return {"name": "csv", "file": str(f), "root": str(root), **({"classes": classes} if classes else {})}
    return write


def _list(text: str, **extra) -> Callable[[Path, Path], dict]:
    def write(tmp: Path, root: Path) -> dict:
        (tmp / "train.txt").write_text(text)
        (tmp / "val.txt").write_text("a/5.png 0\nb/5.png 1\n")
        return {"name": "list_file", "train": str(tmp / "train.txt"), "val": str(tmp / "val.txt"), "root": str(root), **extra}
    return write


def _json(content: object, name: str = "mbit_json") -> Callable[[Path, Path], dict]:
    def write(tmp: Path, root: Path) -> dict:
        (tmp / "ann.json").write_bytes(content if isinstance(content, bytes) else (content if isinstance(content, str) else json.dumps(content)).encode())
        return {"name": name, "train": str(tmp / "ann.json"), "root": str(root)}
    return write


def _npz(**overrides: np.ndarray) -> Callable[[Path, Path], dict]:
    def write(tmp: Path, root: Path) -> dict:
        arrays = {f"{s}_{k}": np.zeros((4, 8, 8), np.uint8) if k == "images" else np.array([[0], [1], [0], [1]]) for s in ("train", "val", "test")
                  for k in ("images", "labels")}
        arrays.update({k: v(tmp) if callable(v) else v for k, v in overrides.items()})
        np.savez(tmp / "set.npz", **arrays)
        return {"name": "medmnist", "root": str(tmp / "set.npz")}
    return write


ROWS = "image,label\n" + "".join(f"{c}/{i}.png,{c}\n" for c in "ab" for i in range(6))
MBIT = [{"image_id": "x", "category_id": 0, "derm_path": "a/0.png"}, {"image_id": "y", "category_id": 1, "derm_path": "b/0.png"}]
ANNOTATION_CASES = {
    "CSV bytes that are not UTF-8": (_csv(ROWS.encode() + b"a/x\xff.png,a\n"), ["ann.csv' line 14, column 4: byte 0xff is not UTF-8; save the file as UTF-8"]),
    "CSV NUL byte": (_csv(ROWS.replace("a/1.png", "a/1\x00.png")), ["ann.csv' line 3 holds a NUL byte"]),
    "CSV 200,000-character field": (_csv(ROWS + "a/" + "x" * 200_000 + ".png,a\n"), ["ann.csv' line 14: field larger than field limit (131072)"]),
    "CSV label 1e9": (_csv(ROWS.replace(",a\n", ",0\n").replace(",b\n", ",1\n").replace("a/0.png,0", "a/0.png,1e9")),
                      ["(item 0): label 1000000000 would make 1,000,000,001 classes", "renumber the labels 0..C-1 or list the classes"]),
    "CSV 20-digit label": (_csv(ROWS.replace(",a\n", ",0\n").replace(",b\n", ",1\n").replace("b/5.png,1", "b/5.png,12345678901234567890"), ["a", "b"]),
                           ["(item 11): label 12345678901234567890 is outside the 2 classes 0..1"]),
    "CSV empty path": (_csv(ROWS + ",a\n"), ["ann.csv' row 14: column 'image' is empty"]),
    "list line without a label": (_list("a/0.png 0\na/1.png\nb/0.png 1\n"), ["train.txt' line 2: 'a/1.png' has no label"]),
    "list label 2.5": (_list("a/0.png 0\nb/0.png 2.5\n"), ["train.txt' line 2: label '2.5' is not an integer class index"]),
    "list label 1e9": (_list("a/0.png 0\nb/0.png 1e9\n"), ["train.txt' line 2: label 1000000000 would make 1,000,000,001 classes"]),
    "list 20-digit label": (_list("a/0.png 0\nb/0.png 99999999999999999999\n", num_classes=2), ["train.txt' line 2: label 99999999999999999999 is outside the 2 classes"]),
    "JSON that is not JSON": (_json("{not json"), ["ann.json' is not valid JSON (line 1, column 2"]),
    "JSON of another shape": (_json([1, 2]), ["ann.json' has no 'annotations' list"]),
    "JSON item not an object": (_json({"annotations": ["a/0.png"]}), ["ann.json' annotations item 0 is \"a/0.png\", not an object"]),
    "JSON nested too deeply": (_json("[" * 100_000 + "]" * 100_000), ["ann.json' is not an annotation file: its JSON is nested too deeply"]),
    "JSON bytes that are not UTF-8": (_json(b'{"a": "\xe9"}'), ["ann.json' line 1, column 8: byte 0xe9 is not UTF-8"]),
    "JSON category_id not an integer": (_json({"annotations": [MBIT[0], {**MBIT[1], "category_id": "abc"}]}),
                                        ["ann.json' annotation 1: category_id is \"abc\", not an integer"]),
    "JSON num_classes 10**12": (_json({"annotations": MBIT, "num_classes": 10**12}), ["says num_classes=1,000,000,000,000 but the files hold 2 annotations"]),
    "iNat category id not an integer": (_json({"images": [{"id": 1, "file_name": "a/0.png"}], "annotations": [{"image_id": 1, "category_id": 0}],
                                               "categories": [{"id": [0], "name": "a"}]}, "inat_json"), ["ann.json' category 0: id is [0], not an integer"]),
    "iNat image id a list": (_json({"images": [{"id": [1], "file_name": "a/0.png"}], "categories": [{"id": 0, "name": "a"}]}, "inat_json"),
                             ["ann.json' image 0: id is [1], not a number or a string"]),
    "npz with a pickled object array": (_npz(train_images=lambda tmp: np.array([Pickled(tmp / "PWNED")], dtype=object)),
                                        ["set.npz' holds a pickled object array, which longtail never loads"]),
    "npz with float labels": (_npz(val_labels=np.array([[0.5], [1.0], [0.0], [1.0]])), ["set.npz': val_labels are float64, not integers"]),
    "npz label 10**15": (_npz(test_labels=np.array([[0], [1], [0], [10**15]])), ["set.npz test_labels (item 3): label 1000000000000000 would make"]),
}


@pytest.mark.parametrize("case", list(ANNOTATION_CASES))
def test_malformed_annotation_file_is_one_line_naming_file_and_line(case, tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    write, parts = ANNOTATION_CASES[case]
    cfg = small(tmp_path, "ann", data={"source": write(tmp_path, root), "split": {"val": 0.25, "test": 0.25}, "train_transforms": [],
                                       "batch_size": 4, "image_size": 8})
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg))
    assert code == 2
    one_error(err, *parts)
    assert not (tmp_path / "PWNED").exists(), "the pickle was loaded"
    assert not (tmp_path / "runs" / "ann").exists()
    assert digests(run) == before


# ------------------------------------------------------------------------------ tensor cache
def test_tensor_cache_serves_new_pixels_of_an_image_rewritten_with_the_same_size_and_mtime(tmp_path):
    paths = [str(tmp_path / f"{i}.bmp") for i in range(3)]  # BMP: the same size in bytes whatever the pixels
    for i, p in enumerate(paths):
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(p)
    decoder = Decoder(3)
    first, _, _, hit = cached_decode(paths, decoder, str(tmp_path / "cache"))
    again, _, _, hit_again = cached_decode(paths, decoder, str(tmp_path / "cache"))
    assert (hit, hit_again) == (False, True) and bool((first == again).all())
    st = os.stat(paths[1])
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(paths[1])  # what cp -p or rsync -t leave: other bytes, same size and mtime
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(paths[1]).st_size, os.stat(paths[1]).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    fresh, _, _, hit = cached_decode(paths, decoder, str(tmp_path / "cache"))
    assert not hit
    assert fresh[1].unique().tolist() == [200] and bool((fresh[0] == first[0]).all())


# ------------------------------------------------------------------------------ classes missing from evaluation
def test_class_missing_from_validation_and_test_is_named_or_refused(tmp_path, capsys, caplog, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    (root / "c").mkdir()
    rgb(root / "c" / "only.png")  # one image: it lands in train
    cfg_file = write_yaml(tmp_path / "c.yaml", folder_config(tmp_path, root))
    with caplog.at_level(logging.WARNING, logger="longtail"):
        build_data(load_config(cfg_file).data, seed=0)
    warned = [r.getMessage() for r in caplog.records if "has no image in the" in r.getMessage()]
    assert len(warned) == 2, warned  # once per split
    for line, split in zip(warned, ("validation", "test")):
        assert line.startswith(f"class 'c' (of 3) has no image in the {split} split, so its {split} metrics leave it out"), line
        assert "data.require_all_classes: true makes this an error" in line
    code, err = cli(capsys, "train", "-c", cfg_file, "data.require_all_classes=true")
    assert code == 2
    one_error(err, "class 'c' (of 3) has no image in the validation split and data.require_all_classes is true", "add images of that class")
    assert not (tmp_path / "runs" / "files").exists()
    assert digests(run) == before
