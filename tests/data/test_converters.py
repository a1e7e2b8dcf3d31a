"""ISIC 2017/2018/2019 and Derm7pt converters: exact MBIT label maps, MBIT JSON + CSV outputs
that load back through the mbit_json and csv sources."""

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from longtail.cli.data import add_commands
from longtail.core.errors import DataError
from longtail.core.registry import DATASETS
from longtail.data.converters import convert_derm7pt, convert_isic2017, convert_isic2018, convert_isic2019, write_outputs


def images(root, names, size=(7, 5)):
    root.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(root / f"{n}.jpg")


def test_isic2017_label_map_with_and_without_nv_column(tmp_path):
    f = tmp_path / "gt.csv"
    f.write_text("image_id,melanoma,seborrheic_keratosis,nv\nA,1.0,0.0,0.0\nB,0.0,1.0,0.0\nC,0.0,0.0,1.0\n")
    assert [r.label for r in convert_isic2017(f).records] == [0, 1, 2]  # MEL 0, SK 1, NV 2
    g = tmp_path / "official.csv"
    g.write_text("image_id,melanoma,seborrheic_keratosis\nA,0,0\nB,1,0\n")
    conv = convert_isic2017(g)
    assert [r.label for r in conv.records] == [2, 0] and conv.class_names == ["MEL", "SK", "NV"]
    g.write_text("image_id,melanoma,seborrheic_keratosis\nA,1,1\n")
    with pytest.raises(DataError, match="row 2: melanoma=1, seborrheic_keratosis=1"):
        convert_isic2017(g)


def test_isic2018_metadata_onehot_and_test(tmp_path):
    meta = tmp_path / "HAM10000_metadata.csv"
    dxs = ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]
    meta.write_text("lesion_id,image_id,dx,dx_type,age,sex,localization\n" + "".join(
        f"HAM_{i // 2},ISIC_{i},{dx},histo,40,male,back\n" for i, dx in enumerate(dxs)))
    conv = convert_isic2018(meta)
    assert [r.label for r in conv.records] == list(range(7)) and conv.records[3].extra["lesion_id"] == "HAM_1"
    val = tmp_path / "val.csv"
    val.write_text("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nV1,0,0,0,0,1,0,0\nV2,1,0,0,0,0,0,0\n")
    assert [r.label for r in convert_isic2018(val).records] == [4, 0]
    test = tmp_path / "test.csv"
    test.write_text("image_id\nT1\nT2\n")
    assert [r.label for r in convert_isic2018(test).records] == [None, None]


def test_isic2019_train_and_unlabelled_test(tmp_path):
    f = tmp_path / "gt.csv"
    f.write_text("image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\nA,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0,0.0\nB,0.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n")
    conv = convert_isic2019(f)
    assert [r.label for r in conv.records] == [7, 1] and conv.num_classes == 8
    t = tmp_path / "test.csv"
    t.write_text("image,age_approx,anatom_site_general,sex\nX,55,torso,female\n")
    tc = convert_isic2019(t)
    assert tc.num_classes == 9 and tc.class_names[-1] == "UNK" and tc.records[0].label is None


def test_derm7pt_map_and_round_trip_through_mbit_json(tmp_path):
    items = [{"image_id": i, "category_id": c, "clinic_path": f"clinic/{i}.jpg", "derm_path": f"derm/{i}.jpg"}
             for i, c in enumerate([0, 1, 2, 3, 4, 1])]
    f = tmp_path / "train.json"
    f.write_text(json.dumps(items))
    images(tmp_path / "imgs" / "derm", range(6))
    images(tmp_path / "imgs" / "clinic", range(6), size=(9, 3))
    conv = convert_derm7pt(f)
    assert conv.class_names == ["BCC", "NV", "MEL", "MISC", "SK"] and conv.num_classes == 5
    data = write_outputs(conv, tmp_path / "imgs", tmp_path / "out.json", tmp_path / "out.csv")
    a = data["annotations"][0]
    assert (a["derm_height"], a["derm_width"], a["clinic_height"], a["clinic_width"]) == (5, 7, 3, 9)
    src = DATASETS.create("mbit_json", train=str(tmp_path / "out.json"), root=str(tmp_path / "imgs"))
    assert src.class_names == conv.class_names and src.splits["train"].targets.tolist() == [0, 1, 2, 3, 4, 1]
    clinic = DATASETS.create("mbit_json", train=str(tmp_path / "out.json"), root=str(tmp_path / "imgs"), image_key="clinic_path")
    assert clinic.splits["train"][0][0].shape == (3, 3, 9)
    csv_src = DATASETS.create("csv", file=str(tmp_path / "out.csv"), root=str(tmp_path / "imgs"), path_column="path",
                              classes=conv.class_names)
    assert csv_src.splits["all"].targets.tolist() == [0, 1, 2, 3, 4, 1]


