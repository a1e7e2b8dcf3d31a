"""longtail.models: backbones (registered in ``MODELS``), heads, ``Classifier``, BBN, DropBlock, weights.

See docs/architecture.md ("Model contract"). Importing this package registers every backbone.
"""

from . import packaged, resnet, ride, small_cnn, timm_backbone, torchvision_backbone, video  # noqa: F401  (registration)
from .bbn import BBNClassifier, BilateralBackbone, bbn_alpha
from .build import build_model
from .classifier import Classifier, count_parameters
from .dropblock import DropBlock2d, drop_block
from .experts import ExpertBackbone, ExpertHeads, ExpertOutput
from .heads import CosineHead, LinearHead, LWSHead, ScaledLinearHead, log_prior, make_head, tau_normalize
from .input_spec import InputSpec, data_for_model, input_spec
from .metadata import MetadataMLP
from .packaged import PackagedSource, get_source, load_packaged_weights
from .provenance import sha256_file, weights_record
from .resnet import BasicBlock, ResNet
from .staged import StagedBackbone, global_pool
from .weights import adapt_conv_weight, load_backbone_weights, load_checkpoint_weights, read_weights_file

__all__ = [
    "BBNClassifier",
    "BasicBlock",
    "BilateralBackbone",
    "Classifier",
    "CosineHead",
    "InputSpec",
    "PackagedSource",
    "DropBlock2d",
    "ExpertBackbone",
    "ExpertHeads",
    "ExpertOutput",
    "LWSHead",
    "LinearHead",
    "MetadataMLP",
    "ResNet",
    "ScaledLinearHead",
    "StagedBackbone",
    "adapt_conv_weight",
    "bbn_alpha",
    "build_model",
    "count_parameters",
    "data_for_model",
    "drop_block",
    "get_source",
    "global_pool",
    "input_spec",
    "load_backbone_weights",
    "load_checkpoint_weights",
    "load_packaged_weights",
    "log_prior",
    "make_head",
    "read_weights_file",
    "sha256_file",
    "tau_normalize",
    "weights_record",
]
