"""Grad-CAM maps (Selvaraju et al., "Grad-CAM: Visual explanations from deep networks via gradient-based
localization", ICCV 2017) for the report's gallery: where in the image the evidence for a class lies.

Grad-CAM weighs each channel of a convolutional feature map ``A^k`` by the spatial mean of the class
score's gradient, ``alpha_k = mean_ij d y_c / d A^k_ij``, and keeps ``ReLU(sum_k alpha_k A^k)``,
upsampled to the image and scaled to [0, 1]. The ``grad-cam`` package (``pytorch_grad_cam.GradCAM``)
does the arithmetic; this module picks the feature map per backbone family (so the user need not
name it), refuses models it cannot explain before any work (clips, a head without gradients), and
draws and saves the overlays.

Unlike the rest of :mod:`longtail.evaluation`, this module runs a model: a CAM needs the gradient,
which stored logits do not have. It leaves the model as it found it (train/eval mode of every module,
``requires_grad`` and ``.grad`` of every parameter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..core.errors import ConfigError, DataError, LongtailError, did_you_mean
from ..metrics import to_numpy
from ..models.bbn import BilateralBackbone
from ..models.experts import ExpertBackbone
from ..models.staged import StagedBackbone
from ..models.timm_backbone import TimmBackbone
from ..models.torchvision_backbone import TorchvisionBackbone
from ..models.weights import model_arch

#: the config keys the messages name (the wiring of the ``eval`` section uses the same names)
CAM_KEY = "--explain"  # how a user asks for maps: `longtail predict RUN IMAGES --explain OUT_DIR`
CAM_LAYER_KEY = "eval.cam_layer"
EXTRA_INSTALL = "pip install 'longtail[explain]'"
COLORMAPS = ("jet", "viridis")
OVERLAY_ALPHA = 0.4

#: torchvision classes outside the ResNet / RegNet families (those run stage by stage) -> the module
#: whose output is the last convolutional feature map, the one the classifier pools
TORCHVISION_LAYERS = {
    "EfficientNet": "features",
    "MobileNetV2": "features",
    "MobileNetV3": "features",
    "ConvNeXt": "features",
    "VGG": "features",
    "AlexNet": "features",
    "DenseNet": "features",
    "MNASNet": "layers",
    "ShuffleNetV2": "conv5",
    "GoogLeNet": "inception5b",
    "Inception3": "Mixed_7c",
}


# ------------------------------------------------------------------------------- the model
def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a (Distributed)DataParallel wrapper, so dotted names and families are the model's own."""
    parallel = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    return model.module if isinstance(model, parallel) else model  # type: ignore[return-value]


def _backbone(model: nn.Module) -> nn.Module:
    return getattr(model, "backbone", model)


def refuse_clips(model: nn.Module) -> None:
    """A clip model (3-D convolutions over C x T x H x W) is refused: the maps here are 2-D."""
    if getattr(_backbone(model), "takes_clips", False) or any(isinstance(m, nn.Conv3d) for m in model.modules()):
        raise ConfigError(f"Grad-CAM maps are 2-D but model '{model_arch(model)}' takes clips (C x T x H x W); leave out {CAM_KEY} for video runs")


def refuse_metadata(model: nn.Module) -> None:
    """A metadata model (``model.metadata``) is refused: the maps here explain an image-only forward pass."""
    if getattr(_unwrap(model), "metadata_dim", 0):
        raise ConfigError(f"Grad-CAM explains image-only models, but this model also takes metadata (model.metadata); leave out {CAM_KEY} "
                          "for this run (its report gallery shows the images without maps)")


def _gradient_error(model: nn.Module, what: str) -> ConfigError:
    return ConfigError(f"model '{model_arch(model)}' has no gradient path from its logits to the image ({what}, e.g. SPBL's feature SVM), "
                       f"so Grad-CAM cannot explain it; leave out {CAM_KEY} for this run")


def check_gradient_path(model: nn.Module) -> None:
    """Refuse a model whose head does not pass gradients (SPBL's :class:`~longtail.spbl.classifier.FeatureClassifierHead`).

    Checked generically, by running the head alone on a zero feature row that requires a gradient:
    a head that leaves autograd (numpy, ``.detach()``, a scikit-learn estimator) returns a tensor
    without a gradient. A model without ``head`` / ``feature_dim`` is checked on the real forward instead.
    """
    model = _unwrap(model)
    head, dim = getattr(model, "head", None), getattr(model, "feature_dim", None)
    if not isinstance(head, nn.Module) or not isinstance(dim, int):
        return
    ref = next(iter([*head.parameters(), *head.buffers(), *model.parameters()]), None)
    probe = torch.zeros(1, dim, device=ref.device if ref is not None else None,
                        dtype=ref.dtype if ref is not None and ref.is_floating_point() else torch.float32, requires_grad=True)
    with torch.enable_grad():
        out = head(probe)
    if not isinstance(out, Tensor) or not out.requires_grad:
        raise _gradient_error(model, f"its head, {type(head).__name__}, is not differentiable")


