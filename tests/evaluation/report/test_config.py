"""The Configuration section: what ran and how the model was selected, as key/value rows."""

from __future__ import annotations

from longtail.evaluation.report.sections.config import config_sections, pretrained_label

from .common import hand_run

CONFIG = {
    "name": "ldam_drw",
    "seed": 7,
    "data": {"source": {"name": "cifar10", "root": "/data"}, "long_tail": {"recipe": "ldam", "imbalance_ratio": 100}},
    "model": {"name": "resnet32", "head": "cosine", "pretrained": True},
    "method": {"name": "standard"},
    "loss": {"name": "ldam"},
    "stages": [{"name": "main", "epochs": 160}, {"name": "drw", "epochs": 40, "class_weights": {"name": "effective_number", "beta": 0.9999}, "freeze_backbone": True}],
    "optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 0.0002},
    "schedule": {"name": "step", "warmup_epochs": 5},
    "train": {"select_metric": "balanced_accuracy"},
    "posthoc": {"metric": "macro_f1"},
}


def test_rows_say_what_ran_and_how_it_was_selected(tmp_path) -> None:
    run = hand_run(tmp_path, config=CONFIG, best_epoch=180, epochs=200, select_metric="balanced_accuracy", best_val_score=0.5,
                   stopped_epoch=None, train_seconds=12.345)
    run.posthoc = {"logit_adjust": {"tau": 1.5, "scores": {"1.5": 0.625}, "target_prior": [0.5, 0.5]}}
    [section] = config_sections(run)
    assert section.title == "Configuration" and section.text_tables
    [(header, rows)] = section.tables
    assert header == ["key", "value"]
    table = dict(map(tuple, rows))
    assert table["seed"] == "7"
    assert table["data"] == "cifar10(root=/data)"
    assert table["long tail"] == "recipe=ldam, imbalance_ratio=100"
    assert table["model"] == "resnet32 head=cosine pretrained=hub"
    assert table["stage 1 main"] == "160 epochs, loss ldam, sampler -"
    assert table["stage 2 drw"] == "40 epochs, loss ldam, sampler -, weights effective_number(beta=0.9999), backbone frozen"
    assert table["optimizer"] == "sgd lr=0.1 wd=0.0002"
    assert table["post-hoc logit_adjust"] == "tau=1.5 toward eval.target_prior (chosen on validation by macro_f1, 0.6250)"
    assert table["best checkpoint"] == "epoch 180 of 200 by validation balanced_accuracy (0.5000)"
    assert table["early stopping"] == "not triggered (the whole budget ran)"
    assert table["training time"] == "12.3 s"


def test_single_stage_rows_and_no_section_without_config_or_results(tmp_path) -> None:
    config = {k: v for k, v in CONFIG.items() if k != "stages"} | {"train": {"epochs": 3}}
    [section] = config_sections(hand_run(tmp_path, config=config))
    keys = [row[0] for row in section.tables[0][1]]
    assert keys[keys.index("epochs"):keys.index("epochs") + 4] == ["epochs", "loss", "class weights", "sampler"]
    empty = hand_run(tmp_path)
    empty.results = None
    assert config_sections(empty) == []


def test_pretrained_label() -> None:
    assert pretrained_label({"weights": "/ckpt/imagenet.pth"}) == "file:imagenet.pth"
    assert pretrained_label({"pretrained": "efficientnet_lite0"}) == "efficientnet_lite0"
    assert pretrained_label({}) == "none"


def test_a_train_norm_stage_says_what_its_batchnorm_layers_do(tmp_path) -> None:
    """MiSLAS's shift learning on BatchNorm (stages[].train_norm) is part of what ran."""
    stages = [{"name": "mixup", "epochs": 200},
              {"name": "mislas", "epochs": 10, "freeze_backbone": True, "train_norm": "stats", "loss": {"name": "las"}},
              {"name": "affine", "epochs": 5, "freeze_backbone": True, "train_norm": True}]
    run = hand_run(tmp_path, config={**CONFIG, "stages": stages}, best_epoch=210, epochs=215, select_metric="balanced_accuracy",
                   best_val_score=0.5, stopped_epoch=None, train_seconds=1.0)
    table = dict(map(tuple, config_sections(run)[0].tables[0][1]))
    assert table["stage 2 mislas"] == "10 epochs, loss las, sampler -, backbone frozen, BatchNorm statistics updated"
    assert table["stage 3 affine"].endswith("backbone frozen, BatchNorm statistics and affine trained")
    assert "BatchNorm" not in table["stage 1 mixup"]
