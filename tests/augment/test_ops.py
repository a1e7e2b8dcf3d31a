"""Modified RandAugment ops and policies, classic RandAugment."""

from __future__ import annotations

import math

import pytest
import torch

from longtail.augment import COLOR_OPS, EXTRA_OPS, OPS, POLICIES, RAND_OPS, SHAPE_OPS, ModifiedRandAugment, RandAugment, ops
from longtail.core.errors import ConfigError, DataError
from longtail.core.registry import TRANSFORMS


def low_contrast_image(channels: int = 3, h: int = 20, w: int = 24, seed: int = 0) -> torch.Tensor:
    """Smooth-ish image in [60, 180): not saturated, so every op has room to change it."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(60, 180, (channels, h, w), dtype=torch.uint8, generator=g)


def apply(name: str, img: torch.Tensor, magnitude: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    kw = {"other": low_contrast_image(img.shape[0], 7, 9, seed=99)} if name == "mixup" else {}
    return OPS[name](img.clone(), magnitude, g, **kw)


def test_op_tables_cover_the_25_ops():
    assert len(OPS) == 25
    assert set(COLOR_OPS) | set(SHAPE_OPS) | set(EXTRA_OPS) == set(OPS)
    assert len(COLOR_OPS) == 13 and len(SHAPE_OPS) == 8 and set(RAND_OPS) <= set(OPS)


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("channels", [3, 1])
def test_op_keeps_shape_dtype_and_changes_the_image(name, channels):
    img = low_contrast_image(channels)
    outs = [apply(name, img, 10, seed) for seed in range(4)]
    for out in outs:
        assert out.shape == img.shape and out.dtype == torch.uint8
    if channels == 1 and name == "saturation":  # a grey image has no saturation to change
        assert all(torch.equal(o, img) for o in outs)
    else:
        assert any(not torch.equal(o, img) for o in outs), name
    # the same generator seed gives the same result
    assert torch.equal(apply(name, img, 10, 3), outs[3])


@pytest.mark.parametrize(
    "name",
    ["mixup", "gaussian_noise", "saturation", "contrast", "brightness", "sharpness", "color_casting", "posterize",
     "solarize", "vignetting", "rotate", "lens_distortion", "cutout", "shear_x", "shear_y", "scale", "crop", "resize"],
)  # fmt: skip
def test_magnitude_zero_is_identity(name):
    """Strength is U(lo, lo + (hi-lo)/10 * M): at M = 0 every op with lo = 'no change' is the identity."""
    img = low_contrast_image()
    assert torch.equal(apply(name, img, 0, 1), img)


def test_brightness_factor_range_grows_with_magnitude():
    img = torch.full((3, 4, 4), 100, dtype=torch.uint8)
    values = {m: torch.stack([apply("brightness", img, m, s)[0, 0, 0] for s in range(300)]).float() for m in (5, 10, 20)}
    for m, v in values.items():
        lo, hi = 100 * (1 - 0.04 * m), 100 * (1 + 0.04 * m)  # 1 +- U(0, 0.4 * M / 10)
        assert v.min() >= math.floor(lo) and v.max() <= math.ceil(hi)
        assert v.min() < lo + 0.15 * (100 - lo) and v.max() > hi - 0.15 * (hi - 100)  # both signs, near the bound


def test_posterize_drops_at_most_round_of_range_bits():
    img = torch.full((1, 2, 2), 255, dtype=torch.uint8)
    dropped = {8 - int(apply("posterize", img, 10, s)[0, 0, 0]).bit_count() for s in range(200)}
    assert dropped == {0, 1, 2, 3}  # round(U(0, 3))


def test_autocontrast_uses_one_global_min_max():
    img = torch.tensor([[[50, 100]], [[150, 200]], [[100, 150]]], dtype=torch.uint8)
    out = ops.autocontrast(img, 10)
    # global lo 50, hi 200 -> (x - 50) * 255 / 150
    expected = torch.tensor([[[0, 85]], [[170, 255]], [[85, 170]]], dtype=torch.uint8)
    assert torch.equal(out, expected)


def test_solarize_threshold_inverts_only_bright_pixels():
    img = torch.tensor([[[0, 127, 200, 254, 255]]], dtype=torch.uint8)
    outs = [apply("solarize", img, 10, s) for s in range(100)]
    for out in outs:  # threshold in [128, 255]: values below 128 never change
        assert out[0, 0, :2].tolist() == [0, 127]
        assert out[0, 0, 4] == 0  # 255 is always >= threshold
    assert any(o[0, 0, 2] == 55 for o in outs) and any(o[0, 0, 2] == 200 for o in outs)


def test_equalize_yuv_keeps_grey_pixels_grey():
    grey = low_contrast_image(1).repeat(3, 1, 1)
    out = ops.equalize_yuv(grey)
    assert (out.int().amax(0) - out.int().amin(0)).max() <= 1  # only rounding separates the channels
    assert out.float().std() > grey.float().std()  # stretched histogram


def test_linear_warp_by_90_degrees_equals_rot90_and_fills_with_imagenet_mean():
    img = low_contrast_image(3, 9, 9)
    c, s = math.cos(math.pi / 2), math.sin(math.pi / 2)
    assert torch.equal(ops._warp_linear(img, (c, s, -s, c)), torch.rot90(img, -1, dims=(1, 2)))
    shrunk = ops._warp_linear(img, (4.0, 0.0, 0.0, 4.0))  # zoom out x4: corners fall outside
    assert shrunk[:, 0, 0].tolist() == [round(255 * m) for m in ops.IMAGENET_MEAN]


def test_cutout_fills_a_square_with_the_mean_colour():
    img = torch.zeros((3, 224, 224), dtype=torch.uint8)
    out = apply("cutout", img, 10, 5)
    changed = (out != 0).any(0)
    rows, cols = changed.nonzero(as_tuple=True)
    side = int(rows.max() - rows.min() + 1)
    assert side == int(cols.max() - cols.min() + 1) and side % 2 == 0 and side <= 100
    assert int(changed.sum()) == side * side
    assert out[:, rows[0], cols[0]].tolist() == [round(255 * m) for m in ops.IMAGENET_MEAN]


def test_mixup_op_requires_another_image():
    with pytest.raises(ValueError, match="another image"):
        ops.mixup(low_contrast_image(), 10)


# ------------------------------------------------------------------------------ policies
def test_policy_v1_1_draws_one_colour_then_one_shape_op():
    aug = ModifiedRandAugment("v1_1", prob=1.0, magnitude=10, image_pool=lambda: low_contrast_image())
    torch.manual_seed(0)
    plans = [aug.plan() for _ in range(400)]
    assert all(len(p) == 2 and p[0] in COLOR_OPS and p[1] in SHAPE_OPS for p in plans)
    assert {p[0] for p in plans} == set(COLOR_OPS) and {p[1] for p in plans} == set(SHAPE_OPS)


@pytest.mark.parametrize("policy,slots", [("v0_0", 1), ("v1_0", 2), ("v2_0", 3), ("v2_1", 3), ("v2_2", 3), ("v3_0", 4), ("v3_1", 4)])
def test_policies_never_repeat_an_op_and_respect_slot_groups(policy, slots):
    aug = ModifiedRandAugment(policy, prob=1.0)
    torch.manual_seed(1)
    for _ in range(100):
        plan = aug.plan()
        assert len(plan) == slots and len(set(plan)) == slots
        assert "mixup" not in plan  # no image pool: the op is left out
        for op, group in zip(plan, POLICIES[policy]):
            assert op in {"colour": COLOR_OPS, "shape": SHAPE_OPS, "all": COLOR_OPS + SHAPE_OPS}[group]


def test_slot_probability_is_prob():
    aug = ModifiedRandAugment("v1_1", prob=0.7)
    torch.manual_seed(2)
    applied = sum(len(aug.plan()) for _ in range(2000)) / 4000
    assert abs(applied - 0.7) < 0.04


def test_randaugment_is_deterministic_under_a_torch_seed():
    img = low_contrast_image()
    aug = TRANSFORMS.create("randaugment", num_layers=2, magnitude=10)
    torch.manual_seed(123)
    first = [aug(img) for _ in range(5)]
    torch.manual_seed(123)
    second = [aug(img) for _ in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert any(not torch.equal(a, img) for a in first)
    assert RandAugment.batched is False and ModifiedRandAugment.batched is False


def test_randaugment_uses_only_its_ops_without_repeats():
    aug = RandAugment(num_layers=3, prob=1.0)
    torch.manual_seed(3)
    for _ in range(50):
        plan = aug.plan()
        assert len(set(plan)) == 3 and set(plan) <= set(RAND_OPS)


def test_modified_randaugment_end_to_end_with_pool_is_reproducible():
    img = low_contrast_image()
    aug = TRANSFORMS.create("modified_randaugment", policy="v3_1", prob=1.0, magnitude=10)
    aug.image_pool = lambda: low_contrast_image(seed=int(torch.randint(100, ())))
    torch.manual_seed(4)
    out = aug(img)
    torch.manual_seed(4)
    assert torch.equal(aug(img), out) and out.shape == img.shape and out.dtype == torch.uint8


def test_bad_config_and_input_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown policy 'v1_2'.*did you mean"):
        ModifiedRandAugment("v1_2")
    with pytest.raises(ConfigError, match="magnitude"):
        ModifiedRandAugment(magnitude=25)
    with pytest.raises(ConfigError, match="prob"):
        RandAugment(prob=1.5)
    with pytest.raises(ConfigError, match="num_layers"):
        RandAugment(num_layers=12)
    with pytest.raises(DataError, match="uint8 image tensor C x H x W"):
        ModifiedRandAugment()(torch.rand(3, 8, 8))