# --------------------------------------------------------------------------- target layer
def _conv_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _has_2d_maps(module: nn.Module) -> bool:
    """Whether a module's output is plausibly an N x C x H x W map: it holds a 2-D conv or is a 2-D batch norm."""
    return isinstance(module, nn.BatchNorm2d) or any(isinstance(m, nn.Conv2d) for m in module.modules())


def _torchvision_layer(net: nn.Module) -> nn.Module | None:
    name = TORCHVISION_LAYERS.get(type(net).__name__)
    return getattr(net, name, None) if name else None


def _timm_layer(net: nn.Module) -> nn.Module | None:
    """timm: the last entry of ``feature_info`` (the deepest feature map timm exposes); for EfficientNet the
    ``bn2`` after ``conv_head``, because its ``feature_info`` stops before the 1x1 head convolution that
    makes the map the classifier pools."""
    if type(net).__name__ == "EfficientNet" and isinstance(getattr(net, "conv_head", None), nn.Conv2d):
        bn2 = getattr(net, "bn2", None)
        return bn2 if isinstance(bn2, nn.Module) else net.conv_head  # type: ignore[return-value]
    info = getattr(net, "feature_info", None)
    try:
        name = info[-1]["module"]  # type: ignore[index]
        layer = net.get_submodule(name)
    except (TypeError, KeyError, IndexError, AttributeError):
        return None
    return layer if _has_2d_maps(layer) else None  # a transformer block's tokens are no 2-D map


def default_layer(model: nn.Module) -> nn.Module | None:
    """The last convolutional block of a known backbone family, or None.

    BBN and multi-expert models (RIDE): the last stage of the shared trunk, the deepest map every logit
    depends on (each branch feeds only its share of the features). Staged CNNs (small CNN, CIFAR ResNets, torchvision
    and timm ResNets / RegNets): the last stage. Other torchvision models: :data:`TORCHVISION_LAYERS`.
    timm: see :func:`_timm_layer`.
    """
    net = _backbone(model)
    if isinstance(net, (BilateralBackbone, ExpertBackbone)):  # a multi-expert model (RIDE): the same rule, its shared trunk
        stages = net.trunk.stages()
        return stages[-1] if stages else None
    if isinstance(net, TorchvisionBackbone) and net.family is None:
        return _torchvision_layer(net.net)
    if isinstance(net, StagedBackbone):
        stages = net.stages()
        return stages[-1] if stages else None
    if isinstance(net, TimmBackbone):
        return _timm_layer(net.net)
    return None


def _resolve(model: nn.Module, name: str) -> nn.Module:
    """The module at dotted ``name``; an error listing conv modules near the end when there is none."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        convs = _conv_names(model)
        hint = did_you_mean(name, [n for n, _ in model.named_modules() if n])
        raise ConfigError(f"{CAM_LAYER_KEY}: model '{model_arch(model)}' has no module '{name}'{hint}; "
                          f"conv modules near the end: {', '.join(convs[-3:]) or 'none'}") from None


def cam_target_layer(model: nn.Module, override: str | None = None) -> nn.Module:
    """The module whose output Grad-CAM explains: ``override`` (a dotted name relative to ``model``, the value
    of ``eval.cam_layer``) or the last convolutional block of the backbone family (:func:`default_layer`).

    Refuses, in one line and before any work, clip models, a head without gradients and a family
    without a known layer.
    """
    net = _unwrap(model)
    refuse_clips(net)
    check_gradient_path(net)
    if override:
        return _resolve(net, override)
    layer = default_layer(net)
    if layer is None:
        convs = _conv_names(net)
        raise ConfigError(f"no Grad-CAM target layer is known for model '{model_arch(net)}'; set {CAM_LAYER_KEY} to the dotted name "
                          f"of a conv module (e.g. {convs[-1] if convs else 'backbone.layer4'})")
    return layer


# ----------------------------------------------------------------------------------- maps
class LogitsOnly(nn.Module):
    """``model(x)`` as plain logits for grad-cam (the first element when the model returns (logits, features)),
    with the input requiring a gradient so the graph exists whatever the parameters' ``requires_grad``."""

    def __init__(self, model: nn.Module, on_no_gradient: Callable[[], LongtailError]) -> None:
        super().__init__()
        self.model = model
        self.on_no_gradient = on_no_gradient

    def forward(self, x: Tensor) -> Tensor:
        # the input carries the gradient (the parameters' are off), so frozen models get maps too
        out = self.model(x.detach().requires_grad_(True))
        logits = out[0] if isinstance(out, (tuple, list)) else out
        if not logits.requires_grad:  # the input requires a gradient, so only a non-differentiable step gets here
            raise self.on_no_gradient()
        return logits


