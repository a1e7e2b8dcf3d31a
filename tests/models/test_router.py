"""RIDE's expert-assignment router (models/router.py, losses/ride.py ride_router, stages[].train_only: router)
against transcriptions of the official ea_resnet_cifar.py (frank-xwang/RIDE-LongTailRecognition)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from longtail import rundir
from longtail.catalog.check import load_config
from longtail.core.errors import ConfigError
from longtail.core.schema import ModelConfig, StageConfig
from longtail.losses import create
from longtail.losses.ride import router_targets
from longtail.models import build_model
from longtail.models.router import ExpertRouter, experts_used, routed_logits
from longtail.training import loading

from ..helpers import tiny_config, weights_after_each_stop

COUNTS = [40, 20, 10, 5, 2]
C = len(COUNTS)


def router_model(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(name="ride_resnet32", head="cosine", num_experts=3, blocks=1, router=True, router_top_choices=3, **kwargs), C, 3, COUNTS)


def official_targets(experts: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ea_resnet_cifar.py's training loop: output += expert i, correctness[:, i] = argmax == target, then the targets."""
    n, e, _ = experts.shape
    output = np.zeros_like(experts[:, 0])
    correctness = np.zeros((n, e), dtype=bool)
    for i in range(e):
        output = output + experts[:, i]
        correctness[:, i] = output.argmax(1) == y
    return np.stack([~correctness[:, i] & correctness[:, i + 1:].any(1) for i in range(e - 1)], axis=1)


def official_routing(experts: np.ndarray, router: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ea_resnet_cifar.py's test-time loop: each image adds expert i only while every router so far says yes."""
    n, e, _ = experts.shape
    expert_next = np.ones(n, dtype=bool)
    count = np.ones(n, dtype=np.int64)
    output = experts[:, 0].copy()
    for i in range(1, e):
        expert_next[expert_next.copy()] = 1 / (1 + np.exp(-router[expert_next, i - 1])) > 0.5
        if not expert_next.any():
            break
        output[expert_next] += experts[expert_next, i]
        count[expert_next] += 1
    return output / count[:, None], count


def test_targets_and_routing_are_the_officials():
    g = torch.Generator().manual_seed(0)
    experts = torch.randn(64, 4, C, generator=g)
    y = torch.randint(0, C, (64,), generator=g)
    assert np.array_equal(router_targets(experts, y).numpy(), official_targets(experts.numpy(), y.numpy()))
    router = torch.randn(64, 3, generator=g)
    logits, count = official_routing(experts.numpy(), router.numpy())
    assert np.allclose(routed_logits(experts, router).numpy(), logits, atol=1e-6)
    assert np.array_equal(experts_used(router).numpy(), count) and set(count.tolist()) == {1, 2, 3, 4}


def test_router_logits_are_the_officials_pred_expert_help():
    router = ExpertRouter(3, 6, C, hidden=4, top_choices=3)
    g = torch.Generator().manual_seed(1)
    features, experts = torch.randn(5, 3, 6, generator=g), torch.randn(5, 3, C, generator=g)
    out = router(features, experts)
    for i in range(2):  # pred_expert_help((feat_i, output / (i + 1)), i) with the shared expert_help_pred_fc
        f = features[:, i] / features[:, i].norm(dim=1, keepdim=True)
        hidden = F.relu(router.hidden[i](f))
        top = torch.topk(experts[:, : i + 1].sum(1) / (i + 1), k=3, dim=1).values
        assert torch.allclose(out[:, i], router.output[0](torch.cat([top, hidden], 1)).view(-1), atol=1e-6)


def test_the_loss_is_the_officials_bce():
    g = torch.Generator().manual_seed(2)
    experts, router = torch.randn(16, 3, C, generator=g), torch.randn(16, 2, generator=g)
    y = torch.randint(0, C, (16,), generator=g)
    loss = create("ride_router", COUNTS, pos_weight=100.0)
    wanted = torch.as_tensor(official_targets(experts.numpy(), y.numpy())).float()
    expected = sum(F.binary_cross_entropy_with_logits(router[:, i], wanted[:, i], pos_weight=torch.tensor([100.0])) for i in range(2)) / 2
    assert loss(experts.mean(1), y, experts=experts, router=router).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ConfigError, match="train_only: router"):
        loss(experts.mean(1), y, experts=experts)
    with pytest.raises(ConfigError, match="pos_weight"):
        create("ride_router", COUNTS, pos_weight=0.0)


