"""`model.contrastive` (BCL's projection and class-centre MLPs beside the head): plain calls unchanged, the
contrastive output only on request, gradients to every part, checkpoints that keep the MLPs, one-line refusals."""

from __future__ import annotations

import pytest
import torch

from longtail.core.errors import ConfigError
from longtail.core.schema import ModelConfig
from longtail.losses import create
from longtail.models.build import build_model
from longtail.models.contrastive import ContrastiveHeads, ContrastOutput
from longtail.rundir.checkpoint import config_hash, load_checkpoint, save_checkpoint

COUNTS = [40, 20, 10, 5]
C = len(COUNTS)


def model(contrastive: dict | None = None, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(name="small_cnn", widths=[8, 16], contrastive=contrastive, **kw), C, 3, COUNTS)


def images(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_plain_calls_give_the_same_logits_with_and_without_the_branch():
    plain, with_branch = model().eval(), model({"dim": 8}).eval()
    shared = {k: v for k, v in with_branch.state_dict().items() if not k.startswith("contrastive.")}
    plain.load_state_dict(shared)  # strict: the branch is the only difference
    x = images()
    with torch.no_grad():
        assert torch.equal(plain(x), with_branch(x))
        logits, features = with_branch(x, return_features=True)
        ref_logits, ref_features = plain(x, return_features=True)
        out = with_branch(x, return_contrast=True)
    assert torch.equal(logits, ref_logits) and torch.equal(features, ref_features)
    assert isinstance(out, ContrastOutput) and torch.equal(out.logits, logits) and torch.equal(out.features, features)


def test_contrast_output_is_unit_projections_and_centres_of_the_head_weights():
    m = model({"dim": 8, "hidden": 12}).train()
    assert isinstance(m.contrastive, ContrastiveHeads) and m.contrastive.hidden == 12
    out = m(images(), return_contrast=True)
    assert out.projections.shape == (6, 8) and out.centers.shape == (C, 8)
    assert torch.allclose(out.projections.norm(dim=1), torch.ones(6)) and torch.allclose(out.centers.norm(dim=1), torch.ones(C))
    by_hand = torch.nn.functional.normalize(m.contrastive.centers(m.head.weight), dim=1)
    assert torch.allclose(out.centers, by_hand)
    assert model({"dim": 8}).contrastive.hidden == m.feature_dim  # the default hidden width: the features', as BCLModel


def test_bcl_gradient_reaches_the_projection_and_centre_mlps_the_head_and_the_backbone():
    m = model({"dim": 8}).train()
    x, y = images(8), torch.tensor([0, 1, 2, 0, 1, 0, 3, 0])
    out = m(torch.cat([x, x.flip(3), x.flip(2)]), return_contrast=True)
    projections = out.projections[8:].reshape(2, 8, -1).transpose(0, 1)
    create("bcl", COUNTS)(out.logits[:8], y, projections=projections, centers=out.centers).backward()
    for part in (m.contrastive.projection, m.contrastive.centers, m.head, m.backbone):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads), part


def test_freeze_backbone_freezes_the_branch_and_the_head_stays_last():
    m = model({"dim": 8})
    m.freeze_backbone(True)
    assert not any(p.requires_grad for p in m.contrastive.parameters()) and all(p.requires_grad for p in m.head.parameters())
    m.freeze_backbone(False)
    assert all(p.requires_grad for p in m.contrastive.parameters())
    names = [n for n, _ in m.named_parameters()]
    assert names[-1].startswith("head.") and names.index("contrastive.projection.0.weight") < names.index("head.weight")


def test_checkpoint_round_trip_keeps_the_mlps(tmp_path):
    m = model({"dim": 8}).train()
    m(images(), return_contrast=True)  # a training pass moves the MLPs' BatchNorm statistics
    with torch.no_grad():
        m.contrastive.centers[0].weight.add_(1.0)
    path = tmp_path / "last.pt"
    cfg = ModelConfig(name="small_cnn", widths=[8, 16], contrastive={"dim": 8})
    save_checkpoint(path, {"model": m.state_dict()}, model_name="small_cnn", class_names=list("abcd"),
                    config_hash=config_hash(cfg.model_dump(mode="json")))
    state = load_checkpoint(path)["model"]
    assert any(k.startswith("contrastive.centers.") for k in state) and any(k.startswith("contrastive.projection.") for k in state)
    fresh = model({"dim": 8})
    fresh.load_state_dict(state)  # strict
    for key, value in m.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
    x = images()
    m.eval(), fresh.eval()
    with torch.no_grad():
        a, b = m(x, return_contrast=True), fresh(x, return_contrast=True)
    assert torch.equal(a.projections, b.projections) and torch.equal(a.centers, b.centers)


def test_unset_branch_keeps_the_config_hash_and_the_state_dict():
    assert config_hash(ModelConfig(name="small_cnn").model_dump(mode="json")) == config_hash({"name": "small_cnn", **{
        k: v for k, v in ModelConfig(name="small_cnn").model_dump(mode="json").items() if k != "contrastive"}})
    assert not any(k.startswith("contrastive") for k in model().state_dict())
    assert config_hash(ModelConfig(name="small_cnn", contrastive={"dim": 8}).model_dump(mode="json")) != config_hash(
        ModelConfig(name="small_cnn").model_dump(mode="json"))


def test_refusals_are_one_line_config_errors():
    with pytest.raises(ConfigError, match="model.contrastive: {dim: 128}") as info:
        model()(images(), return_contrast=True)
    assert "\n" not in str(info.value)
    cases = [
        (ModelConfig(name="ride_resnet32", num_experts=2, blocks=1, head="cosine", contrastive={"dim": 8}), "multi-expert"),
        (ModelConfig(name="bbn_resnet32", contrastive={"dim": 8}), "BBN"),
    ]
    for cfg, what in cases:
        with pytest.raises(ConfigError, match=f"{what}.*model.contrastive") as info:
            build_model(cfg, C, 3, COUNTS)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        build_model(ModelConfig(name="small_cnn", contrastive={"dim": 8}), 1, 3, [5])
    m = model({"dim": 8})
    m.set_head("lws")  # LWS keeps the trained class vectors (frozen): the centres come from them
    assert m(images(), return_contrast=True).centers.shape == (C, 8)
