"""Test-time augmentation: crop grid positions, multi-scale views, average / vote arithmetic."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from longtail.augment import TTA, crop_positions, multi_crop, multi_scale
from longtail.augment.tta import SCALE_NAMES
from longtail.core.errors import ConfigError, DataError
from longtail.core.registry import METHODS


def ramp(n: int = 2, h: int = 10, w: int = 12) -> torch.Tensor:
    """Pixel (y, x) of image b holds 1000 b + 12 y + x: a crop's corner tells where it came from."""
    base = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w)
    return base + 1000 * torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)


@pytest.mark.parametrize(
    "h,w,crops,l,s,tops,lefts",
    [
        (10, 12, 9, 1.0, 1.0, [0, 3, 6], [0, 4, 8]),  # region = image: x = floor(c * (12-4)/2)
        (10, 12, 16, 1.0, 1.0, [0, 2, 4, 6], [0, 2, 5, 8]),  # floor(c * 8/3), floor(r * 6/3)
        (10, 12, 9, 0.5, 1.0, [0, 3, 6], [3, 4, 5]),  # long side (x) region 6 from x0 = 3
        (12, 10, 9, 0.5, 1.0, [3, 4, 5], [0, 3, 6]),  # tall image: the long side is y
        (10, 12, 9, 0.1, 1.0, [0, 3, 6], [4, 4, 4]),  # region smaller than the crop: widened to it
    ],
)
def test_crop_grid_positions_by_hand(h, w, crops, l, s, tops, lefts):
    pos = crop_positions(h, w, 4, crops, l, s)
    assert pos == [(t, x) for t in tops for x in lefts]


def test_multi_crop_cuts_those_windows_from_every_image():
    batch = ramp()
    views = multi_crop(batch, 4, 9)
    assert views.shape == (9, 2, 1, 4, 4)
    corners = views[:, :, 0, 0, 0]
    expected = torch.tensor([t * 12 + x for t in (0, 3, 6) for x in (0, 4, 8)], dtype=torch.float32)
    torch.testing.assert_close(corners[:, 0], expected)
    torch.testing.assert_close(corners[:, 1], expected + 1000)
    assert torch.equal(views[4, 1], batch[1, :, 3:7, 4:8])


def test_multi_scale_views():
    batch = ramp(1, 10, 10)
    views = multi_scale(batch, 4, ["scale_+00", "flip_x_+00", "flip_y_+00", "rotate_90_+00", "rotate_270_+00", "scale_+50", "scale_+200"])
    centre = batch[..., 3:7, 3:7]
    assert torch.equal(views[0], centre)
    assert torch.equal(views[1], centre.flip(-1)) and torch.equal(views[2], centre.flip(-2))
    assert torch.equal(views[3], torch.rot90(centre, 1, (-2, -1))) and torch.equal(views[4], torch.rot90(centre, 3, (-2, -1)))
    torch.testing.assert_close(views[5], TF.resize(batch[..., 2:8, 2:8], [4, 4], antialias=True))
    torch.testing.assert_close(views[6], TF.resize(batch, [4, 4], antialias=True))  # 12 > 10: clipped to the image


def corner_class_model(num_classes: int):
    """Logits 10 * one-hot(corner value mod 5): which class wins depends on where the crop was cut."""

    def model(view: torch.Tensor) -> torch.Tensor:
        cls = view[:, 0, 0, 0].long() % 5
        return 10.0 * torch.nn.functional.one_hot(cls, num_classes).float()

    return model


def test_vote_and_average_arithmetic():
    batch = ramp(1)
    # corners 0 4 8 36 40 44 72 76 80 -> mod 5: 0 4 3 1 0 4 2 1 0 -> votes [3, 2, 1, 1, 2] / 9
    votes = torch.tensor([3, 2, 1, 1, 2, 0], dtype=torch.float64) / 9
    tta = METHODS.create("tta", crops=9, crop_size=4, scheme="vote")
    out = tta.predict(corner_class_model(6), batch)
    assert out.shape == (1, 6) and torch.isfinite(out).all()
    torch.testing.assert_close(torch.softmax(out, 1)[0].double(), votes, atol=1e-7, rtol=0)

    avg = TTA(crops=9, crop_size=4, scheme="average").predict(corner_class_model(6), batch)
    p_win = math.exp(10) / (math.exp(10) + 5)
    p_lose = 1 / (math.exp(10) + 5)
    expected = votes * p_win + (1 - votes) * p_lose
    torch.testing.assert_close(torch.softmax(avg, 1)[0].double(), expected, atol=1e-6, rtol=0)