def _import_gradcam() -> tuple[Any, Any]:
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        raise LongtailError(f"Grad-CAM needs the grad-cam package; install it with {EXTRA_INSTALL}") from None
    return GradCAM, ClassifierOutputTarget


def _check_images(images: Any) -> Tensor:
    x = images if isinstance(images, Tensor) else torch.as_tensor(np.asarray(images))
    if x.dim() == 5:
        raise ConfigError(f"Grad-CAM maps are 2-D; these are clips (N x C x T x H x W): leave out {CAM_KEY} for video runs")
    if x.dim() != 4 or len(x) == 0:
        raise DataError(f"grad_cams takes a batch of images N x C x H x W, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise DataError(f"grad_cams takes normalised float images (the model's input), got {x.dtype}; apply the eval transforms first")
    return x.detach()


def _check_classes(classes: Sequence[int], n: int, num_classes: int | None) -> list[int]:
    cls = [int(c) for c in to_numpy(classes).ravel()]
    if len(cls) != n:
        raise DataError(f"grad_cams: {len(cls)} classes for {n} images; pass the class to explain for every image")
    bad = [c for c in cls if c < 0 or (num_classes is not None and c >= num_classes)]
    if bad:
        valid = f"0..{num_classes - 1}" if num_classes is not None else "the model's classes (0, 1, ...)"
        raise DataError(f"grad_cams: class {bad[0]} is outside {valid}; pass class indices of the model")
    return cls


def _module_name(model: nn.Module, layer: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is layer:
            return name or "<the model>"
    raise ConfigError(f"the Grad-CAM layer ({type(layer).__name__}) is not a module of model '{model_arch(model)}'; pass cam_target_layer(model)")


@contextmanager
def _untouched(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients while the maps are made; every module's mode, ``requires_grad``
    and ``.grad`` restored afterwards (grad-cam calls ``model.eval()`` and ``model.zero_grad()``)."""
    modes = [(m, m.training) for m in model.modules()]
    params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _, _ in params:
            p.requires_grad_(False)  # no parameter gradients: LogitsOnly's input carries the graph
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag, grad in params:
            p.requires_grad_(flag)
            p.grad = grad


def _shape_guard(layer: nn.Module, name: str, calls: list[int]) -> Any:
    """A forward hook that refuses a layer whose output is not an N x C x H x W map (e.g. transformer tokens)."""
    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        calls.append(1)
        if not isinstance(output, Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
            raise ConfigError(f"{CAM_LAYER_KEY}: layer '{name}' gives {shape}, not an N x C x H x W map; set it to a conv module")
    return layer.register_forward_hook(hook)


def _layer_error(name: str, reached: bool, got_gradient: bool) -> ConfigError | None:
    """Why grad-cam failed on a layer, when the layer is the reason: never run, or no gradient comes back to it."""
    if not reached:
        return ConfigError(f"{CAM_LAYER_KEY}: layer '{name}' is not on the way from the image to the logits; set it to a conv module the image passes through")
    if not got_gradient:
        return ConfigError(f"{CAM_LAYER_KEY}: no gradient of the logits reaches layer '{name}'; set it to a conv module before the head")
    return None


def grad_cams(model: nn.Module, images: Any, classes: Sequence[int], layer: nn.Module, batch_size: int = 32) -> np.ndarray:
    """Grad-CAM maps (N x H x W float32 in [0, 1], the images' H and W) of ``classes[i]`` for ``images[i]``.

    ``images`` are the model's input (normalised, N x C x H x W); ``layer`` comes from
    :func:`cam_target_layer`; the class is given (the predicted one for the gallery). The model may
    return logits or (logits, features). Each map is scaled to its own maximum (grad-cam's convention), so
    it says where in *this* image the evidence lies, not how strong it is across images. The model runs in
    eval mode (batch norm statistics fixed), so the chunks of ``batch_size`` give the maps of one batch.
    """
    net = _unwrap(model)
    refuse_clips(net)
    check_gradient_path(net)
    x = _check_images(images)
    cls = _check_classes(classes, len(x), getattr(net, "num_classes", None))
    name = _module_name(net, layer)
    GradCAM, ClassifierOutputTarget = _import_gradcam()
    calls: list[int] = []
    guard = _shape_guard(layer, name, calls)
    maps = []
    try:
        with _untouched(net), torch.enable_grad():
            cam = GradCAM(model=LogitsOnly(net, lambda: _gradient_error(net, "its logits do not depend differentiably on the image")),
                          target_layers=[layer])
            try:
                step = max(1, int(batch_size))
                for i in range(0, len(x), step):
                    targets = [ClassifierOutputTarget(c) for c in cls[i:i + step]]
                    try:
                        maps.append(cam(input_tensor=x[i:i + step].clone(), targets=targets))
                    except (AttributeError, TypeError, ValueError, IndexError) as e:
                        error = _layer_error(name, reached=bool(calls), got_gradient=bool(cam.activations_and_grads.gradients))
                        if error is None:
                            raise
                        raise error from e
            finally:
                cam.activations_and_grads.release()
    finally:
        guard.remove()
    out = np.concatenate(maps).astype(np.float32)
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)


# ------------------------------------------------------------------------------- overlays
def _rgb_hwc(image: Any) -> np.ndarray:
    img = to_numpy(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[0] not in (1, 3):
        raise DataError(f"overlay takes a uint8 image C x H x W with 1 or 3 channels, got {img.dtype} {img.shape}")
    hwc = np.transpose(img, (1, 2, 0))
    return np.repeat(hwc, 3, axis=2) if hwc.shape[2] == 1 else hwc


def heatmap(cam: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A map in [0, 1] as RGB floats in [0, 1] through a matplotlib colormap (``jet`` or ``viridis``)."""
    if colormap not in COLORMAPS:
        raise ConfigError(f"colormap '{colormap}' is not one of {', '.join(COLORMAPS)}{did_you_mean(colormap, COLORMAPS)}")
    import matplotlib

    return np.asarray(matplotlib.colormaps[colormap](cam))[..., :3]


def overlay(image: Any, cam: Any, alpha: float = OVERLAY_ALPHA, colormap: str = "jet") -> np.ndarray:
    """``image`` (uint8 C x H x W; grey is expanded to RGB) with ``cam`` (H x W in [0, 1]) as a heatmap on top:
    ``round((1 - alpha) * image + alpha * 255 * colormap(cam))``, H x W x 3 uint8."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"overlay alpha={alpha} must be in [0, 1] (the heatmap's weight)")
    rgb = _rgb_hwc(image)
    m = np.asarray(to_numpy(cam), dtype=np.float64)
    if m.shape != rgb.shape[:2]:
        raise DataError(f"the map is {m.shape} but the image is {rgb.shape[:2]}; pass the map grad_cams made for this image")
    m = np.clip(np.nan_to_num(m, nan=0.0), 0.0, 1.0)
    blended = (1.0 - alpha) * rgb.astype(np.float64) + alpha * 255.0 * heatmap(m, colormap)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def overlays(model: nn.Module, layer: nn.Module, images: Tensor, x: Tensor, classes: Sequence[int]) -> list[np.ndarray]:
    """The Grad-CAM overlay (H x W x 3 uint8) of ``classes[i]`` over each decoded image ``images[i]`` (uint8
    C x H x W); ``x`` is the model's input for them. A map made on an eval crop or resize is stretched over
    the whole decoded image, which is what a person looks at."""
    maps = grad_cams(model, x, [int(c) for c in classes], layer)
    out = []
    for image, cam in zip(images.cpu(), maps):
        if tuple(cam.shape) != tuple(image.shape[-2:]):
            cam = F.interpolate(torch.from_numpy(cam)[None, None], size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)[0, 0].numpy()
        out.append(overlay(image, np.clip(cam, 0.0, 1.0)))
    return out


class Explainer:
    """Grad-CAM overlays of decoded images through a run's eval pipeline (the report's gallery).

    Built once per run: the model is checked (no clips, a gradient path, a target layer found or named by
    ``eval.cam_layer``) and the grad-cam package imported up front, so a model that cannot be explained
    fails here, before any map is made."""

    def __init__(self, model: nn.Module, cam_layer: str | None, pipeline: Any, device: torch.device) -> None:
        refuse_clips(model)
        refuse_metadata(model)
        check_gradient_path(model)
        _import_gradcam()
        self.model, self.pipeline, self.device = model, pipeline, device
        self.layer = cam_target_layer(model, cam_layer)
        self.layer_name = _module_name(_unwrap(model), self.layer)

    def __call__(self, image: Tensor, cls: int) -> np.ndarray:
        """The overlay of class ``cls`` on one decoded image (uint8 C x H x W): H x W x 3 uint8."""
        raw = torch.as_tensor(image)[None].to(self.device)
        return overlays(self.model, self.layer, raw, self.pipeline.batch(raw), [cls])[0]


def save_overlay(path: str | Path, image: np.ndarray, within: Path | None = None) -> Path:
    """Write an H x W x 3 uint8 overlay as a PNG, atomically (a kill never leaves half a file)."""
    from PIL import Image

    from ..rundir.files import atomic_write

    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise DataError(f"save_overlay takes an H x W x 3 uint8 image (from overlay), got {arr.dtype} {arr.shape}")
    out = Path(path)
    atomic_write(out, lambda f: Image.fromarray(np.ascontiguousarray(arr)).save(f, format="PNG"), within)
    return out
