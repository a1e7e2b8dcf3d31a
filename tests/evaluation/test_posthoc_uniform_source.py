"""posthoc.logit_adjust_from: uniform, LADE's test-time rule: logits + log(target prior), no train prior removed."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from longtail import metrics as M
from longtail.core.errors import ConfigError
from longtail.core.schema import Config, PosthocConfig
from longtail.evaluation import posthoc as P

COUNTS = np.array([400, 100, 25, 5])
TARGET = np.array([0.1, 0.2, 0.3, 0.4])


def test_uniform_source_adds_only_the_log_target_prior():
    z = np.random.default_rng(0).normal(size=(6, 4))
    np.testing.assert_allclose(P.prior_shift(COUNTS, TARGET, "uniform"), -np.log(4 * TARGET))
    out = P.logit_adjust(z, COUNTS, 1.0, TARGET, "uniform")
    np.testing.assert_allclose(M.softmax(out.copy()), M.softmax(z + np.log(TARGET)))  # hyperconnect/LADE: z + log p_test
    np.testing.assert_allclose(P.logit_adjust(z, COUNTS, 1.0, None, "uniform"), z)  # a uniform target: the raw logits
    # the train source (the default) still removes the training prior
    np.testing.assert_allclose(P.logit_adjust(z, COUNTS, 1.0, TARGET), z - np.log(4 * COUNTS / COUNTS.sum()) + np.log(4 * TARGET))
    with pytest.raises(Exception, match="not one of train, uniform"):
        P.prior_shift(COUNTS, TARGET, "balanced")


def test_fit_stores_the_source_and_apply_reproduces_it():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    z = rng.normal(size=(400, 4))
    z[np.arange(400), y] += 1.5  # a balanced-posterior model: no training prior in its logits
    fit = P.fit_posthoc(z, y, COUNTS, logit_adjustment=True, target_prior=TARGET, source_prior="uniform", grid=[0.0, 1.0])
    entry = fit["logit_adjust"]
    assert entry["source_prior"] == "uniform" and entry["target_prior"] == list(TARGET)
    applied = P.apply_posthoc(z, None, fit, train_counts=COUNTS)
    np.testing.assert_allclose(applied, P.logit_adjust(z, COUNTS, entry["tau"], TARGET, "uniform"))
    # an entry without source_prior (every posthoc.json written before the option) keeps the train source
    plain = P.fit_posthoc(z, y, COUNTS, logit_adjustment=True, target_prior=TARGET, grid=[0.0, 1.0])
    assert "source_prior" not in plain["logit_adjust"]
    with pytest.raises(ConfigError, match="target"):
        P.fit_posthoc(z, y, COUNTS, logit_adjustment=True, source_prior="uniform")


def test_config_needs_a_target_for_uniform_logits():
    with pytest.raises(ValidationError, match="logit_adjust_from"):
        PosthocConfig(logit_adjust_from="uniform")
    cfg = Config.model_validate({
        "data": {"source": {"name": "digits"}}, "eval": {"target_prior": [0.25] * 4},
        "posthoc": {"logit_adjust": True, "target_prior": True, "logit_adjust_from": "uniform"},
    })
    assert cfg.posthoc.logit_adjust_from == "uniform"
