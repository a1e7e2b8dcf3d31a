"""Method `bcl` on the one training loop: the step draws its contrastive views from the stage's own train
pipeline, calls the `bcl` loss once, optimises a tiny model, and a whole run trains, resumes exactly and
serves plain logits."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import longtail
from longtail import rundir
from longtail.catalog.check import load_config
from longtail.core.errors import ConfigError, LongtailError
from longtail.core.registry import METHODS
from longtail.core.schema import Component, ModelConfig
from longtail.data import build_pipeline
from longtail.engine.steps import default_step
from longtail.losses import create
from longtail.models.build import build_model
from longtail.training import loading

from ..helpers import tiny_config, weights_after_each_stop

COUNTS = [40, 20, 10, 5]
C = len(COUNTS)
TRANSFORMS = [Component(name="random_crop", size=16, padding=2), Component(name="hflip", p=0.5)]


def fake_trainer() -> SimpleNamespace:
    """What the step reads from the Trainer: the stage's train pipeline and train.channels_last."""
    pipeline = build_pipeline(TRANSFORMS, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25], train=True)
    return SimpleNamespace(train_pipeline=pipeline, cfg=SimpleNamespace(train=SimpleNamespace(channels_last=False)))


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(name="small_cnn", widths=[8, 16], contrastive={"dim": 8}), C, 3, COUNTS)


