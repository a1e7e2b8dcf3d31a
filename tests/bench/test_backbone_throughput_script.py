"""benchmarks/backbone_throughput.py on tiny batches: each setting really runs in its layout and precision, the
table's `auto` column is engine/precision.py's rule, and --no-docs leaves the docs alone."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from longtail.core.schema import ModelConfig
from longtail.engine.precision import DeviceFacts, choose_precision, depthwise_share
from longtail.models import build_model

from .test_gpu_protocol_smoke import ROOT


@pytest.fixture
def script(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the script imports doc_blocks beside it
    spec = importlib.util.spec_from_file_location("backbone_throughput_script", ROOT / "benchmarks" / "backbone_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_setting_trains_in_its_layout_and_precision(script):
    config = ModelConfig(name="small_cnn")
    setting = script.Setting(config, "bf16", True, batch=2, size=16)
    assert setting.x.is_contiguous(memory_format=torch.channels_last)
    before = [p.detach().clone() for p in setting.model.parameters()]
    assert setting.step_seconds() > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, setting.model.parameters())), "the AdamW step moved no weight"
    seen = []
    handle = setting.model.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    setting.step_seconds()
    handle.remove()
    assert seen == [torch.bfloat16]  # the forward ran under bf16 autocast
    plain = script.Setting(config, "32", False, batch=2, size=16)
    assert not plain.x.is_contiguous(memory_format=torch.channels_last)


def test_the_auto_column_follows_the_rule_for_every_backbone(script):
    amx_cpu = DeviceFacts("cpu", cpu_flags=frozenset({"amx_bf16"}))
    picks = {name: choose_precision(amx_cpu, depthwise_share(build_model(config, script.CLASSES, 3)))[0]
             for name, config in script.BACKBONES.items()}
    # on an AMX CPU: float32 for the depthwise-heavy Lite models, bf16 for the dense ResNet-18 and RegNet (grouped, not depthwise)
    assert picks == {"EfficientNet-Lite0 (timm)": "32", "EfficientNet-Lite1 (timm)": "32", "EfficientNet-Lite2 (timm)": "32",
                     "ResNet-18 (torchvision)": "bf16", "RegNetY-400MF (torchvision)": "bf16"}
    resnet = script.BACKBONES["ResNet-18 (torchvision)"]
    assert script.auto_choice(resnet) == choose_precision(script.device_facts(torch.device("cpu")), 0.0)[0]


def test_main_prints_one_row_and_leaves_the_docs_alone(script, monkeypatch, capsys):
    doc = ROOT / "docs" / "benchmarks.md"
    before = doc.read_text()
    monkeypatch.setattr(sys, "argv", ["backbone_throughput.py", "--size", "32", "--batch", "2", "--rounds", "1", "--threads", "1",
                                      "--only", "lite0", "--no-docs"])
    script.main()
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| EfficientNet")]
    assert len(rows) == 1
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    name, fastest, auto, *rates, ratio = cells
    assert name == "EfficientNet-Lite0 (timm)"
    # which setting wins is the machine's to say (bf16 can win on an AMX CPU), so the row is checked for
    # consistency: the fastest is one of the four settings, its rate is the largest, the ratio is its rate over fp32 NCHW
    labels = [label for label, _, _ in script.SETTINGS]
    assert fastest in labels and len(rates) == len(labels)
    values = dict(zip(labels, map(float, rates)))
    assert values[fastest] == max(values.values())
    assert float(ratio) == pytest.approx(values[fastest] / values["fp32 NCHW"], abs=0.02)
    assert auto == ("bf16" if script.auto_choice(script.BACKBONES[name]) == "bf16" else "fp32")
    assert doc.read_text() == before


def test_an_unknown_backbone_is_a_one_line_error(script, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["backbone_throughput.py", "--only", "vgg", "--no-docs"])
    with pytest.raises(SystemExit, match="--only 'vgg' matches no backbone; choose among EfficientNet-Lite0"):
        script.main()
