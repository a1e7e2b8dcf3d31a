"""The schema reads a recipe without the registries; the catalog, one layer up, checks its names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from longtail.catalog.check import load_config
from longtail.core.config import read_config
from longtail.core.errors import ConfigError

RAW = {"name": "t", "data": {"source": {"name": "digits"}}, "model": {"name": "small_cnn"}, "loss": {"name": "ldam", "max_margn": 0.5}}


def test_the_schema_accepts_what_only_the_registries_can_refuse():
    cfg = read_config(raw=RAW)  # a misspelt kwarg is a constructor question, not a schema one
    assert cfg.loss.name == "ldam" and cfg.loss.kwargs == {"max_margn": 0.5}


def test_load_config_names_the_bad_kwarg_and_the_closest_valid_one():
    with pytest.raises(ConfigError) as e:
        load_config(raw=RAW)
    assert "loss.max_margn" in str(e.value) and "did you mean 'max_margin'" in str(e.value)


def test_an_unknown_component_name_is_one_line_with_a_suggestion():
    raw = {**RAW, "loss": {"name": "focall"}}
    with pytest.raises(ConfigError) as e:
        load_config(raw=raw)
    text = str(e.value)
    assert text.startswith("<dict>: loss.name: unknown loss 'focall'") and "'focal'" in text and "\n" not in text


def test_an_unregistered_packaged_weight_name_is_refused_by_the_catalog():
    raw = {**RAW, "loss": {"name": "ce"}, "model": {"name": "small_cnn", "pretrained": "efficientnet_lite9"}}
    assert read_config(raw=raw).model.pretrained == "efficientnet_lite9"
    with pytest.raises(ConfigError) as e:
        load_config(raw=raw)
    assert "'efficientnet_lite9' is not a packaged weight source" in str(e.value) and "efficientnet_lite0" in str(e.value)


def test_the_schema_imports_no_component_and_no_torch():
    code = (
        "import sys\n"
        "from longtail.core.config import read_config\n"
        "read_config(raw={'name': 't', 'data': {'source': {'name': 'digits'}}})\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('longtail.'))\n"
        "print('torch' in sys.modules, loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    torch_loaded, loaded = out.stdout.strip().split(" ", 1)
    assert torch_loaded == "False"
    assert eval(loaded) == ["longtail.core", "longtail.core.config", "longtail.core.errors", "longtail.core.schema"]
