"""SADE's test-time view ops: random_grayscale, gaussian_blur and color_jitter's p, per image."""

import pytest
import torch
import torchvision.transforms.functional as TF

from longtail.core.errors import ConfigError
from longtail.core.registry import TRANSFORMS
from longtail.core.schema import Component
from longtail.data import build_pipeline
from longtail.data.transforms import ColorJitter, GaussianBlur, RandomGrayscale


def same_per_image(a, b):
    return torch.tensor([torch.equal(a[i], b[i]) for i in range(a.shape[0])])


# random_grayscale


def test_random_grayscale_matches_torchvision_on_picked_images():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 5, 5)
    out = RandomGrayscale(p=0.5)(x)
    grey = TF.rgb_to_grayscale(x, num_output_channels=3)
    kept = same_per_image(out, x)
    picked = ~kept
    assert 10 < picked.sum() < 54
    assert torch.allclose(out[picked], grey[picked], atol=1e-3)  # torchvision: 0.2989 R, here 0.299 R
    assert torch.equal(out[picked][:, 0], out[picked][:, 2])


def test_random_grayscale_p0_p1_one_channel_and_uint8():
    x = torch.rand(8, 3, 4, 4)
    assert torch.equal(RandomGrayscale(p=0.0)(x), x)
    assert torch.allclose(RandomGrayscale(p=1.0)(x), TF.rgb_to_grayscale(x, num_output_channels=3), atol=1e-3)
    one = torch.rand(8, 1, 4, 4)
    assert torch.equal(RandomGrayscale(p=1.0)(one), one)
    u8 = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8)
    out = RandomGrayscale(p=1.0)(u8)
    assert out.dtype == torch.uint8 and out.shape == u8.shape
    assert (out.int() - TF.rgb_to_grayscale(u8, num_output_channels=3).int()).abs().max() <= 1
    assert RandomGrayscale().p == 0.1  # torchvision's default


def test_random_grayscale_fraction_near_p():
    torch.manual_seed(3)
    x = torch.rand(4000, 3, 2, 2)
    picked = ~same_per_image(RandomGrayscale(p=0.2)(x), x)
    assert abs(picked.float().mean().item() - 0.2) < 0.03


def test_random_grayscale_is_per_clip():
    torch.manual_seed(0)
    clips = torch.rand(32, 3, 4, 6, 6)  # N x C x T x H x W
    out = RandomGrayscale(p=0.5)(clips)
    assert out.shape == clips.shape
    grey_frames = (out[:, 0] == out[:, 1]).flatten(2).all(2)  # N x T
    assert (grey_frames.all(1) | ~grey_frames.any(1)).all()  # a clip's frames are all grey or all colour
    assert 0 < grey_frames.all(1).sum() < 32


# gaussian_blur


def test_gaussian_blur_fixed_sigma_matches_torchvision():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16)
    out = GaussianBlur(sigma=1.3, kernel_size=7)(x)
    assert torch.allclose(out, TF.gaussian_blur(x, [7, 7], [1.3, 1.3]), atol=1e-5)
    default = GaussianBlur(sigma=[0.5, 2.0])
    assert default.kernel_size == 13  # 2 * ceil(3 * 2.0) + 1
    assert torch.allclose(GaussianBlur(sigma=2.0)(x), TF.gaussian_blur(x, [13, 13], [2.0, 2.0]), atol=1e-5)


def test_gaussian_blur_sigma_per_image():
    x = torch.rand(1, 3, 20, 20).expand(2, 3, 20, 20).contiguous()
    torch.manual_seed(5)
    sigmas = torch.rand(2) * (2.0 - 0.1) + 0.1  # the draws the op will make
    assert abs(sigmas[0] - sigmas[1]) > 0.2
    torch.manual_seed(5)
    out = GaussianBlur(sigma=[0.1, 2.0])(x)
    for i in range(2):
        s = float(sigmas[i])
        assert torch.allclose(out[i], TF.gaussian_blur(x[i], [13, 13], [s, s]), atol=1e-5)
    var = out.var(dim=(1, 2, 3))
    assert var[int(sigmas.argmax())] < var[int(sigmas.argmin())]  # the larger sigma smooths more


