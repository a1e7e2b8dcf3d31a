"""Config loading: overrides, one-line errors naming key, file and closest valid key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from longtail.catalog.check import load_config
from longtail.core.config import apply_overrides
from longtail.core.errors import ConfigError

BASE = {"data": {"source": {"name": "digits"}}, "model": {"name": "small_cnn"}}


def write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def error_of(tmp_path: Path, data: dict, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data), overrides)
    msg = str(info.value)
    assert "\n" not in msg, "errors must be one line"
    return msg


def test_overrides_set_nested_keys_with_yaml_types(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["train.epochs=3", "loss.name=focal", "loss.gamma=2", "optimizer.lr=0.01", "data.image_size=[8, 8]"])
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.loss.name == "focal" and cfg.loss.kwargs == {"gamma": 2}
    assert cfg.optimizer.lr == pytest.approx(0.01)
    assert cfg.data.image_size == (8, 8)


def test_override_into_list_by_index():
    raw = {"stages": [{"epochs": 1}, {"epochs": 2}]}
    assert apply_overrides(raw, ["stages.1.epochs=5"])["stages"][1]["epochs"] == 5
    with pytest.raises(ConfigError, match="has 2 items"):
        apply_overrides(raw, ["stages.4.epochs=5"])


def test_typo_in_top_level_key_names_file_and_closest_key(tmp_path):
    msg = error_of(tmp_path, {**BASE, "trian": {"epochs": 2}})
    assert "cfg.yaml" in msg and "'trian'" in msg and "did you mean 'train'" in msg


def test_typo_in_nested_key(tmp_path):
    msg = error_of(tmp_path, BASE, ["train.epohcs=3"])
    assert "train.epohcs" in msg and "did you mean 'epochs'" in msg


def test_wrong_type_names_key_and_value(tmp_path):
    msg = error_of(tmp_path, BASE, ["train.epochs=many"])
    assert "train.epochs" in msg and "'many'" in msg and "integer" in msg


def test_unknown_component_names_closest(tmp_path):
    msg = error_of(tmp_path, BASE, ["loss.name=focall"])
    assert "unknown loss 'focall'" in msg and "did you mean 'focal'" in msg and "longtail list losses" in msg


def test_bad_component_kwarg_checked_against_constructor(tmp_path):
    msg = error_of(tmp_path, {**BASE, "loss": {"name": "ldam", "max_margn": 0.5}})
    assert "loss.max_margn" in msg and "did you mean 'max_margin'" in msg


def test_bad_stage_component(tmp_path):
    msg = error_of(tmp_path, {**BASE, "stages": [{"epochs": 1}, {"epochs": 1, "sampler": {"name": "class_balance"}}]})
    assert "stages.1.sampler" in msg and "did you mean 'class_balanced'" in msg


def test_missing_config_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_names_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data:\n  source: {name: digits\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_missing_required_section(tmp_path):
    msg = error_of(tmp_path, {"model": {"name": "small_cnn"}})
    assert "missing required key 'data'" in msg


def test_stages_inherit_top_level_sections(tmp_path):
    cfg = load_config(write(tmp_path, {**BASE, "loss": {"name": "focal", "gamma": 1}, "stages": [{"epochs": 2}, {"epochs": 1, "loss": {"name": "ce"}, "reinit_head": True}]}))
    s1, s2 = cfg.resolved_stages()
    assert s1.loss.name == "focal" and s1.loss.kwargs == {"gamma": 1}
    assert s2.loss.name == "ce" and s2.reinit_head and s2.sampler.name == "instance"


def test_cli_config_show_prints_resolved_config_and_errors_without_traceback(tmp_path):
    p = write(tmp_path, BASE)
    ok = subprocess.run([sys.executable, "-m", "longtail.cli", "config", "show", "-c", str(p), "train.epochs=7"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert yaml.safe_load(ok.stdout)["train"]["epochs"] == 7
    bad = subprocess.run([sys.executable, "-m", "longtail.cli", "config", "show", "-c", str(p), "trian.epochs=7"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