def test_crops_and_scales_are_all_used():
    calls = []
    tta = TTA(crops=16, scales=3, crop_size=4)
    assert tta.num_views == 19
    tta.predict(lambda v: calls.append(v.shape) or torch.zeros(v.shape[0], 2), ramp())
    assert calls == [(2, 1, 4, 4)] * 19


def test_default_crop_is_seven_eighths_of_the_short_side():
    views = list(TTA(crops=9).views(torch.zeros(1, 3, 16, 20)))
    assert views[0].shape == (1, 3, 14, 14)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="9, 16, 25, 36"):
        TTA(crops=10)
    with pytest.raises(ConfigError, match="scheme"):
        TTA(scheme="median")
    with pytest.raises(ConfigError, match=r"bad scale view 'zoom_\+10'"):
        TTA(crops=None, scales=["zoom_+10"])
    with pytest.raises(ConfigError, match="nothing to do"):
        TTA(crops=None)
    with pytest.raises(DataError, match="larger than"):
        multi_crop(ramp(), 11, 9)
    with pytest.raises(ConfigError, match="square crop_size"):
        multi_scale(ramp(), (4, 6), ["rotate_90_+00"])


# ------------------------------------------------------------------------------ flips / dihedral
def square(n: int = 2, side: int = 6) -> torch.Tensor:
    return ramp(n, side, side)


def test_flip_views_are_the_exact_flips_and_rotations():
    x = square()
    hflip = list(TTA(crops=None, flips="hflip").views(x))
    assert len(hflip) == 2 and torch.equal(hflip[0], x) and torch.equal(hflip[1], x.flip(-1))
    d4 = list(TTA(crops=None, scales=None, flips="dihedral").views(x))
    rot = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
    assert len(d4) == 8
    for got, want in zip(d4, rot + [r.flip(-1) for r in rot]):
        assert torch.equal(got, want)
    assert len({tuple(v[0, 0].flatten().tolist()) for v in d4}) == 8  # eight different images: the whole group


def test_dihedral_views_of_a_2x2_image_by_hand():
    # [[a, b], [c, d]] with a, b, c, d = 0, 1, 2, 3; torch.rot90(k=1) turns it counter-clockwise
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 1, 2, 2)
    want = [[[0, 1], [2, 3]], [[1, 3], [0, 2]], [[3, 2], [1, 0]], [[2, 0], [3, 1]],  # rotations by 0, 90, 180, 270
            [[1, 0], [3, 2]], [[3, 1], [2, 0]], [[2, 3], [0, 1]], [[0, 2], [1, 3]]]  # each mirrored left-right
    got = [v[0, 0].tolist() for v in TTA(crops=None, flips="dihedral").views(x)]
    assert got == want


def test_flips_multiply_the_crop_and_scale_views():
    assert TTA(crops=None, flips="dihedral").num_views == 8
    assert TTA(crops=None, flips="hflip").num_views == 2
    assert TTA(crops=9, crop_size=4, flips="none").num_views == 9
    assert TTA(crops=9, crop_size=4, flips="hflip").num_views == 18
    tta = TTA(crops=9, scales=3, crop_size=4, flips="dihedral")
    assert tta.num_views == (9 + 3) * 8
    x = square(2, 10)
    views = list(tta.views(x))
    assert len(views) == tta.num_views
    crops = multi_crop(x, 4, 9)
    for i in range(9):  # crop i, then its 8 symmetries
        assert torch.equal(views[8 * i], crops[i])
        assert torch.equal(views[8 * i + 3], torch.rot90(crops[i], 3, dims=(-2, -1)))
        assert torch.equal(views[8 * i + 4], crops[i].flip(-1))
    scales = multi_scale(x, 4, SCALE_NAMES[:3])  # scales=3: MBIT's first three views
    assert torch.equal(views[8 * 9 + 8 * 2 + 5], torch.rot90(scales[2], 1, dims=(-2, -1)).flip(-1))
    # flips alone with crop_size: the centre crop, then its flips
    centre = list(TTA(crops=None, crop_size=4, flips="hflip").views(x))
    assert torch.equal(centre[0], x[..., 3:7, 3:7]) and torch.equal(centre[1], x[..., 3:7, 3:7].flip(-1))


