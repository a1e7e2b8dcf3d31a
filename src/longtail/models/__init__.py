"""longtail.models: backbones (registered in ``MODELS``), heads, ``Classifier``, BBN, DropBlock, weights.

See docs/architecture.md ("Model contract"). Importing this package registers every backbone.
"""

from . import resnet, small_cnn, timm_backbone, torchvision_backbone, video  # noqa: F401  (registration)
from .bbn import BBNClassifier, BilateralBackbone, bbn_alpha
from .build import build_model
from .classifier import Classifier, count_parameters
from .dropblock import DropBlock2d, drop_block
from .heads import CosineHead, LinearHead, LWSHead, log_prior, make_head, tau_normalize
from .resnet import BasicBlock, ResNet
from .staged import StagedBackbone, global_pool
from .weights import (
    adapt_conv_weight,
    load_backbone_weights,
    load_checkpoint_weights,
    read_weights_file,
)

__all__ = [
    "BBNClassifier",
    "BasicBlock",
    "BilateralBackbone",
    "Classifier",
    "CosineHead",
    "DropBlock2d",
    "LWSHead",
    "LinearHead",
    "ResNet",
    "StagedBackbone",
    "adapt_conv_weight",
    "bbn_alpha",
    "build_model",
    "count_parameters",
    "drop_block",
    "global_pool",
    "load_backbone_weights",
    "load_checkpoint_weights",
    "log_prior",
    "make_head",
    "read_weights_file",
    "tau_normalize",
]
