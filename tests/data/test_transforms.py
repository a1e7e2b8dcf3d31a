"""Batched transforms draw parameters per image; pre-processing ops match hand computations."""

import numpy as np
import pytest
import torch

from longtail.core.errors import ConfigError
from longtail.core.registry import TRANSFORMS
from longtail.core.schema import Component
from longtail.data import build_pipeline
from longtail.data.preprocess import BorderCrop, CenterSquareCrop, GrayWorld, ResizeShortSide, ShadesOfGray
from longtail.data.transforms import CenterCrop, ColorJitter, HFlip, RandomCrop, RandomResizedCrop, RandomRotation, VFlip


def ramp_batch(n=16, c=3, h=12, w=12):
    x = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w).expand(n, c, h, w)
    return (x / (h * w)).contiguous()


def test_random_crop_is_per_image_and_a_true_crop():
    torch.manual_seed(0)
    x = ramp_batch()
    out = RandomCrop(8, padding=0)(x)
    assert out.shape == (16, 3, 8, 8)
    tops = set()
    for i in range(16):
        v = int(round(out[i, 0, 0, 0].item() * 144))
        top, left = divmod(v, 12)
        tops.add((top, left))
        assert torch.equal(out[i], x[i, :, top : top + 8, left : left + 8])
    assert len(tops) > 4  # a batch-wide v2 transform would give exactly one offset


def test_random_crop_padding_zero_fill_and_uint8():
    torch.manual_seed(1)
    x = torch.full((64, 1, 4, 4), 200, dtype=torch.uint8)
    out = RandomCrop(4, padding=2)(x)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert (out == 0).any() and (out == 200).any()
    assert (out == 0).flatten(1).any(1).sum() < 64  # some crops land fully inside


def test_flips_per_image():
    torch.manual_seed(0)
    x = ramp_batch(64)
    out = HFlip(p=0.5)(x)
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(-1)) for i in range(64)])
    same = torch.tensor([torch.equal(out[i], x[i]) for i in range(64)])
    assert (flipped | same).all() and 10 < flipped.sum() < 54
    assert torch.equal(VFlip(p=1.0)(x), x.flip(-2))
    assert torch.equal(HFlip(p=0.0)(x), x)


def test_random_resized_crop_boxes_and_full_box_identity():
    torch.manual_seed(0)
    rrc = RandomResizedCrop(8, scale=(0.2, 0.6))
    boxes = rrc.boxes(200, 32, 32)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / 1024
    assert (area > 0.15).all() and (area < 0.65).all() and len(set(boxes[:, 0].tolist())) > 5
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 32).all()
    x = torch.rand(4, 3, 16, 16)
    full = RandomResizedCrop(16, scale=(1.0, 1.0), ratio=(1.0, 1.0))(x)
    assert torch.allclose(full, x, atol=1e-5)  # the whole image at the same size is the identity
    assert RandomResizedCrop(10)(torch.randint(0, 255, (3, 3, 20, 20), dtype=torch.uint8)).dtype == torch.uint8


def test_color_jitter_factors_differ_per_image():
    torch.manual_seed(0)
    x = torch.full((32, 3, 4, 4), 0.5)
    out = ColorJitter(brightness=0.4)(x)
    factors = out[:, 0, 0, 0] / 0.5
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6 and factors.std() > 0.05
    gray = torch.rand(8, 1, 4, 4)
    assert torch.allclose(ColorJitter(saturation=0.5)(gray), gray)  # no-op on 1 channel
    rgb = torch.rand(8, 3, 5, 5)
    sat0 = ColorJitter(saturation=(0.0, 0.0))(rgb)
    assert torch.allclose(sat0[:, 0], sat0[:, 1], atol=1e-6)  # saturation 0 = grey image
    hue = ColorJitter(hue=0.0)(rgb)
    assert torch.allclose(hue, rgb)


def test_rotation_zero_is_identity_and_center_crop():
    x = torch.rand(2, 3, 9, 9)
    assert torch.allclose(RandomRotation(0)(x), x, atol=1e-5)
    assert torch.equal(CenterCrop(3)(x), x[..., 3:6, 3:6])