def test_dihedral_average_is_the_mean_softmax_over_the_eight_inputs():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 5, 5)
    linear = torch.nn.Linear(2 * 5 * 5, 4)
    model = lambda v: linear(v.flatten(1))  # noqa: E731  (not rotation invariant: every view counts)
    a = x
    inputs = [a, a.transpose(-2, -1).flip(-2), a.flip(-2).flip(-1), a.transpose(-2, -1).flip(-1)]  # rotations by 0/90/180/270 written out
    inputs += [v.flip(-1) for v in inputs]
    with torch.no_grad():
        expected = torch.stack([torch.softmax(model(v), 1) for v in inputs]).mean(0)
        out = TTA(crops=None, flips="dihedral").predict(model, x)
    assert out.shape == (3, 4)
    torch.testing.assert_close(torch.softmax(out, 1), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(3), atol=1e-6, rtol=0)  # the log of the averaged probabilities
    # hflip: two views
    with torch.no_grad():
        two = torch.stack([torch.softmax(model(v), 1) for v in (x, x.flip(-1))]).mean(0)
    torch.testing.assert_close(torch.softmax(TTA(crops=None, flips="hflip").predict(model, x), 1), two, atol=1e-6, rtol=0)


def test_flip_settings_are_checked():
    with pytest.raises(ConfigError, match="flips must be one of none, hflip, dihedral"):
        TTA(crops=None, flips="vflip")
    with pytest.raises(ConfigError, match="nothing to do"):
        TTA(crops=None, scales=None, flips="none")
    with pytest.raises(ConfigError, match="nothing to do"):
        TTA(crops=None, flips=None)  # null = none
    # non-square: a 90-degree rotation would hand the model a transposed image
    with pytest.raises(ConfigError, match="needs a square crop_size"):
        TTA(crops=9, crop_size=[4, 6], flips="dihedral")
    with pytest.raises(ConfigError, match="needs square views, got 4x6"):
        list(TTA(crops=None, flips="dihedral").views(torch.zeros(1, 3, 4, 6)))
    wide = [v.shape for v in TTA(crops=None, flips="hflip").views(torch.zeros(1, 3, 4, 6))]
    assert wide == [(1, 3, 4, 6)] * 2  # hflip keeps the shape: fine on any image
    with pytest.raises(DataError, match="larger than"):
        list(TTA(crops=None, crop_size=7, flips="hflip").views(torch.zeros(1, 3, 6, 6)))


def test_a_config_may_ask_for_flips_alone():
    from longtail.catalog.check import load_config
    from longtail.engine.inference import build_tta

    cfg = load_config(raw={"data": {"source": {"name": "digits"}}, "eval": {"tta": {"name": "tta", "crops": None, "flips": "dihedral"}}})
    tta = build_tta(cfg)
    assert tta.num_views == 8 and tta.flips == "dihedral"


def test_a_run_tests_with_dihedral_flips_and_refuses_non_square_views_before_training(tmp_path):
    import numpy as np

    import longtail
    from longtail import rundir

    from ..helpers import tiny_config

    flips = {"tta": {"name": "tta", "crops": None, "flips": "dihedral"}}
    result = longtail.train(tiny_config(tmp_path, name="d4", train={"epochs": 1, "progress": False, "tensorboard": False}, eval=flips))
    test = np.load(result.run_dir / rundir.PREDICTIONS / "test.npz")
    np.testing.assert_allclose(np.exp(test["logits"]).sum(1), 1.0, atol=1e-5)  # the log of the averaged probabilities
    with pytest.raises(ConfigError, match="needs square views, got 8x10"):
        longtail.train(tiny_config(tmp_path, name="wide", data={"image_size": [8, 10]}, eval=flips))
    assert not (tmp_path / "runs" / "wide" / rundir.METRICS).exists()  # stopped before the first epoch