def test_routing_needs_the_router_stage_and_eval_mode():
    model = router_model().eval()
    x = torch.randn(6, 3, 8, 8)
    out = model(x, return_experts=True)
    assert out.router is None and torch.allclose(model(x), out.experts.mean(1))  # off until its stage
    model.train_only_router(True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.router.") for n in trainable)
    assert not model.backbone.training or not model.training  # a frozen backbone stays in eval mode
    model.eval()
    out = model(x, return_experts=True)
    assert out.router.shape == (6, 2) and torch.allclose(model(x), routed_logits(out.experts, out.router))
    model.train()
    assert torch.allclose(model(x, return_experts=True).logits, out.experts.mean(1), atol=1e-6)  # training sees every expert
    model.train_only_router(False)
    assert not any(p.requires_grad for p in model.head.router.parameters()) and all(p.requires_grad for p in model.head.experts.parameters())


def test_one_line_config_errors():
    with pytest.raises(ConfigError, match="between 1 and the number of classes"):
        build_model(ModelConfig(name="ride_resnet32", head="cosine", blocks=1, router=True, router_top_choices=30), C, 3, COUNTS)
    plain = build_model(ModelConfig(name="ride_resnet32", head="cosine", blocks=1), C, 3, COUNTS)
    with pytest.raises(ConfigError, match="model.router: true"):
        plain.train_only_router(True)
    with pytest.raises(ValueError, match="freezes everything but the router"):
        StageConfig(epochs=1, train_only="router", freeze_backbone=True)
    assert load_config("configs/cifar10_lt/ride_ea.yaml").resolved_stages()[1].train_only == "router"


def test_a_tiny_run_trains_the_router_alone_and_evaluation_routes(tmp_path):
    cfg = tiny_config(
        tmp_path, name="ride_ea",
        model={"name": "ride_resnet32", "num_experts": 3, "blocks": 1, "head": "cosine", "router": True, "router_top_choices": 5},
        loss={"name": "ride"},
        stages=[{"name": "ride", "epochs": 2},
                {"name": "router", "epochs": 2, "train_only": "router", "loss": {"name": "ride_router"}, "sampler": {"name": "class_balanced"}}],
    )
    run_dir, (before, _) = weights_after_each_stop(cfg, [2, None])  # paused after the experts' two epochs, then the router's
    results = rundir.read_json(run_dir / rundir.RESULTS)
    rows = [json.loads(line) for line in (run_dir / rundir.METRICS).read_text().splitlines()]
    assert [r["loss"] for r in rows] == ["ride", "ride", "ride_router", "ride_router"]
    run_cfg = load_config(run_dir / rundir.CONFIG)
    data = loading.read_data_meta(run_dir)
    model = loading.load_model(run_dir, run_cfg, len(data["class_names"]), data["channels"], data["train_counts"], torch.device("cpu"))
    assert not bool(before["head.router.active"])  # off while the experts trained
    # the router stage moves nothing but the router
    moved = [key for key, value in before.items() if not torch.equal(model.state_dict()[key], value)]
    assert moved and all(key.startswith("head.router.") for key in moved)
    assert bool(model.head.router.active)
    # the saved test logits are the routed ones: the mean of the experts each image used
    saved = rundir.load_predictions(run_dir, "test")
    mean, std = (torch.tensor(data[k]).view(1, -1, 1, 1) for k in ("norm_mean", "norm_std"))
    bundle, _ = loading.build_run_data(run_cfg, loading.saved_splits(run_dir, run_cfg))
    x = bundle.test.images[torch.as_tensor(bundle.test.index)] if bundle.test.index is not None else bundle.test.images
    model.eval()
    with torch.no_grad():
        out = model((x.float() / 255 - mean) / std, return_experts=True)
    assert np.allclose(saved["logits"], routed_logits(out.experts, out.router).numpy(), atol=1e-4)
    # results.json reports how many experts the test images used and what that would cost
    routing = results["routing"]
    used = experts_used(out.router).float()
    assert routing["experts"] == 3 and routing["experts_per_image"] == pytest.approx(float(used.mean()))
    assert routing["reach"] == pytest.approx([float((used > e).float().mean()) for e in range(3)]) and routing["reach"][0] == 1.0
    assert 0 < routing["mflops_per_image"] <= routing["mflops_all_experts"]


def test_a_run_whose_router_never_trained_reports_no_routing(tmp_path):
    model = router_model()
    assert not bool(model.head.router.active)
    from longtail.engine.inference import routing_summary

    assert routing_summary(model, None, None, torch.device("cpu"), 4) is None