def test_cli_convert_isic2018_and_missing_image(tmp_path, capsys):
    meta = tmp_path / "meta.csv"
    meta.write_text("lesion_id,image_id,dx\nL1,ISIC_1,nv\nL1,ISIC_2,nv\nL2,ISIC_3,df\n")
    images(tmp_path / "img", ["ISIC_1", "ISIC_2", "ISIC_3"])
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["data", "convert", "isic2018", str(meta), "--root", str(tmp_path / "img"),
                              "--out", str(tmp_path / "train.json"), "--csv", str(tmp_path / "train.csv")])
    assert args.func(args) == 0
    assert "3 images (3 labelled), 7 classes" in capsys.readouterr().out
    data = json.loads((tmp_path / "train.json").read_text())
    assert [a["category_id"] for a in data["annotations"]] == [1, 1, 5] and data["num_classes"] == 7
    src = DATASETS.create("csv", file=str(tmp_path / "train.csv"), root=str(tmp_path / "img"), path_column="path",
                          group_column="group", classes=data["class_names"])
    assert src.splits["all"].groups.tolist() == ["L1", "L1", "L2"]
    (tmp_path / "img" / "ISIC_3.jpg").unlink()
    with pytest.raises(DataError, match=r"image '.*ISIC_3.jpg' not found"):
        args.func(args)


# ------------------------------------------------------------- MBIT's small copies (--small, --remove-borders)
def _convert(tmp_path, argv):
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["data", "convert", *argv])
    return args.func(args)


