"""Bad images, annotation files and configs (issue #13).

Every case asserts the one-line message, the exit status of the ``longtail`` command, and that
every file of a finished run that already sits in the output folder keeps its sha256. The CLI runs
in-process through :func:`longtail.cli.main` (the same exit status the script returns).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from longtail.core.errors import LongtailError
from longtail.data.decode import read_image

from .common import cli, csv_config, csv_rows, digests, folder_config, image_folder, one_error, small, write_yaml


# ------------------------------------------------------------------------------ images
@pytest.mark.parametrize("case", ["corrupt", "truncated", "zero-byte", "text named .jpg"])
def test_bad_image_file_is_one_line_error_naming_it(case, tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    bad = root / "a" / "bad.jpg"
    good = (root / "a" / "0.png").read_bytes()
    bad.write_bytes({"corrupt": b"\xff\xd8\xff\xe0" + os.urandom(200), "truncated": good[: len(good) // 2],
                     "zero-byte": b"", "text named .jpg": b"just some text\n"}[case])
    if case == "truncated":
        bad = bad.rename(root / "a" / "bad.png")
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", folder_config(tmp_path, root)))
    assert code == 2
    one_error(err, str(bad), "cannot be decoded", "on_bad_image=skip")
    assert not (tmp_path / "runs" / "files").exists(), "a failed first run leaves no folder"
    assert digests(run) == before


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "RGBA", "P", "L", "F"])
def test_other_image_modes_in_an_rgb_set_decode_to_the_right_rgb(mode, tmp_path):
    grey = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))  # 16 x 16, 0..240
    rgb = np.stack([grey, grey, grey], axis=-1)
    path = tmp_path / f"img_{mode.replace(';', '')}.{'tiff' if mode in ('CMYK', 'F') else 'png'}"
    if mode == "I;16":
        Image.fromarray(grey.astype(np.uint16) * 257).save(path)  # full 16-bit range
    elif mode == "F":
        Image.fromarray(grey.astype(np.float32) / 255.0).save(path)
    else:
        img = Image.fromarray(rgb)
        (img.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P" else img.convert(mode)).save(path)
    assert Image.open(path).mode == mode
    out = read_image(path, channels=3)
    assert out.shape == (3, 16, 16) and out.dtype == torch.uint8
    assert np.abs(out.permute(1, 2, 0).numpy().astype(int) - rgb.astype(int)).max() <= 2  # 16-bit is not clipped to 255
    assert np.abs(read_image(path, channels=1)[0].numpy().astype(int) - grey.astype(int)).max() <= 2


def test_mixed_modes_in_an_rgb_folder_train(tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    px = np.full((8, 8), 40000, dtype=np.uint16)
    Image.fromarray(px).save(root / "a" / "wide.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).convert("CMYK").save(root / "b" / "cmyk.jpg")
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(root / "b" / "rgba.png")
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", folder_config(tmp_path, root)))
    assert code == 0 and err == []
    assert read_image(root / "a" / "wide.png", 3).unique().tolist() == [round(40000 * 255 / 65535)]
    assert digests(run) == before


# ------------------------------------------------------------------------------ annotations
def test_unknown_label_is_refused(tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    shutil.copy(root / "a" / "0.png", root / "a" / "z.png")
    cfg = csv_config(tmp_path, csv_rows(root) + [("a/z.png", "zebra")], root, classes=["a", "b"])
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg))
    assert code == 2
    one_error(err, "label 'zebra'", "not in the class list")
    assert digests(run) == before


def test_duplicated_ids_are_an_error_unless_dedupe(tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    rows = csv_rows(root) + [("a/1.png", "a")]
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", csv_config(tmp_path, rows, root)))
    assert code == 2
    one_error(err, "row 14", "'a/1.png'", "repeats", "row 3", "dedupe: true")
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", csv_config(tmp_path, rows, root, name="deduped", dedupe=True)))
    assert code == 0 and err == []
    assert len(json.loads((tmp_path / "runs" / "deduped" / "data.json").read_text())["class_names"]) == 2
    assert digests(run) == before


def test_duplicated_id_with_conflicting_labels_is_an_error_even_with_dedupe(tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    rows = csv_rows(root) + [("a/1.png", "b")]
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", csv_config(tmp_path, rows, root, dedupe=True)))
    assert code == 2
    one_error(err, "row 14", "another label")
    assert digests(run) == before


def test_missing_image_file_says_not_found(tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", csv_config(tmp_path, csv_rows(root) + [("a/gone.png", "a")], root)))
    assert code == 2
    one_error(err, str(root / "a" / "gone.png"), "not found")
    assert digests(run) == before


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_annotation_path_outside_the_root_is_refused_without_saying_if_it_exists(kind, tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "data" / "imgs")
    secret = tmp_path / "data" / "secret.png"
    shutil.copy(root / "a" / "0.png", secret)
    messages = []
    for target in ("secret.png", "nothing-here.png"):
        path = f"../{target}" if kind == "dotdot" else str(tmp_path / "data" / target)
        cfg = csv_config(tmp_path, csv_rows(root) + [(path, "a")], root)
        code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg))
        assert code == 2
        messages.append(one_error(err, "row 14", "outside the data root", "allow_outside_root").replace(target, "X"))
    assert messages[0] == messages[1], "the error must not reveal whether the outside file exists"
    cfg = csv_config(tmp_path, csv_rows(root) + [("../secret.png" if kind == "dotdot" else str(secret), "a")], root, name="allowed", allow_outside_root=True)
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg))
    assert code == 0 and err == []
    assert digests(run) == before


def test_list_file_and_json_paths_are_contained_too(tmp_path):
    from longtail.core.registry import DATASETS

    root = image_folder(tmp_path / "imgs")
    (tmp_path / "train.txt").write_text("a/0.png 0\n\n../../etc/passwd 1\n")
    with pytest.raises(LongtailError, match=r"train.txt' line 3: path '../../etc/passwd' is outside the data root"):
        DATASETS.create("list_file", train=str(tmp_path / "train.txt"), root=str(root), num_classes=2)
    anns = {"annotations": [{"image_id": "x", "category_id": 0, "derm_path": "a/0.png"}, {"image_id": "y", "category_id": 1, "derm_path": "/etc/passwd"}], "num_classes": 2}
    (tmp_path / "train.json").write_text(json.dumps(anns))
    with pytest.raises(LongtailError, match=r"annotation 1: path '/etc/passwd' is outside the data root"):
        DATASETS.create("mbit_json", train=str(tmp_path / "train.json"), root=str(root))


# ------------------------------------------------------------------------------ config
def test_malformed_yaml(tmp_path, capsys, done):
    run, before = done
    (tmp_path / "bad.yaml").write_text("data:\n  source: {name: digits\n  batch_size: 4\n")
    code, err = cli(capsys, "train", "-c", tmp_path / "bad.yaml")
    assert code == 2
    one_error(err, "not valid YAML at line")
    assert digests(run) == before


@pytest.mark.parametrize("override, expected", [
    ("train.epochz=2", "unknown key 'train.epochz' (did you mean 'epochs'?)"),
    ("loss.name=focall", "unknown loss 'focall' (did you mean 'focal'?)"),
    ("train.epochs=two", "bad value for 'train.epochs'"),
])
def test_typos_and_wrong_types_in_the_config(override, expected, tmp_path, capsys, done):
    run, before = done
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", small(tmp_path, "typo")), override)
    assert code == 2
    one_error(err, expected)
    assert not (tmp_path / "runs" / "typo").exists()
    assert digests(run) == before


def test_wrongly_typed_component_argument_is_a_config_error(tmp_path, capsys, done):
    run, before = done
    cfg = write_yaml(tmp_path / "c.yaml", small(tmp_path, "typed"))
    code, err = cli(capsys, "train", "-c", cfg, "loss.name=focal", "loss.gamma=abc")
    assert code == 2
    one_error(err, "loss.gamma: 'abc' is not valid for loss 'focal'", "expected float")
    code, err = cli(capsys, "config", "show", "-c", cfg, "loss.name=focal", "loss.gamma=2")  # an int for a float is fine
    assert code == 0 and err == []
    assert digests(run) == before


def test_type_check_accepts_what_yaml_can_write_and_refuses_the_rest():
    from collections.abc import Sequence

    from longtail.core.registry import type_problem

    assert type_problem(float, 2) is None  # an int for a float
    assert type_problem(tuple[float, float], [0.1, 0.2]) is None  # YAML lists for tuples
    assert type_problem(Sequence[str] | None, [0, 1]) is None  # numbers as class names
    assert type_problem(float, "abc") is not None
    assert type_problem(float, "2") is not None  # a quoted number would reach the loss as a string
    assert type_problem(bool, "yes") is not None
    assert type_problem(int, 2.5) is not None


def test_zero_epochs_is_one_line_and_leaves_no_folder(tmp_path, capsys, done):
    run, before = done
    out = tmp_path / "fresh-output"
    cfg = small(tmp_path, "zero", output_dir=str(out))
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg), "train.epochs=0")
    assert code == 2
    one_error(err, "train.epochs is 0")
    assert not out.exists()
    assert digests(run) == before


def test_empty_class_folder(tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    (root / "c").mkdir()
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", folder_config(tmp_path, root)))
    assert code == 2
    one_error(err, "class 'c' (index 2) has no training images")
    assert not (tmp_path / "runs" / "files").exists()
    assert digests(run) == before


def test_empty_validation_split(tmp_path, capsys, done):
    run, before = done
    root = image_folder(tmp_path / "imgs")
    cfg = folder_config(tmp_path, root)
    cfg["data"]["split"] = {"val": 0.0, "test": 0.25}
    code, err = cli(capsys, "train", "-c", write_yaml(tmp_path / "c.yaml", cfg))
    assert code == 2
    one_error(err, "data.split.val is 0")
    assert digests(run) == before


def test_train_id_repeated_in_the_val_list_is_a_leak(tmp_path):
    from longtail.core.registry import DATASETS

    root = image_folder(tmp_path / "imgs")
    (tmp_path / "train.txt").write_text("a/0.png 0\nb/0.png 1\n")
    (tmp_path / "val.txt").write_text("a/1.png 0\nb/0.png 1\n")
    with pytest.raises(LongtailError, match=r"image 'b/0.png' is in both '.*train.txt' and '.*val.txt' \(a train/evaluation leak\)"):
        DATASETS.create("list_file", train=str(tmp_path / "train.txt"), val=str(tmp_path / "val.txt"), root=str(root), num_classes=2)