def test_gaussian_blur_p_uint8_and_small_images():
    x = torch.rand(6, 3, 8, 8)
    assert torch.equal(GaussianBlur(p=0.0)(x), x)
    torch.manual_seed(1)
    part = GaussianBlur(p=0.5, sigma=1.0)(x)
    kept = same_per_image(part, x)
    assert kept.any() and not kept.all()
    assert torch.allclose(part[~kept], TF.gaussian_blur(x[~kept], [7, 7], [1.0, 1.0]), atol=1e-5)
    u8 = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    out = GaussianBlur(sigma=1.0)(u8)
    assert out.dtype == torch.uint8 and out.shape == u8.shape
    assert (out.int() - TF.gaussian_blur(u8, [7, 7], [1.0, 1.0]).int()).abs().max() <= 1
    assert torch.equal(GaussianBlur(p=0.0)(u8), u8)
    tiny = torch.rand(2, 3, 4, 4)  # kernel 13 is cut to 7, the widest reflect padding allows
    assert torch.allclose(GaussianBlur(sigma=2.0)(tiny), TF.gaussian_blur(tiny, [7, 7], [2.0, 2.0]), atol=1e-5)


def test_gaussian_blur_clip_frames_share_sigma():
    torch.manual_seed(0)
    frame = torch.rand(8, 3, 1, 10, 10)
    clips = frame.expand(8, 3, 3, 10, 10).contiguous()
    out = GaussianBlur()(clips)
    assert out.shape == clips.shape
    assert torch.allclose(out[:, :, 0], out[:, :, 2]) and not torch.allclose(out[0], out[1])


# color_jitter p


def test_color_jitter_p1_draws_as_before():
    x = torch.rand(8, 3, 6, 6)
    kwargs = dict(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    torch.manual_seed(7)
    before = ColorJitter(**kwargs)(x)
    after_before = torch.rand(3)
    torch.manual_seed(7)
    now = ColorJitter(**kwargs, p=1.0)(x)
    assert torch.equal(now, before) and torch.equal(torch.rand(3), after_before)  # no extra draws


def test_color_jitter_p0_identity_and_partial():
    x = torch.rand(64, 3, 4, 4)
    assert torch.equal(ColorJitter(brightness=0.4, p=0.0)(x), x)
    torch.manual_seed(0)
    out = ColorJitter(brightness=0.4, contrast=0.4, p=0.8)(x)
    kept = same_per_image(out, x)
    assert 2 < kept.sum() < 26
    u8 = torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8)
    out8 = ColorJitter(brightness=0.4, p=0.5)(u8)
    assert out8.dtype == torch.uint8 and same_per_image(out8, u8).any()


# arguments and registry


@pytest.mark.parametrize("make, where", [
    (lambda: ColorJitter(p=1.5), "color_jitter.p"),
    (lambda: RandomGrayscale(p=-0.1), "random_grayscale.p"),
    (lambda: GaussianBlur(p=2.0), "gaussian_blur.p"),
    (lambda: GaussianBlur(sigma=0.0), "gaussian_blur.sigma"),
    (lambda: GaussianBlur(sigma=[-1.0, 2.0]), "gaussian_blur.sigma"),
    (lambda: GaussianBlur(sigma=[2.0, 1.0]), "gaussian_blur.sigma"),
    (lambda: GaussianBlur(sigma=[0.1, 1.0, 2.0]), "gaussian_blur.sigma"),
    (lambda: GaussianBlur(kernel_size=4), "gaussian_blur.kernel_size"),
    (lambda: GaussianBlur(kernel_size=0), "gaussian_blur.kernel_size"),
])
def test_bad_arguments_are_one_line_config_errors(make, where):
    with pytest.raises(ConfigError, match=where) as e:
        make()
    assert "\n" not in str(e.value)


def test_registered_and_usable_in_a_pipeline():
    assert "random_grayscale" in TRANSFORMS and "gaussian_blur" in TRANSFORMS
    assert TRANSFORMS.get("random_grayscale").clip_fold == "height"
    sade = [Component(name="random_crop", size=8, padding=2),
            Component(name="color_jitter", brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=0.8),
            Component(name="random_grayscale", p=0.2),
            Component(name="gaussian_blur", sigma=[0.1, 2.0], p=0.2),
            Component(name="hflip")]
    pipe = build_pipeline(sade, [0.5] * 3, [0.25] * 3, train=True)
    torch.manual_seed(0)
    out = pipe.batch(torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8))
    assert out.shape == (4, 3, 8, 8) and out.dtype == torch.float32
    with pytest.raises(ConfigError, match=r"data.train_transforms.0: gaussian_blur.kernel_size"):
        build_pipeline([Component(name="gaussian_blur", kernel_size=6)], [0.0] * 3, [1.0] * 3, train=True)
