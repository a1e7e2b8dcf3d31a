"""BBN's cumulative-learning alpha against the official combiners (issue 25), both options.

- BBN: Megvii-Nanjing/BBN (formerly megvii-research/BBN), commit
  7992e908842f5934f0d1ee3f430d796621e81975, ``lib/core/combiner.py``: ``div_epoch = 100 *
  (epoch_number // 100 + 1)`` if ``epoch_number in [90, 180]`` else ``epoch_number``; ``bbn_mix``:
  ``l = 1 - ((epoch - 1) / div_epoch) ** 2``, with 1-based epochs (``main/train.py``: ``for epoch in
  range(start_epoch, epoch_number + 1)``, ``start_epoch = 1``). Its iNaturalist configs
  (``configs/iNaturalist2017.yaml``, ``configs/iNaturalist2018.yaml``) set ``MAX_EPOCH: 180``.
- MBIT: yaopengUSTC/mbit-skin-cancer, commit a82a87b2abebaf724dbe2a7b7e833c434c1b56a0,
  ``lib/core/combiner.py``: ``div_epoch = max_epoch``; ``l = 1 - ((epoch - 1) / div_epoch) ** 2`` if
  ``epoch < div_epoch`` else ``0.0`` (1-based epochs, ``main/train.py``).

longtail: ``method: {name: bbn, alpha_divisor: bbn | epochs, alpha_last_epoch: parabola | zero}``;
defaults ``bbn`` and ``parabola`` (official BBN).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import longtail
from longtail.catalog.check import load_config
from longtail.core.errors import ConfigError
from longtail.core.registry import METHODS
from longtail.engine import steps  # noqa: F401 - registers the bbn step
from longtail.models.bbn import BBNClassifier, bbn_alpha, bbn_alpha_divisor

from ..helpers import tiny_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EPOCHS = [8, 90, 180]


# ----------------------------------------------------------------- the official formulas, written out
def official_bbn(epoch: int, epoch_number: int) -> float:
    if epoch_number in [90, 180]:
        div_epoch = 100 * (epoch_number // 100 + 1)
    else:
        div_epoch = epoch_number
    return 1 - ((epoch - 1) / div_epoch) ** 2


def official_mbit(epoch: int, max_epoch: int) -> float:
    div_epoch = max_epoch
    if epoch < div_epoch:
        return 1 - ((epoch - 1) / div_epoch) ** 2
    return 0.0


def step_alphas(max_epoch: int, **kwargs: str) -> list[float]:
    """The alpha the bbn training step uses in each 1-based epoch (the trainer calls on_epoch_start(e, E))."""
    step = METHODS.create("bbn", **kwargs)
    out = []
    for epoch in range(1, max_epoch + 1):
        step.on_epoch_start(epoch, max_epoch)
        out.append(step.alpha)
    return out


@pytest.mark.parametrize("max_epoch", EPOCHS)
def test_default_and_bbn_options_are_official_bbn(max_epoch):
    official = [official_bbn(e, max_epoch) for e in range(1, max_epoch + 1)]
    assert step_alphas(max_epoch) == official  # exact: the same arithmetic
    assert step_alphas(max_epoch, alpha_divisor="bbn", alpha_last_epoch="parabola") == official
    assert [bbn_alpha(e, max_epoch) for e in range(1, max_epoch + 1)] == official


@pytest.mark.parametrize("max_epoch", EPOCHS)
def test_epochs_divisor_and_zero_last_epoch_are_mbit(max_epoch):
    official = [official_mbit(e, max_epoch) for e in range(1, max_epoch + 1)]
    assert step_alphas(max_epoch, alpha_divisor="epochs", alpha_last_epoch="zero") == official
    assert official[-1] == 0.0 and official[0] == 1.0


@pytest.mark.parametrize("max_epoch", EPOCHS)
def test_the_options_one_at_a_time(max_epoch):
    # alpha_divisor epochs alone: the formula divided by E (the step's arithmetic before the options)
    plain = step_alphas(max_epoch, alpha_divisor="epochs")
    assert plain == [1.0 - ((e - 1) / max_epoch) ** 2 for e in range(1, max_epoch + 1)]
    # alpha_last_epoch zero alone: BBN's alpha, 0 in the last epoch only
    zero_last = step_alphas(max_epoch, alpha_last_epoch="zero")
    official = [official_bbn(e, max_epoch) for e in range(1, max_epoch + 1)]
    assert zero_last[:-1] == official[:-1] and zero_last[-1] == 0.0


def test_the_divisors_and_where_they_differ():
    assert [bbn_alpha_divisor(e) for e in (8, 90, 100, 180, 200)] == [8, 100, 100, 200, 200]
    assert [bbn_alpha_divisor(e, "epochs") for e in (8, 90, 180)] == [8, 90, 180]
    # E = 180 (BBN's iNaturalist configs): the last epoch still mixes 20% of the conventional branch
    assert step_alphas(180)[-1] == pytest.approx(1 - (179 / 200) ** 2) == pytest.approx(0.198975)
    assert step_alphas(180, alpha_divisor="epochs")[-1] == pytest.approx(1 - (179 / 180) ** 2)
    # E = 8: the two divisors agree, as for every E but 90 and 180
    assert step_alphas(8) == step_alphas(8, alpha_divisor="epochs")


def test_options_are_checked_in_one_line(tmp_path):
    cfg = tiny_config(tmp_path, model={"name": "bbn_resnet32"}, method={"name": "bbn", "alpha_divisor": "epochs", "alpha_last_epoch": "zero"})
    assert load_config(raw=cfg).method.kwargs == {"alpha_divisor": "epochs", "alpha_last_epoch": "zero"}
    with pytest.raises(ConfigError, match="alpha_divisor") as e:
        load_config(raw=tiny_config(tmp_path, model={"name": "bbn_resnet32"}, method={"name": "bbn", "alpha_divisor": "paper"}))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="alpha_last_epoch"):
        METHODS.create("bbn", alpha_last_epoch="one")


def header(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))


def test_recipes_resolve_to_their_papers_rule():
    # the recipe naming BBN runs official BBN; at its E = 200 both divisors agree, and no MBIT zero
    cfg = load_config(CONFIGS / "cifar10_lt/bbn.yaml")
    assert cfg.method.name == "bbn" and "megvii-research/BBN" in header(CONFIGS / "cifar10_lt/bbn.yaml")
    step = METHODS.create(cfg.method.name, **cfg.method.kwargs)
    assert (step.alpha_divisor, step.alpha_last_epoch) == ("bbn", "parabola")
    assert step_alphas(cfg.train.epochs, **cfg.method.kwargs) == [official_bbn(e, 200) for e in range(1, 201)]
    # MBIT's recipes keep BACKBONE.BBN False (its configs): none trains with the bbn step, so MBIT's
    # zero is an option, not a default any recipe needs
    mbit = [p for p in sorted(CONFIGS.rglob("*.yaml")) if p.name.startswith("mbit") or "mbit-skin-cancer" in header(p)]
    assert len(mbit) >= 4
    for path in mbit:
        assert load_config(path).method.name != "bbn", path


def test_the_trainer_mixes_with_the_step_alpha(tmp_path, monkeypatch):
    """Through a real run: the alpha each epoch's mixed forward gets (3 epochs, MBIT's rules)."""
    seen: list[float] = []
    original = BBNClassifier.forward_mixed

    def spy(self, x_a, x_b, alpha):
        seen.append(alpha)
        return original(self, x_a, x_b, alpha)

    monkeypatch.setattr(BBNClassifier, "forward_mixed", spy)
    cfg = tiny_config(tmp_path, model={"name": "bbn_resnet32"}, train={"epochs": 3, "progress": False, "tensorboard": False, "threads": 1},
                      method={"name": "bbn", "alpha_divisor": "epochs", "alpha_last_epoch": "zero"})
    longtail.train(cfg)
    per_epoch = sorted(set(seen), reverse=True)
    assert per_epoch == [official_mbit(e, 3) for e in (1, 2, 3)]  # 1, 1 - (1/3)^2, 0