def test_cli_convert_isic2017_small_resizes_the_short_side_and_points_the_json_there(tmp_path):
    gt = tmp_path / "ISIC-2017_Training_Part3_GroundTruth.csv"
    gt.write_text("image_id,melanoma,seborrheic_keratosis\nISIC_0000000,1.0,0.0\nISIC_0000001,0.0,0.0\n")
    (tmp_path / "img").mkdir()

    def smooth(h, w):  # gradients: JPEG keeps them within a few levels
        yy, xx = np.mgrid[0:h, 0:w]
        return np.stack([yy * 200 // h, xx * 200 // w, (yy + xx) * 100 // (h + w) + 50], -1).astype(np.uint8)

    originals = {"ISIC_0000000": smooth(60, 90), "ISIC_0000001": smooth(80, 50)}
    for name, arr in originals.items():
        Image.fromarray(arr).save(tmp_path / "img" / f"{name}.jpg", quality=100)
    assert _convert(tmp_path, ["isic2017", str(gt), "--root", str(tmp_path / "img"), "--out", str(tmp_path / "train.json"),
                               "--small", str(tmp_path / "small"), "--short-side", "30"]) == 0
    data = json.loads((tmp_path / "train.json").read_text())
    # short side 30, long side truncated as torchvision's Resize(30): 90 * 30 / 60 = 45, 50 -> 30, 80 * 30 / 50 = 48
    assert [(a["derm_height"], a["derm_width"]) for a in data["annotations"]] == [(30, 45), (48, 30)]
    assert [a["derm_path"] for a in data["annotations"]] == ["ISIC_0000000.jpg", "ISIC_0000001.jpg"]
    with Image.open(tmp_path / "img" / "ISIC_0000000.jpg") as img:
        expected = np.asarray(img.resize((45, 30), Image.BILINEAR), dtype=np.float64)
    with Image.open(tmp_path / "small" / "ISIC_0000000.jpg") as small:
        assert np.abs(np.asarray(small, dtype=np.float64) - expected).mean() < 3  # JPEG quality 95
    src = DATASETS.create("mbit_json", train=str(tmp_path / "train.json"), root=str(tmp_path / "small"))
    assert src.splits["train"].targets.tolist() == [0, 2]


def test_dark_lines_are_stripped_from_the_second_line_in():
    from longtail.data.shrink import strip_dark_lines

    img = np.full((40, 50, 3), 200, np.uint8)
    img[:6] = 10  # 6 dark rows at the top
    img[-3:] = 10  # 3 at the bottom
    img[:, 45:] = 0  # 5 dark columns at the right
    img[:, 0] = 0  # only the outermost column at the left: the search starts at the second, so it stays
    out = strip_dark_lines(img)
    np.testing.assert_array_equal(out, img[6:37, :45])
    bright_edge = img.copy()
    bright_edge[0] = 255  # a bright outermost row does not stop the search
    np.testing.assert_array_equal(strip_dark_lines(bright_edge), img[6:37, :45])


def test_dark_corners_are_trimmed_with_a_margin_and_a_dark_image_is_left_alone():
    from longtail.data.shrink import trim_dark_corners

    img = np.full((100, 100, 3), 200, np.uint8)
    img[:30, :30] = 5
    # corner patches [1:10, 1:10] are dark for 3 rounds (cut 10 left and top each), then bright:
    # cut (left 30, top 30) on a 70 x 70 remainder, minus a margin of int(70 * 0.05) = 3 -> 27
    np.testing.assert_array_equal(trim_dark_corners(img), img[27:, 27:])
    dark = np.full((100, 100, 3), 200, np.uint8)
    dark[:50, :50] = 5  # 50 - int(50 * 0.05) = 48 > 30% of 100: not a border, keep the image
    np.testing.assert_array_equal(trim_dark_corners(dark), dark)


def test_cli_convert_isic2019_remove_borders_writes_squares(tmp_path):
    from longtail.data.shrink import center_square, strip_dark_lines, trim_dark_corners

    gt = tmp_path / "ISIC_2019_Training_GroundTruth.csv"
    gt.write_text("image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\nISIC_0000000,0,1,0,0,0,0,0,0,0\n")
    arr = np.full((80, 120, 3), 180, np.uint8)
    arr[:, :, 1] = np.arange(120, dtype=np.uint8)[None, :] + 60
    arr[:8] = 0
    arr[-4:] = 0
    (tmp_path / "img").mkdir()
    Image.fromarray(arr).save(tmp_path / "img" / "ISIC_0000000.png")  # lossless source
    assert _convert(tmp_path, ["isic2019", str(gt), "--root", str(tmp_path / "img"), "--extension", ".png", "--out", str(tmp_path / "train.json"),
                               "--small", str(tmp_path / "small"), "--remove-borders", "--short-side", "32"]) == 0
    ann = json.loads((tmp_path / "train.json").read_text())["annotations"][0]
    assert (ann["derm_height"], ann["derm_width"], ann["derm_path"]) == (32, 32, "ISIC_0000000.jpg")
    # by hand: the central 80 x 80 square (columns 20..99), 8 + 4 dark rows off, square 68 x 68 again, resize
    steps = center_square(trim_dark_corners(strip_dark_lines(center_square(arr))))
    np.testing.assert_array_equal(steps, arr[8:76, 26:94])
    expected = np.asarray(Image.fromarray(np.ascontiguousarray(steps)).resize((32, 32), Image.BILINEAR), dtype=np.float64)
    with Image.open(tmp_path / "small" / "ISIC_0000000.jpg") as small:
        assert np.abs(np.asarray(small, dtype=np.float64) - expected).mean() < 3


def test_cli_convert_remove_borders_needs_small(tmp_path):
    from longtail.core.errors import ConfigError

    gt = tmp_path / "gt.csv"
    gt.write_text("image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\nISIC_0000000,0,1,0,0,0,0,0,0,0\n")
    with pytest.raises(ConfigError, match="--small DIR"):
        _convert(tmp_path, ["isic2019", str(gt), "--out", str(tmp_path / "t.json"), "--remove-borders", "--no-check"])