def synthetic_batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images whose class sets the mean colour of one channel (learnable in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % C
    base = torch.full((n, 3, 16, 16), 60.0)
    base[torch.arange(n), y % 3] += 80.0 + 40.0 * (y // 3)[:, None, None]
    return (base + 20 * torch.randn(n, 3, 16, 16, generator=g)).clamp(0, 255).to(torch.uint8), y


def step_loss(step, model, trainer, loss, raw, y) -> torch.Tensor:
    x = trainer.train_pipeline.batch(raw)
    return step(model=model, x=x, y=y, loss_fn=loss, mixing=None, trainer=trainer, raw=raw)


def test_the_step_forwards_the_batch_and_its_views_once_and_calls_the_loss_once():
    model, trainer, raw, y = tiny_model().train(), fake_trainer(), *synthetic_batch(8)
    seen, calls = [], []
    model.backbone.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    loss = create("bcl", COUNTS)
    original = loss.forward

    def spy(*args, **kwargs):
        calls.append(kwargs["projections"].shape)
        return original(*args, **kwargs)

    loss.forward = spy
    step = METHODS.create("bcl", views=3)
    assert step.needs_raw_batch
    value = step_loss(step, model, trainer, loss, raw, y)
    assert seen == [8 * 4] and calls == [(8, 3, 8)] and value.ndim == 0 and torch.isfinite(value)


def test_one_optimisation_step_updates_every_part_and_a_few_lower_the_loss():
    model, trainer, raw, y = tiny_model().train(), fake_trainer(), *synthetic_batch()
    loss = create("bcl", COUNTS, alpha=1.0, beta=0.5, temperature=0.1)
    step = METHODS.create("bcl")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    values = []
    for i in range(30):
        torch.manual_seed(100 + i)  # the views' random crops and flips
        value = step_loss(step, model, trainer, loss, raw, y)
        opt.zero_grad()
        value.backward()
        opt.step()
        values.append(float(value.detach()))
        if i == 0:
            for prefix in ("backbone.", "head.", "contrastive.projection.", "contrastive.centers."):
                assert any(not torch.equal(p, before[k]) for k, p in model.named_parameters() if k.startswith(prefix)), prefix
    assert np.mean(values[-5:]) < 0.8 * np.mean(values[:5]), values


def test_a_loss_without_contrast_gets_the_standard_step():
    model, trainer, raw, y = tiny_model().train(), fake_trainer(), *synthetic_batch(8)
    x = trainer.train_pipeline.batch(raw)
    loss = create("ce", COUNTS)
    expected = default_step(model, x, y, loss)
    assert torch.equal(METHODS.create("bcl")(model=model, x=x, y=y, loss_fn=loss, trainer=trainer, raw=raw), expected)


def test_mixing_views_and_missing_inputs_are_one_line_errors():
    model, trainer, raw, y = tiny_model().train(), fake_trainer(), *synthetic_batch(8)
    x, loss, step = trainer.train_pipeline.batch(raw), create("bcl", COUNTS), METHODS.create("bcl")
    mixing = METHODS.create("mixup", alpha=1.0, class_counts=COUNTS)
    for call, error, text in [
        (lambda: step(model=model, x=x, y=y, loss_fn=loss, mixing=mixing, trainer=trainer, raw=raw), ConfigError, "train.mixing"),
        (lambda: step(model=model, x=x, y=y, loss_fn=loss, trainer=trainer), LongtailError, "raw batch"),
        (lambda: METHODS.create("bcl", views=0), ConfigError, "views"),
        (lambda: step_loss(step, build_model(ModelConfig(name="small_cnn", widths=[8, 16]), C, 3, COUNTS), trainer, loss, raw, y),
         ConfigError, "model.contrastive"),
    ]:
        with pytest.raises(error, match=text) as info:
            call()
        assert "\n" not in str(info.value)


def bcl_config(tmp_path, name="bcl", **sections):
    return tiny_config(
        tmp_path, name=name,
        data={"train_transforms": [{"name": "random_crop", "size": 8, "padding": 1}, {"name": "hflip", "p": 0.5}]},
        model={"name": "small_cnn", "contrastive": {"dim": 8}},
        loss={"name": "bcl", "beta": 0.5, "temperature": 0.1},
        method={"name": "bcl"},
        **sections,
    )


def test_a_config_without_the_branch_is_refused_before_training(tmp_path):
    raw = bcl_config(tmp_path)
    raw["model"] = {"name": "small_cnn"}
    with pytest.raises(ConfigError, match="method bcl.*model.contrastive: {dim: 128}") as info:
        load_config(raw=raw)
    assert "\n" not in str(info.value)


def test_a_bcl_run_then_a_crt_stage_trains_and_serves_plain_logits(tmp_path):
    cfg = bcl_config(tmp_path, stages=[
        {"name": "bcl", "epochs": 1},
        {"name": "crt", "epochs": 1, "freeze_backbone": True, "reinit_head": True, "loss": {"name": "ce"}, "sampler": {"name": "class_balanced"}},
    ])
    result = longtail.train(cfg)
    assert result.finished
    rows = [json.loads(line) for line in (result.run_dir / rundir.METRICS).read_text().splitlines()]
    assert [r["loss"] for r in rows] == ["bcl", "ce"] and all(np.isfinite(r["train_loss"]) for r in rows)
    run_cfg = load_config(result.run_dir / rundir.CONFIG)
    data = loading.read_data_meta(result.run_dir)
    model = loading.load_model(result.run_dir, run_cfg, len(data["class_names"]), data["channels"], data["train_counts"], torch.device("cpu"))
    assert model.contrastive is not None and any(k.startswith("contrastive.centers.") for k in model.state_dict())
    x = torch.randn(3, data["channels"], 8, 8)
    with torch.no_grad():
        out = model(x)
        assert isinstance(out, torch.Tensor) and out.shape == (3, len(data["class_names"]))
        assert torch.equal(model(x, return_contrast=True).logits, out)


def test_resume_is_exact(tmp_path):
    _, (whole,) = weights_after_each_stop(bcl_config(tmp_path / "a", "whole", train={"epochs": 2, "progress": False, "tensorboard": False}), [None])
    _, (_, resumed) = weights_after_each_stop(bcl_config(tmp_path / "b", "resumed", train={"epochs": 2, "progress": False, "tensorboard": False}), [1, None])
    assert whole.keys() == resumed.keys() and any(k.startswith("contrastive.") for k in whole)
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