def test_pipeline_order_normalize_and_per_sample_first():
    mean, std = [0.5, 0.25, 0.0], [0.5, 0.5, 1.0]
    pipe = build_pipeline([Component(name="center_crop", size=4)], mean, std, train=False)
    x = torch.randint(0, 256, (5, 3, 6, 6), dtype=torch.uint8)
    want = (x[..., 1:5, 1:5].float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert pipe.sample is None and torch.allclose(pipe.batch(x), want)

    @TRANSFORMS.register("_test_invert")
    class Invert:
        """test-only per-sample op"""
        batched = False

        def __call__(self, img):
            return 255 - img

    try:
        p = build_pipeline([Component(name="_test_invert"), Component(name="hflip", p=0.0)], [0.0] * 3, [1.0] * 3, train=True)
        assert torch.equal(p.sample(x[0]), 255 - x[0])
        with pytest.raises(ConfigError, match="list per-sample transforms first"):
            build_pipeline([Component(name="hflip"), Component(name="_test_invert")], [0.0] * 3, [1.0] * 3, train=True)
        with pytest.raises(ConfigError, match=r"data.train_transforms.0: .*did you mean 'size'"):
            build_pipeline([Component(name="random_crop", sise=3)], [0.0], [1.0], train=True)
    finally:
        TRANSFORMS._entries.pop("_test_invert")
        TRANSFORMS._descriptions.pop("_test_invert")


def test_shades_of_gray_matches_numpy_reference():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 10, 12)).astype(np.uint8)
    # MBIT shade_of_gray_cc, written with numpy on an H x W x C image
    hwc = img.transpose(1, 2, 0).astype(np.float32)
    rgb = np.power(np.mean(np.power(hwc, 6), (0, 1)), 1 / 6)
    rgb = rgb / np.sqrt(np.sum(rgb**2))
    want = np.clip(hwc * (1 / (rgb * np.sqrt(3))), 0, 255).astype(np.uint8).transpose(2, 0, 1)
    got = ShadesOfGray(power=6)(torch.from_numpy(img)).numpy()
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    # gray world on a colour-cast flat image returns a neutral grey
    cast = torch.stack([torch.full((4, 4), 200), torch.full((4, 4), 100), torch.full((4, 4), 50)]).to(torch.uint8)
    out = GrayWorld()(cast)
    assert out[:, 0, 0].max() - out[:, 0, 0].min() <= 1
    assert torch.equal(GrayWorld(grid=2)(cast), out)  # uniform image: segmented = plain


def test_shades_of_gray_by_hand():
    # power 2 on a 1 x 2 image: e = (sqrt((30^2 + 40^2) / 2), 10, sqrt(20^2 / 2)) = (35.355, 10, 14.142),
    # RMS(e) = sqrt((1250 + 100 + 200) / 3) = 22.730; gains RMS(e) / e_c = (0.6429, 2.2730, 1.6073), truncated
    img = torch.tensor([[[30, 40]], [[10, 10]], [[0, 20]]], dtype=torch.uint8)
    assert torch.equal(ShadesOfGray(power=2)(img), torch.tensor([[[19, 25]], [[22, 22]], [[0, 32]]], dtype=torch.uint8))
    # a flat cast image: e = (200, 100, 50) for every power; each channel becomes RMS(e) = sqrt(17500) = 132.29 -> 132
    cast = torch.stack([torch.full((3, 4), 200), torch.full((3, 4), 100), torch.full((3, 4), 50)]).to(torch.uint8)
    for power in (1, 2, 6):
        assert torch.equal(ShadesOfGray(power=power)(cast), torch.full((3, 3, 4), 132, dtype=torch.uint8))
    # clipping: B = (250, 10), power 2: e_B = sqrt((250^2 + 10^2) / 2) = 177.0, RMS(e) = sqrt((2 * 62500 + 31300) / 3) = 228.25;
    # gain_B = 1.2896: 250 -> 322.4, clipped to 255; 10 -> 12.9 -> 12; R and G (250) -> 228
    bright = torch.tensor([[[250, 250]], [[250, 250]], [[250, 10]]], dtype=torch.uint8)
    assert torch.equal(ShadesOfGray(power=2)(bright), torch.tensor([[[228, 228]], [[228, 228]], [[255, 12]]], dtype=torch.uint8))


def test_shades_of_gray_power_one_is_classic_gray_world():
    rng = np.random.default_rng(1)
    # a reddish cast (channel means about 127, 76, 38): no gain clips, so every channel mean ends at RMS(means)
    img = (rng.integers(0, 256, (3, 9, 11)) * np.array([1.0, 0.6, 0.3])[:, None, None]).astype(np.uint8)
    got = ShadesOfGray(power=1)(torch.from_numpy(img))
    assert torch.equal(got, GrayWorld()(torch.from_numpy(img)))
    # classic gray world (Buchsbaum): channel c times mean(means) / mean_c; the sqrt(3) form scales that by RMS / mean
    means = img.reshape(3, -1).astype(np.float64).mean(1)
    classic = img.astype(np.float64) * (means.mean() / means)[:, None, None]
    rms_over_mean = np.sqrt((means**2).mean()) / means.mean()
    want = np.clip(classic * rms_over_mean, 0, 255).astype(np.uint8)
    assert np.abs(got.numpy().astype(int) - want.astype(int)).max() <= 1  # float32 vs float64 at a truncation edge
    # the corrected channel means are equal (grey), up to truncation and clipping
    out_means = got.numpy().reshape(3, -1).astype(np.float64).mean(1)
    assert out_means.max() - out_means.min() < 1.0 and abs(out_means.mean() - np.sqrt((means**2).mean())) < 1.0


def test_shades_of_gray_leaves_grey_images_unchanged():
    grey = torch.randint(0, 256, (1, 5, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ShadesOfGray()(grey), grey) and torch.equal(GrayWorld()(grey), grey)
    with pytest.raises(ConfigError, match="power must be > 0"):
        ShadesOfGray(power=0)


def test_geometric_preprocess_ops():
    img = torch.arange(3 * 10 * 20, dtype=torch.uint8).view(3, 10, 20)
    assert torch.equal(BorderCrop(pixels=2)(img), img[:, 2:8, 2:18])
    assert BorderCrop(ratio=0.2)(img).shape == (3, 8, 16)
    assert torch.equal(CenterSquareCrop()(img), img[:, :, 5:15])
    assert ResizeShortSide(5)(img).shape == (3, 5, 10)
    with pytest.raises(ConfigError, match="exactly one"):
        BorderCrop()
