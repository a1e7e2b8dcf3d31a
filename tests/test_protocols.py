"""Recipes that name a paper or a code base match its protocol, or say where they do not (issue #19).

``PROTOCOLS`` holds one row per such recipe: every hyper-parameter the original sets for what the
recipe takes from it, each value with the file of the original repository it comes from (the
repositories and files named in ``../shared/spec/seeds.md`` and ``published-results.md``). The test
resolves each recipe with :func:`longtail.catalog.check.load_config` and checks every value. A value that
differs passes only if the recipe's header (its leading ``#`` comment block, or that of a ``base:``
file it extends) names the key: the full dotted key (``optimizer.no_decay``), a stage key's section
form (``optimizer.lr`` for ``stages.1.optimizer.lr``) or, for an identifier-like last part, that
part alone (``add_ratios``). A recipe whose header names a paper ("et al.") or one of the code bases
cited here but has no row fails, so a new protocol recipe needs one.

What a row covers:
- a recipe on the original's own data (the CIFAR-LT recipes, ISIC 2018 MBIT, MedMNIST CE, SD-198
  SPBL, CDB's EGTEA Gaze+ CE and CDB-CE) takes the whole protocol: budget, optimiser, schedule, data
  pipeline, method;
- a recipe that runs a method on other data at a CPU budget (the HAM10000 and MedMNIST method
  recipes, from scratch or fine-tuned from ImageNet weights: ``ham10000/*_pretrained.yaml``) is
  compared with the method's original protocol except the data-bound settings (input size,
  normalisation statistics, the dataset's own augmentation, the backbone), which cannot carry over;
  its header (or its base's) names the budget keys it changes;
- the quickstart and the ``finetune_pretrained.yaml`` template take one loss and no protocol.

Keys are dotted paths into the resolved config (``longtail config show``); ``stages.N.`` reads the
N-th resolved stage (every stage field filled from the top-level sections), so single-stage
recipes use the top-level keys and staged recipes the stage keys. A component kwarg a recipe does
not set is read as its constructor's default. Config loading only: no data, no training.
"""

from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from longtail.catalog.check import load_config
from longtail.core.config import to_plain
from longtail.core.schema import Config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


@dataclass(frozen=True)
class Orig:
    """One hyper-parameter of an original: its value (in longtail's terms) and where it is set."""

    value: Any
    source: str


Row = dict[str, Orig]

# ----------------------------------------------------------------------------------- sources
LDAM = "kaidic/LDAM-DRW cifar_train.py"
HML_OPTS = "cartelgouabou/HMLoss cifar_implementation/opts.py"
HML_TRAINER = "cartelgouabou/HMLoss cifar_implementation/trainer.py"
HML_README = "cartelgouabou/HMLoss README.md"
HML_ISIC = "cartelgouabou/HMLoss isic2019_implementation/train_isic.py"
HML_ISIC_OPTS = "cartelgouabou/HMLoss isic2019_implementation/opts.py"
HML_ISIC_TRAIN = "cartelgouabou/HMLoss isic2019_implementation/train.py"
HML_ISIC_DATA = "cartelgouabou/HMLoss isic2019_implementation/data_utils.py"
HML_ISIC_PRE = "cartelgouabou/HMLoss isic2019_implementation/preprocessing/preprocessImageConstancy.m"
CDB = "hitachi-rd-cv/CDB-loss CIFAR-LT/cifar_train.py"
CDB_LOSS = "hitachi-rd-cv/CDB-loss CIFAR-LT/losses/cdb_loss.py"
EGTEA = "hitachi-rd-cv/CDB-loss EGTEA/EGTEA_train.py"
EGTEA_LOSS = "hitachi-rd-cv/CDB-loss EGTEA/losses/cdb_loss.py"
EGTEA_DATA = "hitachi-rd-cv/CDB-loss EGTEA/data/EGTEA.py"
EGTEA_TEST = "hitachi-rd-cv/CDB-loss EGTEA/EGTEA_test.py"
BBN_CFG = "megvii-research/BBN configs/cifar10.yaml"
BBN_OPT = "megvii-research/BBN lib/utils/utils.py"
BBN_LR = "megvii-research/BBN lib/utils/lr_scheduler.py + main/train.py"
BBN_TRAIN = "megvii-research/BBN main/train.py"
BBN_DATA = "megvii-research/BBN lib/dataset/imbalance_cifar.py"
CRT = "facebookresearch/classifier-balancing config/ImageNet_LT/cls_crt.yaml"
CB = "richardaecn/class-balanced-loss cifar_im_trainval_cb.sh"
LA = "google-research/google-research logit_adjustment/README.md"
BALMS = "jiawei-ren/BalancedMetaSoftmax-Classification README.md"
MBIT_CFG = "yaopengUSTC/mbit-skin-cancer configs/isic_2018.yaml"
MBIT_DEF = "yaopengUSTC/mbit-skin-cancer lib/config/default.py"
MBIT_OPT = "yaopengUSTC/mbit-skin-cancer lib/utils/utils.py"
MBIT_TRAIN = "yaopengUSTC/mbit-skin-cancer main/train.py"
MBIT_DATA = "yaopengUSTC/mbit-skin-cancer lib/dataset/baseset.py"
MBIT_VALID = "yaopengUSTC/mbit-skin-cancer main/valid.py"
MBIT_2017 = "yaopengUSTC/mbit-skin-cancer configs/isic_2017.yaml"
MBIT_2019 = "yaopengUSTC/mbit-skin-cancer configs/isic_2019.yaml"
MBIT_D7PT = "yaopengUSTC/mbit-skin-cancer configs/derm_7pt.yaml"
SPBL_CFG = "xpwu95/SPBL_Pytorch spbl/examples/cfg.py"
SPBL_LOOP = "xpwu95/SPBL_Pytorch spbl/examples/spbl.py"
SPBL_TRAINER = "xpwu95/SPBL_Pytorch spbl/reid/trainers.py (open-reid)"
SPBL_DATA = "xpwu95/SPBL_Pytorch spbl/reid/utils/data/data_process.py"
MEDMNIST = "MedMNIST/experiments MedMNIST2D/train_and_eval_pytorch.py"
LADE_CFG = "hyperconnect/LADE config/CIFAR100_LT/lade.yaml"
LADE_README = "hyperconnect/LADE README.md"
WB1 = "ShadeAlsha/LTR-weight-balancing demo1_first-stage-training.py"
WB2 = "ShadeAlsha/LTR-weight-balancing demo2_second-stage-training.py"
WB_PGD = "ShadeAlsha/LTR-weight-balancing utils/regularizers.py"
WB_DATA = "ShadeAlsha/LTR-weight-balancing utils/dataset_CIFAR100LT.py"
WB_TRAIN = "ShadeAlsha/LTR-weight-balancing utils/trainval.py"
GCL_BB = "Keke921/GCLLoss cifar_train_backbone.py"
GCL_CLS = "Keke921/GCLLoss cifar_train_classifier.py"
GCL_LOSS = "Keke921/GCLLoss losses.py"
GCL_UTILS = "Keke921/GCLLoss utils.py"
GCL_SAMPLER = "Keke921/GCLLoss sampler.py"
GCL_MODEL = "Keke921/GCLLoss models/resnet_cifar.py"
MISLAS_CFG1 = "dvlab-research/MiSLAS config/cifar10/cifar10_imb001_stage1_mixup.yaml"
MISLAS_CFG2 = "dvlab-research/MiSLAS config/cifar10/cifar10_imb001_stage2_mislas.yaml"
MISLAS_TRAIN1 = "dvlab-research/MiSLAS train_stage1.py"
MISLAS_TRAIN2 = "dvlab-research/MiSLAS train_stage2.py"
MISLAS_METHODS = "dvlab-research/MiSLAS methods.py"
MISLAS_DATA = "dvlab-research/MiSLAS datasets/cifar10.py"
MISLAS_SAMPLER = "dvlab-research/MiSLAS datasets/sampler.py"
MISLAS_MODEL = "dvlab-research/MiSLAS models/resnet_cifar.py"

CIFAR_MEAN_STD = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]}
CROP_FLIP = [{"name": "random_crop", "size": 32, "padding": 4}, {"name": "hflip", "p": 0.5}]


def staged(prefix: str, row: Row) -> Row:
    """``row`` with its optimiser/schedule/loss keys read from stage ``prefix`` (e.g. ``stages.1.``)."""
    return {prefix + k: v for k, v in row.items()}


# ------------------------------------------------------------ LDAM-DRW's CIFAR protocol
LDAM_BUDGET: Row = {
    "train.epochs": Orig(200, f"{LDAM}: --epochs 200"),
    "data.batch_size": Orig(128, f"{LDAM}: -b 128"),
    "data.drop_last": Orig(False, f"{LDAM}: train DataLoader(shuffle=True), drop_last unset"),
    "sampler.name": Orig("instance", f"{LDAM}: --train_rule None, shuffled loader"),
}
LDAM_OPTIM: Row = {
    "optimizer.name": Orig("sgd", f"{LDAM}: torch.optim.SGD"),
    "optimizer.lr": Orig(0.1, f"{LDAM}: --lr 0.1"),
    "optimizer.momentum": Orig(0.9, f"{LDAM}: --momentum 0.9"),
    "optimizer.nesterov": Orig(False, f"{LDAM}: SGD without nesterov"),
    "optimizer.weight_decay": Orig(2e-4, f"{LDAM}: --wd 2e-4"),
    "optimizer.no_decay": Orig([], f"{LDAM}: SGD(model.parameters(), weight_decay=...) decays every parameter"),
    "schedule.name": Orig("multistep", f"{LDAM}: adjust_learning_rate"),
    "schedule.milestones": Orig([160, 180], f"{LDAM}: adjust_learning_rate, x0.01 for epoch > 160, x1e-4 for > 180 (1-based)"),
    "schedule.gamma": Orig(0.01, f"{LDAM}: adjust_learning_rate"),
    "schedule.warmup_epochs": Orig(5, f"{LDAM}: adjust_learning_rate, lr * epoch / 5 for epoch <= 5"),
    "schedule.warmup_start": Orig(None, f"{LDAM}: adjust_learning_rate, factor (e+1)/5 from the first epoch"),
}
LDAM_DATA: Row = {
    "model.name": Orig("resnet32", f"{LDAM}: -a resnet32"),
    "data.image_size": Orig(None, f"{LDAM}: 32x32 CIFAR images, never resized"),
    "data.train_transforms": Orig(CROP_FLIP, f"{LDAM}: transform_train RandomCrop(32, padding=4), RandomHorizontalFlip()"),
    "data.normalize": Orig(CIFAR_MEAN_STD, f"{LDAM}: transforms.Normalize"),
}
LDAM_PROTOCOL: Row = {**LDAM_BUDGET, **LDAM_OPTIM, **LDAM_DATA}
CE_LOSS: Row = {
    "loss.name": Orig("ce", f"{LDAM}: --loss_type CE"),
    "class_weights.name": Orig("uniform", f"{LDAM}: --train_rule None"),
    "model.head": Orig("linear", f"{LDAM}: use_norm False for CE"),
}
LDAM_DRW_METHOD: Row = {
    "model.head": Orig("cosine", f"{LDAM}: use_norm=True (NormedLinear) for LDAM"),
    "loss.name": Orig("ldam", f"{LDAM}: --loss_type LDAM"),
    "loss.max_margin": Orig(0.5, f"{LDAM}: LDAMLoss(max_m=0.5)"),
    "loss.scale": Orig(30, f"{LDAM}: LDAMLoss(s=30)"),
    "class_weights.name": Orig("drw", f"{LDAM}: --train_rule DRW"),
    "class_weights.kind": Orig("effective_number", f"{LDAM}: DRW effective-number weights"),
    "class_weights.beta": Orig(0.9999, f"{LDAM}: DRW betas = [0, 0.9999]"),
    "class_weights.start_epoch": Orig(161, f"{LDAM}: idx = epoch // 160 (0-based), re-weighted from 1-based epoch 161"),
}

# ------------------------------------------------------------------- HMLoss HML1 (CIFAR)
HML1_STAGE1: Row = {
    "stages.0.epochs": Orig(100, f"{HML_OPTS}: --start_hm_epoch 100"),
    "stages.0.loss.name": Orig("ce", f"{HML_TRAINER}: nn.CrossEntropyLoss(weight=None) before start_hm_epoch"),
    "stages.0.class_weights.name": Orig("uniform", f"{HML_TRAINER}: unweighted CE before start_hm_epoch"),
    "stages.0.schedule.name": Orig("constant", f"{HML_TRAINER}: learning_rate_scheduler, lr 0.1 up to epoch 100"),
    "stages.0.schedule.warmup_epochs": Orig(5, f"{HML_TRAINER}: learning_rate_scheduler, lr * epoch / 5 for epoch <= 5"),
    "stages.0.schedule.warmup_start": Orig(None, f"{HML_TRAINER}: (e+1)/5 ramp"),
}
HML_OPTIM: Row = {
    "optimizer.name": Orig("sgd", f"{HML_TRAINER}: torch.optim.SGD"),
    "optimizer.momentum": Orig(0.9, f"{HML_OPTS}: --momentum 0.9"),
    "optimizer.nesterov": Orig(False, f"{HML_TRAINER}: SGD without nesterov"),
    "optimizer.weight_decay": Orig(2e-4, f"{HML_OPTS}: --wd 2e-4"),
    "optimizer.no_decay": Orig([], f"{HML_TRAINER}: SGD(model.parameters(), weight_decay=...) decays every parameter"),
}
HML1_STAGE2: Row = {
    "stages.1.epochs": Orig(100, f"{HML_OPTS}: --epochs 200 - --start_hm_epoch 100"),
    "stages.1.loss.name": Orig("hml", f"{HML_TRAINER}: SoftmaxHardMiningLoss from start_hm_epoch"),
    "stages.1.loss.delta": Orig(10000, f"{HML_OPTS}: --delta 10000"),
    "stages.1.class_weights.name": Orig("inverse_frequency", f"{HML_README}: --weighting_type CS (1/n_c, normalised to sum C in trainer.py)"),
    "stages.1.class_weights.power": Orig(1.0, f"{HML_TRAINER}: CS weights 1.0 / n_c"),
    "stages.1.optimizer.lr": Orig(0.001, f"{HML_TRAINER}: learning_rate_scheduler, lr * 0.01 for epoch > start_hm_epoch"),
    "stages.1.schedule.name": Orig("multistep", f"{HML_TRAINER}: learning_rate_scheduler"),
    "stages.1.schedule.milestones": Orig([60, 80], f"{HML_TRAINER}: lr * 1e-4 for epoch > 160, 1e-6 for > 180 (stage-local 60, 80)"),
    "stages.1.schedule.gamma": Orig(0.01, f"{HML_TRAINER}: learning_rate_scheduler"),
    "stages.1.schedule.warmup_epochs": Orig(0, f"{HML_TRAINER}: no warm-up after the switch"),
}
HML1_CIFAR: Row = {
    **{k: v for k, v in LDAM_BUDGET.items() if k != "train.epochs"},
    **LDAM_DATA,
    "data.drop_last": Orig(False, f"{HML_TRAINER}: train DataLoader(shuffle=True), drop_last unset"),
    "optimizer.lr": Orig(0.1, f"{HML_OPTS}: --lr 0.1"),
    **staged("stages.0.", HML_OPTIM),
    **staged("stages.1.", HML_OPTIM),
    **HML1_STAGE1,
    **HML1_STAGE2,
}

# ------------------------------------------------------- HMLoss ISIC 2019 melanoma vs nevi
HML_ISIC_STAGE: Row = {
    "optimizer.name": Orig("adam", f"{HML_ISIC}: optim.Adam(model.parameters(), lr=1e-3)"),
    "optimizer.lr": Orig(0.001, f"{HML_ISIC_OPTS}: --max_lr 0.001 (CyclicLR max_lr)"),
    "optimizer.weight_decay": Orig(0.0, f"{HML_ISIC}: Adam without weight_decay (--wd is parsed, never used)"),
    "optimizer.betas": Orig([0.9, 0.999], f"{HML_ISIC}: Adam default betas"),
    "schedule.name": Orig("cyclic", f"{HML_ISIC}: CyclicLR(mode='triangular2'), scheduler.step() once per epoch"),
    "schedule.base_lr": Orig(1e-5, f"{HML_ISIC}: base_lr=args.max_lr/100"),
    "schedule.cycle_epochs": Orig(2000, f"{HML_ISIC}: CyclicLR step_size_up default 2000, stepped per epoch"),
    "schedule.warmup_epochs": Orig(0, f"{HML_ISIC}: no warm-up"),
    "trainable_fraction": Orig(0.32, f"{HML_ISIC_OPTS}: --ratio_finetune 32 (first 68% of parameter tensors frozen)"),
    "sampler.name": Orig("instance", f"{HML_ISIC}: DataLoader(shuffle=True)"),
    "class_weights.name": Orig("uniform", f"{HML_ISIC_OPTS}: --weighting_type None"),
}
HML_ISIC_MEL_NV: Row = {
    "data.classes.keep": Orig(["NV", "MEL"], f"{HML_ISIC}: plot_labels ['nv', 'mel'] (NEV -> BEN 0, MEL -> MAL 1 in {HML_ISIC_DATA.split()[1]})"),
    "data.split.val": Orig(0.1, f"{HML_ISIC_DATA}: 80/10/10 split per class"),
    "data.split.test": Orig(0.1, f"{HML_ISIC_DATA}: 80/10/10 split per class"),
    "data.preprocess": Orig([{"name": "center_square_crop"}, {"name": "gray_world", "grid": 1}],
                            f"{HML_ISIC_PRE}: cropCenterISIC19, colorConstancy 'gray world seg' s=2 (raw 4 x 4 cell means = gray world)"),
    "data.image_size": Orig(300, f"{HML_ISIC}: input_size = 300, Resize((300, 300))"),
    "data.train_transforms": Orig([{"name": "hflip", "p": 0.5}, {"name": "vflip", "p": 0.5}, {"name": "random_rotation", "degrees": 20},
                                   {"name": "color_jitter", "brightness": 0.1, "contrast": 0.1, "hue": 0.1}],
                                  f"{HML_ISIC}: train_transform RandomHorizontalFlip, RandomVerticalFlip, RandomRotation(20), ColorJitter(0.1, 0.1, hue=0.1)"),
    "data.normalize": Orig({"mean": [0.59451115, 0.59429777, 0.59418184], "std": [0.14208533, 0.18548788, 0.20363748]},
                           f"{HML_ISIC}: transforms.Normalize"),
    "data.batch_size": Orig(128, f"{HML_ISIC_OPTS}: -b 128"),
    "data.eval_batch_size": Orig(64, f"{HML_ISIC}: val/test DataLoader batch_size=args.batch_size//2"),
    "data.drop_last": Orig(False, f"{HML_ISIC}: DataLoader(shuffle=True), drop_last unset"),
    "model.name": Orig("torchvision", f"{HML_ISIC}: torchvision models.efficientnet_b3"),
    "model.arch": Orig("efficientnet_b3", f"{HML_ISIC}: models.efficientnet_b3(pretrained=True)"),
    "model.pretrained": Orig(True, f"{HML_ISIC}: pretrained=True"),
    "model.head": Orig("linear", f"{HML_ISIC}: classifier[1] = nn.Linear(1536, 2)"),
    "stages.0.epochs": Orig(49, f"{HML_ISIC_TRAIN}: CE while epoch < start_hm_epoch 50 (1-based epochs 1-49)"),
    "stages.0.loss.name": Orig("ce", f"{HML_ISIC}: nn.CrossEntropyLoss(weight=None) before start_hm_epoch"),
    "stages.1.epochs": Orig(51, f"{HML_ISIC_OPTS}: --num_epochs 100, HML for epochs 50-100"),
    "stages.1.loss.name": Orig("hml", f"{HML_ISIC}: SoftmaxHardMiningLoss from start_hm_epoch"),
    "stages.1.loss.delta": Orig(10000, f"{HML_ISIC_OPTS}: --delta 10000"),
    "stages.1.schedule.epoch_offset": Orig(49, f"{HML_ISIC}: one CyclicLR over all epochs"),
    **staged("stages.0.", HML_ISIC_STAGE),
    **staged("stages.1.", HML_ISIC_STAGE),
    "train.select_from": Orig("all", f"{HML_ISIC}: best_val_bacc over every epoch"),
    "train.select_metric": Orig("balanced_accuracy", f"{HML_ISIC}: val_bacc = balanced_accuracy_score"),
    "train.val_every": Orig(1, f"{HML_ISIC}: backup() on validation after every epoch"),
    "train.early_stopping": Orig({"patience": 15, "min_delta": 0.0}, f"{HML_ISIC_OPTS}: --delay 15 epochs without a better val_bacc"),
}

# ------------------------------------------------------------------------ CDB-CE (CIFAR)
CDB_METHOD: Row = {
    "loss.name": Orig("cdb_ce", f"{CDB}: --loss_type CDB-CE"),
    "loss.tau": Orig("dynamic", f"{CDB}: --tau dynamic"),
    "loss.dynamic_form": Orig("cifar", f"{CDB_LOSS}: tau = sigmoid((1 - min d) / (1 - max d + 0.01))"),
    "loss.eps": Orig(0.0, f"{CDB_LOSS}: weights = difficulty ** tau, no floor (a perfect class gets 0)"),
    "train.val_every": Orig(1, f"{CDB}: --validate_after_every 1, weights rebuilt after every validation"),
    "train.select_metric": Orig("balanced_accuracy", f"{CDB}: best by class_wise_accuracy.mean() on validation"),
}
CDB_CIFAR: Row = {
    **CDB_METHOD,
    "train.epochs": Orig(240, f"{CDB}: --max_epochs 240"),
    "data.batch_size": Orig(32, f"{CDB}: --batch_size 32 (x n_gpus 1)"),
    "data.drop_last": Orig(False, f"{CDB}: DataLoader(shuffle=True), drop_last unset"),
    "data.long_tail.recipe": Orig("cdb", f"{CDB}: sep_train_val then create_imbalance"),
    "data.long_tail.val_per_class": Orig(25, f"{CDB}: args.val_samples_per_class = 25"),
    "data.train_transforms": Orig(CROP_FLIP, f"{CDB}: RandomCrop(32, padding=4), RandomHorizontalFlip()"),
    "data.normalize": Orig("imagenet", f"{CDB}: Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])"),
    "data.image_size": Orig(None, f"{CDB}: 32x32 images"),
    "model.name": Orig("resnet32", f"{CDB}: resnet.resnet32()"),
    "sampler.name": Orig("instance", f"{CDB}: shuffled loader"),
    "optimizer.name": Orig("sgd", f"{CDB}: torch.optim.SGD"),
    "optimizer.lr": Orig(0.1, f"{CDB}: SGD(lr=0.1)"),
    "optimizer.momentum": Orig(0.9, f"{CDB}: SGD(momentum=0.9)"),
    "optimizer.nesterov": Orig(False, f"{CDB}: SGD without nesterov"),
    "optimizer.weight_decay": Orig(5e-4, f"{CDB}: weight_decay 5e-4"),
    "optimizer.no_decay": Orig(["head.bias"], f"{CDB}: weight_decay 0 for module.linear.bias only"),
    "schedule.name": Orig("multistep", f"{CDB}: MultiStepLR"),
    "schedule.milestones": Orig([160, 210], f"{CDB}: MultiStepLR(milestones=[160, 210]) stepped after each epoch"),
    "schedule.gamma": Orig(0.01, f"{CDB}: MultiStepLR(gamma=0.01)"),
    "schedule.warmup_epochs": Orig(0, f"{CDB}: no warm-up"),
}

# ------------------------------------------------------------------ CDB's EGTEA Gaze+ protocol
EGTEA_PROTOCOL: Row = {
    "train.epochs": Orig(100, f"{EGTEA}: --max_epochs 100"),
    "data.batch_size": Orig(8, f"{EGTEA}: --batch_size 8 (x n_gpus 1)"),
    "data.drop_last": Orig(False, f"{EGTEA}: train DataLoader(shuffle=True), drop_last unset"),
    "sampler.name": Orig("instance", f"{EGTEA}: shuffled loader"),
    "data.source.label": Orig("verb", f"{EGTEA_DATA}: label = third field (verb id) - 1, 19 classes"),
    "data.source.frames_per_clip": Orig(10, f"{EGTEA}: --frames_per_clip 10"),
    "data.image_size": Orig(None, f"{EGTEA_DATA}: frames as extracted; the transforms crop 480 and resize 224"),
    "data.train_transforms": Orig(
        [{"name": "random_crop", "size": 480}, {"name": "random_rotation", "degrees": 10}, {"name": "hflip", "p": 0.5}, {"name": "resize", "size": 224}],
        f"{EGTEA}: RandomCrop((480, 480)), RandomRotate(10), Sometimes(0.5, HorizontalFlip()), GroupResize((224, 224))",
    ),
    "data.eval_transforms": Orig(
        [{"name": "center_crop", "size": 480}, {"name": "resize", "size": 224}], f"{EGTEA}: CenterCrop((480, 480)), GroupResize((224, 224))"
    ),
    "data.normalize": Orig({"mean": [0.0] * 3, "std": [1 / 255] * 3}, f"{EGTEA_DATA}: cv2.imread pixels as floats, 0-255, no mean/std"),
    "model.name": Orig("resnext3d_101", f"{EGTEA}: resnext.resnet101(shortcut_type='B', cardinality=32, sample_size=224)"),
    "model.weights": Orig("pretrained_weights/resnext-101-kinetics.pth", f"{EGTEA}: --pretrained_model"),
    "model.head": Orig("linear", f"{EGTEA}: model.module.fc = nn.Linear(2048, 19)"),
    "model.dropout": Orig(0.0, f"{EGTEA}: the new fc directly on the pooled features"),
    "loss.name": Orig("ce", f"{EGTEA}: --loss_type CE, nn.CrossEntropyLoss()"),
    "class_weights.name": Orig("uniform", f"{EGTEA}: nn.CrossEntropyLoss() without weights"),
    "optimizer.name": Orig("sgd", f"{EGTEA}: torch.optim.SGD"),
    "optimizer.lr": Orig(0.001, f"{EGTEA}: SGD(lr=0.001)"),
    "optimizer.momentum": Orig(0.0, f"{EGTEA}: SGD without momentum"),
    "optimizer.nesterov": Orig(False, f"{EGTEA}: SGD without nesterov"),
    "optimizer.weight_decay": Orig(5e-4, f"{EGTEA}: SGD(weight_decay=0.0005)"),
    "optimizer.no_decay": Orig([], f"{EGTEA}: SGD(filter(requires_grad, model.parameters()), weight_decay=...) decays every parameter"),
    "schedule.name": Orig("multistep", f"{EGTEA}: StepLR"),
    "schedule.milestones": Orig([60], f"{EGTEA}: StepLR(step_size=0.6 * max_epochs) stepped after each epoch"),
    "schedule.gamma": Orig(0.1, f"{EGTEA}: StepLR(gamma=0.1)"),
    "schedule.warmup_epochs": Orig(0, f"{EGTEA}: no warm-up"),
    "train.val_every": Orig(1, f"{EGTEA}: --validate_after_every 1"),
    "train.select_metric": Orig("accuracy", f"{EGTEA}: best_model.pth by validation top-1"),
    "eval.majority_threshold": Orig(600, f"{EGTEA_TEST}: majority classes count > 600, minority count < 600"),
}
EGTEA_CDB_METHOD: Row = {
    "loss.name": Orig("cdb_ce", f"{EGTEA}: --loss_type CDB-CE"),
    "loss.tau": Orig("dynamic", f"{EGTEA}: --tau dynamic"),
    "loss.dynamic_form": Orig("cifar", f"{EGTEA_LOSS}: tau = sigmoid((1 - min d) / (1 - max d + 0.01))"),
    "loss.eps": Orig(0.0, f"{EGTEA_LOSS}: weights = difficulty ** tau, no floor (a perfect class gets 0)"),
    "class_weights.name": Orig("uniform", f"{EGTEA}: the CDB weights live in the loss, CDB_loss(class_difficulty=1 - cls_acc)"),
}

# ------------------------------------------------------------------------------ BBN (CIFAR)
BBN_CIFAR: Row = {
    "train.epochs": Orig(200, f"{BBN_CFG}: MAX_EPOCH 200"),
    "data.batch_size": Orig(128, f"{BBN_CFG}: BATCH_SIZE 128"),
    "data.drop_last": Orig(True, f"{BBN_TRAIN}: DataLoader(drop_last=True)"),
    "data.train_transforms": Orig(CROP_FLIP, f"{BBN_DATA}: RandomCrop(32, padding=4), RandomHorizontalFlip()"),
    "data.normalize": Orig(CIFAR_MEAN_STD, f"{BBN_DATA}: transforms.Normalize"),
    "data.image_size": Orig(None, f"{BBN_CFG}: INPUT_SIZE (32, 32)"),
    "model.name": Orig("bbn_resnet32", f"{BBN_CFG}: bbn_res32_cifar"),
    "method.name": Orig("bbn", f"{BBN_CFG}: COMBINER bbn_mix"),
    "method.sampler": Orig("reverse", f"{BBN_CFG}: DUAL_SAMPLER reverse"),
    "sampler.name": Orig("instance", f"{BBN_CFG}: SAMPLER default"),
    "loss.name": Orig("ce", f"{BBN_CFG}: LOSS_TYPE CrossEntropy"),
    "optimizer.name": Orig("sgd", f"{BBN_CFG}: OPTIMIZER SGD"),
    "optimizer.lr": Orig(0.1, f"{BBN_CFG}: BASE_LR 0.1"),
    "optimizer.momentum": Orig(0.9, f"{BBN_CFG}: MOMENTUM 0.9"),
    "optimizer.nesterov": Orig(True, f"{BBN_OPT}: get_optimizer SGD(nesterov=True)"),
    "optimizer.weight_decay": Orig(2e-4, f"{BBN_CFG}: WEIGHT_DECAY 2e-4"),
    "optimizer.no_decay": Orig([], f"{BBN_OPT}: get_optimizer, one weight decay for every parameter"),
    "schedule.name": Orig("multistep", f"{BBN_CFG}: LR_SCHEDULER warmup (WarmupMultiStepLR)"),
    "schedule.milestones": Orig([119, 159], f"{BBN_LR}: LR_STEP [120, 160] on 1-based epochs (step() before each epoch)"),
    "schedule.gamma": Orig(0.01, f"{BBN_CFG}: LR_FACTOR 0.01"),
    "schedule.warmup_epochs": Orig(4, f"{BBN_LR}: WARM_EPOCH 5, factor 1/3 + 2E/15 for 1-based E < 5"),
    "schedule.warmup_start": Orig(7 / 15, f"{BBN_LR}: warmup_factor 1/3, alpha = 1/5 at the first epoch"),
}

# -------------------------------------------------------- classifier re-training (cRT)
CRT_STAGE: Row = {
    "stages.1.epochs": Orig(10, f"{CRT}: num_epochs 10"),
    "stages.1.freeze_backbone": Orig(True, f"{CRT}: feat_model fix: true"),
    "stages.1.reinit_head": Orig(True, f"{CRT}: classifier stage1_weights: false"),
    "stages.1.sampler.name": Orig("class_balanced", f"{CRT}: ClassAwareSampler"),
    "stages.1.optimizer.name": Orig("sgd", f"{CRT}: optim_params"),
    "stages.1.optimizer.lr": Orig(0.2, f"{CRT}: classifier lr 0.2 (batch 512)"),
    "stages.1.optimizer.momentum": Orig(0.9, f"{CRT}: momentum 0.9"),
    "stages.1.optimizer.weight_decay": Orig(5e-4, f"{CRT}: weight_decay 0.0005"),
    "stages.1.optimizer.no_decay": Orig([], f"{CRT}: optim_params apply weight decay to the whole classifier"),
    "stages.1.schedule.name": Orig("cosine", f"{CRT}: coslr: true"),
    "stages.1.schedule.min_lr": Orig(0.0, f"{CRT}: endlr 0.0"),
    "stages.1.schedule.warmup_epochs": Orig(0, f"{CRT}: no warm-up"),
}

# --------------------------------------------------------------------- MBIT (ISIC 2018)
MBIT_METHOD: Row = {
    "loss.name": Orig("mwnl", f"{MBIT_CFG}: LOSS_TYPE MWNLoss"),
    "loss.beta": Orig(0.1, f"{MBIT_CFG}: MWNL.BETA 0.1"),
    "loss.clip": Orig("fix", f"{MBIT_CFG}: MWNL.TYPE fix"),
    "loss.gamma": Orig(2.0, f"{MBIT_CFG}: MWNL.GAMMA 2"),
    "loss.reduction": Orig("enlarge", f"{MBIT_CFG}: MWNL.SIGMOID enlarge"),
    "class_weights.name": Orig("cls", f"{MBIT_CFG}: SCHEDULER cls"),
    "class_weights.power": Orig(1.2, f"{MBIT_CFG}: WEIGHT_POWER 1.2"),
    "class_weights.start_epoch": Orig(20, f"{MBIT_DEF}: CLS_EPOCH_MIN 20"),
    "class_weights.end_epoch": Orig(60, f"{MBIT_DEF}: CLS_EPOCH_MAX 60"),
    "model.dropout": Orig(0.1, f"{MBIT_CFG}: DROP.OUT_PROB 0.1"),
    "model.drop_block_prob": Orig(0.1, f"{MBIT_CFG}: DROP.BLOCK_PROB 0.1"),
    "model.drop_block_size": Orig(5, f"{MBIT_CFG}: DROP.BLOCK_SIZE 5"),
    "model.drop_block_steps": Orig(50000, f"{MBIT_CFG}: DROP.NR_STEPS 50000"),
    "sampler.name": Orig("instance", f"{MBIT_CFG}: SAMPLER.TYPE default"),
    "train.epochs": Orig(70, f"{MBIT_CFG}: MAX_EPOCH 70"),
    "data.batch_size": Orig(128, f"{MBIT_CFG}: BATCH_SIZE 64 per GPU x GPUS [0, 1]"),
    "data.drop_last": Orig(True, f"{MBIT_TRAIN}: train DataLoader(drop_last=True)"),
    "optimizer.name": Orig("adam", f"{MBIT_CFG}: OPTIMIZER.TYPE ADAM"),
    "optimizer.lr": Orig(0.001, f"{MBIT_OPT}: BASE_LR 5e-4 x len(GPUS) 2"),
    "optimizer.weight_decay": Orig(1e-4, f"{MBIT_CFG}: WEIGHT_DECAY 1e-4"),
    "optimizer.no_decay": Orig([], f"{MBIT_OPT}: get_optimizer, one weight decay for every parameter"),
    "optimizer.betas": Orig([0.9, 0.999], f"{MBIT_OPT}: Adam betas (0.9, 0.999)"),
    "schedule.name": Orig("multistep", f"{MBIT_CFG}: LR_SCHEDULER multistep"),
    "schedule.milestones": Orig([29, 39, 49, 59], f"{MBIT_TRAIN}: LR_STEP [30, 40, 50, 60] on 1-based epochs (scheduler.step() before each epoch)"),
    "schedule.gamma": Orig(0.1, f"{MBIT_CFG}: LR_FACTOR 0.1"),
    "schedule.warmup_epochs": Orig(0, f"{MBIT_CFG}: no warm-up (multistep)"),
    "data.train_transforms": Orig(
        [{"name": "modified_randaugment", "policy": "v1_1", "prob": 0.7, "magnitude": 10}, {"name": "random_crop", "size": 224}],
        f"{MBIT_DATA}: data_augment_train, modified RandAugment (AUG_METHOD v1_1, AUG_PROB 0.7, AUG_MAG 10) then a random 224 crop",
    ),
}
MBIT_ISIC: Row = {
    **MBIT_METHOD,
    "model.name": Orig("torchvision", f"{MBIT_CFG}: BACKBONE RegNetY_3.2GF_DropBlock"),
    "model.arch": Orig("regnet_y_3_2gf", f"{MBIT_CFG}: RegNetY_3.2GF"),
    "model.pretrained": Orig(True, f"{MBIT_DEF}: PRETRAINED True"),
    "data.normalize": Orig("imagenet", f"{MBIT_DEF}: FIX_MEAN_VAR ImageNet mean/std"),
    "train.val_every": Orig(2, f"{MBIT_CFG}: VALID_STEP 2"),
    "train.select_metric": Orig("balanced_accuracy", f"{MBIT_TRAIN}: best_model by validation balanced accuracy"),
    "eval.tta.crops": Orig(16, f"{MBIT_CFG}: MULTI_CROP.CROP_NUM 16"),
    "eval.tta.scheme": Orig("average", f"{MBIT_CFG}: MULTI_CROP.SCHEME average"),
}



def mbit_own_config(cfg: str, backbone: str, arch: str, gpu_batch: int, base_lr: float, reduction: str, scheduler: Row) -> Row:
    """MBIT's protocol as one of its dataset configs sets it (2017, 2019, Derm7pt: seeds.md 2.8)."""
    return {
        **{k: v for k, v in MBIT_ISIC.items() if not k.startswith("class_weights.")},
        **scheduler,
        "model.name": Orig("torchvision", f"{cfg}: BACKBONE {backbone}"),
        "model.arch": Orig(arch, f"{cfg}: BACKBONE {backbone}"),
        "model.dropout": Orig(0.1, f"{cfg}: DROP.OUT_PROB 0.1"),
        "model.drop_block_prob": Orig(0.1, f"{cfg}: DROP.BLOCK_PROB 0.1"),
        "data.batch_size": Orig(2 * gpu_batch, f"{cfg}: BATCH_SIZE {gpu_batch} per GPU x GPUS [0, 1]"),
        "optimizer.lr": Orig(2 * base_lr, f"{MBIT_OPT}: BASE_LR {base_lr:g} ({cfg}) x len(GPUS) 2"),
        "loss.reduction": Orig(reduction, f"{cfg}: MWNL.SIGMOID {reduction}"),
        "train.epochs": Orig(70, f"{cfg}: MAX_EPOCH 70"),
        "data.train_transforms": Orig(
            [{"name": "modified_randaugment", "policy": "v1_1", "prob": 0.7, "magnitude": 10},
             {"name": "random_crop_in_rate", "size": 224, "l_region": 1.0, "s_region": 1.0}],
            f"{MBIT_DATA}: data_augment_train, modified RandAugment (v1_1, P 0.7, M 10) then RandomCropInRate(224, (L_REGION 1.0, S_REGION 1.0)) ({cfg})",
        ),
        "eval.tta.crops": Orig(16, f"{cfg}: MULTI_CROP.CROP_NUM 16"),
        "eval.tta.crop_size": Orig(224, f"{cfg}: INPUT_SIZE (224, 224)"),
    }


def mbit_re_weight(cfg: str, power: float) -> Row:
    return {
        "class_weights.name": Orig("inverse_frequency", f"{cfg}: SCHEDULER re_weight ((1/n_c)^power, normalised to sum C)"),
        "class_weights.power": Orig(power, f"{cfg}: WEIGHT_POWER {power}"),
    }


MBIT_ISIC2017: Row = {
    **mbit_own_config(MBIT_2017, "RegNetY_1.6GF_DropBlock", "regnet_y_1_6gf", 64, 1e-4, "normal", mbit_re_weight(MBIT_2017, 1.1)),
    "eval.protocol": Orig("isic2017", f"{MBIT_VALID}: DATASET isic_2017 reports acc, bacc, AUC and precision over MEL and SK"),
}
MBIT_ISIC2019: Row = {
    **mbit_own_config(MBIT_2019, "RegNetY_8.0GF_DropBlock", "regnet_y_8gf", 32, 2e-4, "enlarge", {
        "class_weights.name": Orig("cls", f"{MBIT_2019}: SCHEDULER cls"),
        "class_weights.power": Orig(1.2, f"{MBIT_2019}: WEIGHT_POWER 1.2"),
        "class_weights.start_epoch": Orig(20, f"{MBIT_2019}: CLS_EPOCH_MIN 20"),
        "class_weights.end_epoch": Orig(60, f"{MBIT_2019}: CLS_EPOCH_MAX 60"),
    }),
    "eval.unk_class": Orig("none", f"{MBIT_2019}: VALID_ADD_ONE_CLASS False (softmax scores, UNK 0 in the test CSV)"),
    "data.image_size": Orig(450, "yaopengUSTC/mbit-skin-cancer tools/resize_image_ISIC_2019.py: square images resized to 450"),
}
MBIT_DERM7PT: Row = {
    **mbit_own_config(MBIT_D7PT, "RegNetY_800MF_DropBlock", "regnet_y_800mf", 64, 2e-4, "normal", mbit_re_weight(MBIT_D7PT, 1.0)),
    "data.preprocess": Orig([{"name": "border_crop", "pixels": 25}], f"{MBIT_D7PT}: BORDER_CROP pixel, BORDER_CROP_PIXEL 25"),
}

# ------------------------------------------------------------ SPBL (SD-198 list files)
SPBL_CNN: Row = {
    "train.epochs": Orig(50, f"{SPBL_CFG}: epochs 50"),
    "data.batch_size": Orig(64, f"{SPBL_CFG}: batch_size 64"),
    "data.drop_last": Orig(True, f"{SPBL_LOOP}: train loader drop_last=True"),
    "model.name": Orig("torchvision", f"{SPBL_CFG}: model resnet50 (torchvision)"),
    "model.arch": Orig("resnet50", f"{SPBL_CFG}: model resnet50"),
    "model.pretrained": Orig(True, f"{SPBL_CFG}: ImageNet-pretrained resnet50"),
    "loss.name": Orig("ce", f"{SPBL_TRAINER}: plain cross-entropy"),
    "optimizer.name": Orig("sgd", f"{SPBL_LOOP}: torch.optim.SGD"),
    "optimizer.lr": Orig(0.01, f"{SPBL_CFG}: lr 0.01"),
    "optimizer.momentum": Orig(0.9, f"{SPBL_LOOP}: momentum 0.9"),
    "optimizer.nesterov": Orig(True, f"{SPBL_LOOP}: nesterov=True"),
    "optimizer.weight_decay": Orig(5e-4, f"{SPBL_LOOP}: weight_decay 5e-4"),
    "optimizer.no_decay": Orig([], f"{SPBL_LOOP}: weight decay on every parameter group"),
    "optimizer.lr_mult": Orig({"backbone": 0.1}, f"{SPBL_LOOP}: pretrained backbone lr_mult 0.1, new layers 1.0"),
    "schedule.name": Orig("multistep", f"{SPBL_LOOP}: lr * 0.1 ** (epoch // step_size)"),
    "schedule.milestones": Orig([40], f"{SPBL_CFG}: step_size 40"),
    "schedule.gamma": Orig(0.1, f"{SPBL_LOOP}: lr * 0.1 ** (epoch // step_size)"),
}
SPBL_SD198_DATA: Row = {
    "data.image_size": Orig(256, f"{SPBL_LOOP}: train resize to input_size + 32 = 256"),
    "data.train_transforms": Orig([{"name": "random_crop", "size": 224}, {"name": "hflip", "p": 0.5}], f"{SPBL_LOOP}: random crop 224, horizontal flip"),
    "data.eval_transforms": Orig([{"name": "resize", "size": 224}], f"{SPBL_LOOP}: test resize to input_size 224"),
    "data.normalize": Orig("imagenet", f"{SPBL_LOOP}: ImageNet mean/std"),
}
SPBL_PACES: Row = {
    "spbl.train_ratio": Orig(0.2, f"{SPBL_CFG}: train_ratio 0.2"),
    "spbl.add_ratios": Orig([0.5, 0.75, 0.9, 1.0, 1.0], f"{SPBL_CFG}: add_ratios"),
    "spbl.max_cost": Orig(10.0, f"{SPBL_LOOP}: consistent cost vector, maxvalue 10"),
    "spbl.delta_cap": Orig(100, f"{SPBL_DATA}: delta capped at 100"),
    "spbl.shrink_factor": Orig(3.0, f"{SPBL_DATA}: m = 3 * ceil(mean(k))"),
    "spbl.classifier": Orig("svm", f"{SPBL_LOOP}: SVC(kernel rbf)"),
    "spbl.svm_c": Orig(1.0, f"{SPBL_LOOP}: SVC(C=1)"),
    "spbl.resample": Orig("duplicate", f"{SPBL_DATA}: duplicate rows (SMOTE commented out)"),
    "spbl.feature_norm": Orig("none", f"{SPBL_LOOP}: raw pooled features"),
    "spbl.cnn_class_weights": Orig(False, f"{SPBL_TRAINER}: the CNN's class-weight hook is always passed None"),
    "spbl.finetune_lr_mult": Orig(0.1, f"{SPBL_LOOP}: the same CNN, backbone lr_mult 0.1, in every pace"),
}

# -------------------------------------------------------------- MedMNIST v2 (official)
MEDMNIST_PROTOCOL: Row = {
    "train.epochs": Orig(100, f"{MEDMNIST}: --num_epochs 100"),
    "data.batch_size": Orig(128, f"{MEDMNIST}: --batch_size 128"),
    "data.drop_last": Orig(False, f"{MEDMNIST}: DataLoader(shuffle=True), drop_last unset"),
    "data.train_transforms": Orig([], f"{MEDMNIST}: ToTensor + Normalize only"),
    "data.normalize": Orig({"mean": [0.5], "std": [0.5]}, f"{MEDMNIST}: Normalize(mean=[.5], std=[.5])"),
    "model.name": Orig("resnet18", f"{MEDMNIST}: --model_flag resnet18 (28 px ResNet18 of models.py)"),
    "loss.name": Orig("ce", f"{MEDMNIST}: nn.CrossEntropyLoss"),
    "sampler.name": Orig("instance", f"{MEDMNIST}: shuffled loader"),
    "optimizer.name": Orig("adam", f"{MEDMNIST}: torch.optim.Adam"),
    "optimizer.lr": Orig(0.001, f"{MEDMNIST}: lr = 0.001"),
    "optimizer.weight_decay": Orig(0.0, f"{MEDMNIST}: Adam without weight decay"),
    "schedule.name": Orig("multistep", f"{MEDMNIST}: MultiStepLR"),
    "schedule.milestones": Orig([50, 75], f"{MEDMNIST}: milestones 0.5 and 0.75 x num_epochs, stepped after each epoch"),
    "schedule.gamma": Orig(0.1, f"{MEDMNIST}: gamma 0.1"),
    "schedule.warmup_epochs": Orig(0, f"{MEDMNIST}: no warm-up"),
    "train.select_metric": Orig("macro_auc", f"{MEDMNIST}: best model by validation AUC"),
}

# ------------------------------------------------------------------ the methods' own values
BALANCED_SOFTMAX: Row = {"loss.name": Orig("balanced_softmax", f"{BALMS}: Balanced Softmax loss")}
CB_FOCAL: Row = {
    "loss.name": Orig("cb", f"{CB}: class-balanced loss"),
    "loss.base": Orig("focal", f"{CB}: LOSS_TYPE=focal (sigmoid focal)"),
    "loss.beta": Orig(0.9999, f"{CB}: BETA=0.9999"),
    "loss.gamma": Orig(1.0, f"{CB}: GAMMA=1.0"),
}
LOGIT_ADJUSTED_LOSS: Row = {
    "loss.name": Orig("logit_adjusted", f"{LA}: logit-adjusted loss"),
    "loss.tau": Orig(1.0, f"{LA}: tau = 1"),
    "posthoc.tau_norm": Orig(False, f"{LA}: no tau-normalisation of the classifier"),
}
LADE_METHOD: Row = {
    "loss.name": Orig("lade", f"{LADE_CFG}: PerformanceLoss PriorCELoss + RouteWeightLoss LADELoss on the same logits"),
    "loss.alpha": Orig(0.1, f"{LADE_README}: CIFAR-100 imbalance 0.01 command --alpha 0.1 (RouteWeightLoss weight)"),
    "loss.remine_lambda": Orig(0.01, f"{LADE_README}: CIFAR-100 imbalance 0.01 command --remine_lambda 0.01"),
    "posthoc.logit_adjust": Orig(False, "hyperconnect/LADE run_networks.py: eval adds the log prior of the (balanced) test split, nothing chosen on validation"),
}
WB_STAGE_OPTIM: Row = {
    "optimizer.name": Orig("sgd", f"{WB1}: optim.SGD"),
    "optimizer.lr": Orig(0.01, f"{WB1}: base_lr = 0.01"),
    "optimizer.momentum": Orig(0.9, f"{WB1}: SGD(momentum=0.9)"),
    "optimizer.nesterov": Orig(False, f"{WB1}: SGD without nesterov"),
    "optimizer.no_decay": Orig([], f"{WB1}: SGD(model.parameters(), weight_decay=...) decays every parameter"),
    "schedule.name": Orig("cosine", f"{WB1}: lr_scheduler.CosineAnnealingLR"),
    "schedule.min_lr": Orig(0.0, f"{WB1}: CosineAnnealingLR(eta_min=0)"),
    "schedule.warmup_epochs": Orig(0, f"{WB1}: no warm-up"),
}
WEIGHT_BALANCING: Row = {
    "data.batch_size": Orig(64, f"{WB1}: batch_size = 64"),
    "data.drop_last": Orig(False, f"{WB1}: DataLoader(shuffle=True), drop_last unset"),
    "data.train_transforms": Orig(CROP_FLIP, f"{WB_DATA}: RandomCrop(32, padding=4), RandomHorizontalFlip()"),
    "data.normalize": Orig(CIFAR_MEAN_STD, f"{WB_DATA}: transforms.Normalize"),
    "data.image_size": Orig(None, f"{WB_DATA}: 32x32 CIFAR images"),
    "model.name": Orig("resnet34", f"{WB1}: ResnetEncoder(encoder_num_layers=34)"),
    "model.head": Orig("linear", f"{WB1}: ResnetEncoder's encoder.fc nn.Linear"),
    "sampler.name": Orig("instance", f"{WB1}: shuffled loader"),
    "train.select_metric": Orig("balanced_accuracy", f"{WB_TRAIN}: best_perClassAcc, the mean per-class accuracy"),
    **staged("stages.0.", WB_STAGE_OPTIM),
    "stages.0.epochs": Orig(320, f"{WB1}: total_epoch_num = 320"),
    "stages.0.loss.name": Orig("ce", f"{WB1}: nn.CrossEntropyLoss()"),
    "stages.0.class_weights.name": Orig("uniform", f"{WB1}: unweighted CE"),
    "stages.0.optimizer.weight_decay": Orig(5e-3, f"{WB1}: weight_decay = 5e-3 (with_WD_model, found by grid search)"),
    "stages.0.optimizer.head_max_norm": Orig(None, f"{WB1}: no constraint in the first stage"),
    **{k: Orig(v.value, v.source.replace(WB1, WB2)) for k, v in staged("stages.1.", WB_STAGE_OPTIM).items()},
    "stages.1.epochs": Orig(10, f"{WB2}: total_epoch_num = 10"),
    "stages.1.freeze_backbone": Orig(True, f"{WB2}: requires_grad False for every parameter but encoder.fc weight and bias"),
    "stages.1.reinit_head": Orig(False, f"{WB2}: the stage-1 model (with_WD_model_best) is the starting point"),
    "stages.1.loss.name": Orig("cb", f"{WB2}: CB_loss"),
    "stages.1.loss.beta": Orig(0.9999, f"{WB2}: CB_loss(..., 'softmax', 0.9999, 2.0)"),
    "stages.1.loss.base": Orig("softmax", f"{WB2}: CB_loss loss_type 'softmax' (BCE of the softmax probabilities: the recipe names the difference)"),
    "stages.1.class_weights.name": Orig("uniform", f"{WB2}: the effective-number weights live in the loss"),
    "stages.1.sampler.name": Orig("instance", f"{WB2}: the stage-1 shuffled loader"),
    "stages.1.optimizer.weight_decay": Orig(0.1, f"{WB2}: weight_decay = 0.1"),
    "stages.1.optimizer.head_max_norm": Orig({"thresh": 0.1, "relative": True},
                                             f"{WB_PGD}: MaxNorm_via_PGD(thresh=0.1), per-layer threshold min + thresh (max - min) of the fc row norms"),
}
GCL_STAGE_OPTIM: Row = {
    "optimizer.name": Orig("sgd", f"{GCL_BB}: torch.optim.SGD"),
    "optimizer.momentum": Orig(0.9, f"{GCL_BB}: --momentum 0.9"),
    "optimizer.nesterov": Orig(False, f"{GCL_BB}: SGD without nesterov"),
    "optimizer.weight_decay": Orig(2e-4, f"{GCL_BB}: --wd 2e-4"),
    "optimizer.no_decay": Orig([], f"{GCL_BB}: SGD(model.parameters(), weight_decay=...) decays every parameter"),
}
GCL_CIFAR: Row = {
    **LDAM_DATA,
    "data.batch_size": Orig(64, f"{GCL_BB}: -b 64 (and {GCL_CLS}: -b 64)"),
    "data.drop_last": Orig(False, f"{GCL_BB}: DataLoader without drop_last"),
    "model.head": Orig("cosine", f"{GCL_MODEL}: NormedLinear (use_norm True for loss_type GCL)"),
    "train.mixing.name": Orig("mixup", f"{GCL_BB}: --mixup True, mixup_data and mixup_criterion (also {GCL_CLS})"),
    "train.mixing.alpha": Orig(1.0, f"{GCL_UTILS}: mixup_data(alpha=1.0), lam = np.random.beta(alpha, alpha)"),
    # stage 1: the backbone and the classifier with GCL
    **staged("stages.0.", GCL_STAGE_OPTIM),
    "stages.0.epochs": Orig(200, f"{GCL_BB}: --epochs 200"),
    "stages.0.optimizer.lr": Orig(0.1, f"{GCL_BB}: --lr 0.1"),
    "stages.0.schedule.name": Orig("multistep", f"{GCL_BB}: adjust_learning_rate"),
    "stages.0.schedule.milestones": Orig([160, 180], f"{GCL_BB}: adjust_learning_rate, x0.1 for epoch > 160, x0.01 for > 180 (1-based)"),
    "stages.0.schedule.gamma": Orig(0.1, f"{GCL_BB}: adjust_learning_rate"),
    "stages.0.schedule.warmup_epochs": Orig(5, f"{GCL_BB}: adjust_learning_rate, lr * epoch / 5 for epoch <= 5"),
    "stages.0.schedule.warmup_start": Orig(None, f"{GCL_BB}: adjust_learning_rate, factor (e+1)/5 from the first epoch"),
    "stages.0.sampler.name": Orig("instance", f"{GCL_BB}: --train_rule None, shuffled loader"),
    "stages.0.class_weights.name": Orig("uniform", f"{GCL_BB}: --train_rule None, per_cls_weights None"),
    "stages.0.freeze_backbone": Orig(False, f"{GCL_BB}: SGD over model.parameters()"),
    "stages.0.loss.name": Orig("gcl", f"{GCL_BB}: --loss_type GCL, {GCL_LOSS} GCLLoss"),
    "stages.0.loss.margin": Orig(0.0, f"{GCL_BB}: GCLLoss(m=0.)"),
    "stages.0.loss.scale": Orig(30, f"{GCL_BB}: GCLLoss(s=30)"),
    "stages.0.loss.noise_mul": Orig(0.5, f"{GCL_BB}: GCLLoss(noise_mul=0.5)"),
    "stages.0.loss.gamma": Orig(0.0, f"{GCL_BB}: GCLLoss train_cls False, plain F.cross_entropy"),
    "stages.0.mixing.name": Orig("mixup", f"{GCL_BB}: --mixup True"),
    # stage 2: the classifier alone, re-sampled
    **{k: Orig(v.value, v.source.replace(GCL_BB, GCL_CLS)) for k, v in staged("stages.1.", GCL_STAGE_OPTIM).items()},
    "stages.1.epochs": Orig(30, f"{GCL_CLS}: --epochs 30"),
    "stages.1.optimizer.lr": Orig(0.002, f"{GCL_CLS}: adjust_learning_rate, param_group lr 0.1 * 0.1 * --lr 0.1 * (1 + cos(pi e / epochs))"),
    "stages.1.schedule.name": Orig("cosine", f"{GCL_CLS}: adjust_learning_rate, cosine of epoch / args.epochs"),
    "stages.1.schedule.min_lr": Orig(0.0, f"{GCL_CLS}: adjust_learning_rate, lr_min = 0"),
    "stages.1.schedule.warmup_epochs": Orig(0, f"{GCL_CLS}: no warm-up"),
    "stages.1.freeze_backbone": Orig(True, f"{GCL_CLS}: requires_grad False for the model, SGD(classifier.parameters()), model.eval()"),
    "stages.1.reinit_head": Orig(False, f"{GCL_CLS}: the classifier loaded from the stage-1 checkpoint's linear.weight"),
    "stages.1.sampler.name": Orig("class_balanced", f"{GCL_SAMPLER}: BalancedDatasetSampler (--train_rule BalancedRS), weights 1/n_y with replacement"),
    "stages.1.class_weights.name": Orig("uniform", f"{GCL_CLS}: BalancedRS, per_cls_weights None"),
    "stages.1.loss.name": Orig("gcl", f"{GCL_CLS}: --loss_type GCL, {GCL_LOSS} GCLLoss"),
    "stages.1.loss.margin": Orig(0.1, f"{GCL_CLS}: GCLLoss(m=0.1)"),
    "stages.1.loss.scale": Orig(20, f"{GCL_CLS}: GCLLoss(s=20)"),
    "stages.1.loss.noise_mul": Orig(0.5, f"{GCL_CLS}: GCLLoss(noise_mul=0.5)"),
    "stages.1.loss.gamma": Orig(1.0, f"{GCL_CLS}: GCLLoss(train_cls=True, gamma=1.), {GCL_LOSS} focal_loss"),
    "stages.1.mixing.name": Orig("mixup", f"{GCL_CLS}: --mixup True"),
}
MISLAS_STAGE_OPTIM: Row = {
    "optimizer.name": Orig("sgd", f"{MISLAS_TRAIN1}: torch.optim.SGD (and {MISLAS_TRAIN2})"),
    "optimizer.lr": Orig(0.1, f"{MISLAS_CFG1}: lr 0.1 (and {MISLAS_CFG2})"),
    "optimizer.momentum": Orig(0.9, f"{MISLAS_CFG1}: momentum 0.9 (and {MISLAS_CFG2})"),
    "optimizer.nesterov": Orig(False, f"{MISLAS_TRAIN1}: SGD without nesterov (and {MISLAS_TRAIN2})"),
    "optimizer.weight_decay": Orig(2e-4, f"{MISLAS_CFG1}: weight_decay 2e-4 (and {MISLAS_CFG2})"),
    "optimizer.no_decay": Orig([], f"{MISLAS_TRAIN1}: SGD param groups with weight_decay=config.weight_decay on every parameter"),
}
MISLAS_CIFAR: Row = {
    "model.name": Orig("resnet32", f"{MISLAS_MODEL}: resnet32_fe (backbone: config backbone 'resnet32_fe')"),
    "model.head": Orig("linear", f"{MISLAS_MODEL}: Classifier, nn.Linear(feat_in=64, num_classes) with bias"),
    "data.image_size": Orig(None, f"{MISLAS_DATA}: 32x32 CIFAR images, never resized"),
    "data.train_transforms": Orig(CROP_FLIP, f"{MISLAS_DATA}: train_transform RandomCrop(32, padding=4), RandomHorizontalFlip()"),
    "data.normalize": Orig(CIFAR_MEAN_STD, f"{MISLAS_DATA}: transforms.Normalize"),
    "data.long_tail.recipe": Orig("ldam", f"{MISLAS_DATA}: IMBALANCECIFAR10 (LDAM-DRW's: seed 0, shuffled per class, int(n_max * imb^(i / 9)))"),
    "data.long_tail.profile": Orig("exp", f"{MISLAS_DATA}: imb_type 'exp'"),
    "data.long_tail.imbalance_ratio": Orig(100, f"{MISLAS_CFG1}: imb_factor 0.01"),
    "data.batch_size": Orig(128, f"{MISLAS_CFG1}: batch_size 128 (and {MISLAS_CFG2})"),
    "data.drop_last": Orig(False, f"{MISLAS_TRAIN1}: the loop breaks at i > int(N / batch_size): the last partial batch is kept"),
    # stage 1: the representation, CE with mixup
    **staged("stages.0.", MISLAS_STAGE_OPTIM),
    "stages.0.epochs": Orig(200, f"{MISLAS_CFG1}: num_epochs 200"),
    "stages.0.schedule.name": Orig("multistep", f"{MISLAS_TRAIN1}: adjust_learning_rate with {MISLAS_CFG1} cos False"),
    "stages.0.schedule.milestones": Orig([160, 180], f"{MISLAS_TRAIN1}: adjust_learning_rate, x0.1 for epoch > 160, x0.01 for > 180 (1-based)"),
    "stages.0.schedule.gamma": Orig(0.1, f"{MISLAS_TRAIN1}: adjust_learning_rate, lr * 0.1 then lr * 0.01"),
    "stages.0.schedule.warmup_epochs": Orig(5, f"{MISLAS_TRAIN1}: adjust_learning_rate, lr * epoch / 5 for epoch <= 5"),
    "stages.0.schedule.warmup_start": Orig(None, f"{MISLAS_TRAIN1}: adjust_learning_rate, factor (e+1)/5 from the first epoch"),
    "stages.0.loss.name": Orig("ce", f"{MISLAS_TRAIN1}: nn.CrossEntropyLoss()"),
    "stages.0.class_weights.name": Orig("uniform", f"{MISLAS_TRAIN1}: no class weights"),
    "stages.0.sampler.name": Orig("instance", f"{MISLAS_DATA}: train_instance, DataLoader(shuffle=True)"),
    "stages.0.freeze_backbone": Orig(False, f"{MISLAS_TRAIN1}: SGD over model.parameters() and classifier.parameters()"),
    "stages.0.mixing.name": Orig("mixup", f"{MISLAS_CFG1}: mixup True; {MISLAS_METHODS} mixup_data and mixup_criterion"),
    "stages.0.mixing.alpha": Orig(1.0, f"{MISLAS_CFG1}: alpha 1.0 (np.random.beta(alpha, alpha), one per batch)"),
    # stage 2: the classifier and its logit scales on the frozen backbone, LAS, class-aware sampling
    **{k: Orig(v.value, v.source.replace(MISLAS_TRAIN1, MISLAS_TRAIN2).replace(MISLAS_CFG1, MISLAS_CFG2))
       for k, v in staged("stages.1.", MISLAS_STAGE_OPTIM).items()},
    "stages.1.epochs": Orig(10, f"{MISLAS_CFG2}: num_epochs 10"),
    "stages.1.optimizer.lr_mult": Orig({"head.weight": 0.5, "head.bias": 0.5},
                                       f"{MISLAS_TRAIN2}: adjust_learning_rate, param group 0 (the classifier) at lr_factor 0.5 ({MISLAS_CFG2}), "
                                       "group 1 (LearnableWeightScaling) at 1.0"),
    "stages.1.schedule.name": Orig("cosine", f"{MISLAS_TRAIN2}: adjust_learning_rate, 0.5 lr (1 + cos(epoch / num_epochs * pi))"),
    "stages.1.schedule.min_lr": Orig(0.0, f"{MISLAS_TRAIN2}: adjust_learning_rate, lr_min = 0"),
    "stages.1.schedule.warmup_epochs": Orig(0, f"{MISLAS_TRAIN2}: no warm-up"),
    "stages.1.freeze_backbone": Orig(True, f"{MISLAS_TRAIN2}: features under torch.no_grad, SGD over classifier and lws_model only"),
    "stages.1.train_norm": Orig(False, f"{MISLAS_CFG2}: shift_bn False, so {MISLAS_TRAIN2} keeps model.eval()"),
    "stages.1.reinit_head": Orig(False, f"{MISLAS_TRAIN2}: the classifier loaded from the stage-1 checkpoint (state_dict_classifier)"),
    "stages.1.head": Orig("scaled_linear", f"{MISLAS_METHODS}: LearnableWeightScaling, learned_norm (ones) * classifier(feat)"),
    "stages.1.sampler.name": Orig("class_balanced", f"{MISLAS_SAMPLER}: ClassAwareSampler (datasets/cifar10.py train_balance)"),
    "stages.1.sampler.num_samples": Orig(12544, f"{MISLAS_TRAIN2}: end_steps = ceil(N / batch_size), the loop breaks at i > end_steps: 98 batches of 128"),
    "stages.1.class_weights.name": Orig("uniform", f"{MISLAS_TRAIN2}: no class weights"),
    "stages.1.loss.name": Orig("las", f"{MISLAS_TRAIN2}: LabelAwareSmoothing, {MISLAS_METHODS}"),
    "stages.1.loss.smooth_head": Orig(0.3, f"{MISLAS_CFG2}: smooth_head 0.3"),
    "stages.1.loss.smooth_tail": Orig(0.0, f"{MISLAS_CFG2}: smooth_tail 0.0"),
    "stages.1.loss.shape": Orig("concave", f"{MISLAS_METHODS}: LabelAwareSmoothing(shape='concave'), which {MISLAS_TRAIN2} does not set"),
    "stages.1.loss.power": Orig(None, f"{MISLAS_METHODS}: LabelAwareSmoothing(power=None)"),
    "stages.1.mixing": Orig(None, f"{MISLAS_CFG2}: mixup False"),
}
RIDE_REPO = "frank-xwang/RIDE-LongTailRecognition"
RIDE_CFG = f"{RIDE_REPO} configs/config_imbalance_cifar100_ride.json"
RIDE_README = f"{RIDE_REPO} README.md"
RIDE_MODEL = f"{RIDE_REPO} model/ldam_drw_resnets/ride_resnet_cifar.py"
RIDE_LOSS = f"{RIDE_REPO} model/loss.py"
RIDE_TRAIN = f"{RIDE_REPO} train.py"
RIDE_DATA = f"{RIDE_REPO} data_loader/cifar_data_loaders.py"
RIDE_EPOCHS = f"{RIDE_REPO} base/base_trainer.py"
RIDE_CIFAR: Row = {
    "train.epochs": Orig(200, f"{RIDE_CFG}: trainer epochs 200"),
    "data.batch_size": Orig(128, f"{RIDE_CFG}: data_loader batch_size 128"),
    "data.drop_last": Orig(False, f"{RIDE_DATA}: ImbalanceCIFAR100DataLoader is a DataLoader without drop_last"),
    "sampler.name": Orig("instance", f"{RIDE_CFG}: shuffle true, balanced unset"),
    "data.image_size": Orig(None, f"{RIDE_DATA}: 32x32 CIFAR images, never resized"),
    "data.train_transforms": Orig([*CROP_FLIP, {"name": "random_rotation", "degrees": 15}],
                                  f"{RIDE_DATA}: RandomCrop(32, padding=4), RandomHorizontalFlip(), RandomRotation(15)"),
    "data.normalize": Orig(CIFAR_MEAN_STD, f"{RIDE_DATA}: transforms.Normalize(mean=[0.4914, 0.4822, 0.4465], std=[0.2023, 0.1994, 0.2010])"),
    "optimizer.name": Orig("sgd", f"{RIDE_CFG}: optimizer SGD"),
    "optimizer.lr": Orig(0.1, f"{RIDE_CFG}: lr 0.1"),
    "optimizer.momentum": Orig(0.9, f"{RIDE_CFG}: momentum 0.9"),
    "optimizer.nesterov": Orig(True, f"{RIDE_CFG}: nesterov true"),
    "optimizer.weight_decay": Orig(5e-4, f"{RIDE_CFG}: weight_decay 5e-4"),
    "optimizer.no_decay": Orig([], f"{RIDE_TRAIN}: config.init_obj('optimizer', torch.optim, model.parameters()) decays every parameter"),
    "schedule.name": Orig("multistep", f"{RIDE_TRAIN}: CustomLR, a LambdaLR stepped after each epoch"),
    "schedule.milestones": Orig([160, 180], f"{RIDE_CFG}: step1 160, step2 180 (0-based epochs of LambdaLR)"),
    "schedule.gamma": Orig(0.01, f"{RIDE_CFG}: gamma 0.01 (x gamma from step1, x gamma^2 from step2)"),
    "schedule.warmup_epochs": Orig(5, f"{RIDE_CFG}: warmup_epoch 5"),
    "schedule.warmup_start": Orig(None, f"{RIDE_TRAIN}: lr_lambda, factor (1 + epoch) / warmup_epoch from the first epoch"),
    "model.name": Orig("ride_resnet32", f"{RIDE_CFG}: ResNet32Model with num_experts > 1 ({RIDE_MODEL})"),
    "model.num_experts": Orig(3, f"{RIDE_CFG}: num_experts 3 (and {RIDE_README}: --num_experts 3)"),
    "model.reduce_dimension": Orig(True, f"{RIDE_CFG}: reduce_dimension true, layer2/layer3 widths 24/48 in {RIDE_MODEL}"),
    "model.scale": Orig(30, f"{RIDE_MODEL}: ResNet_s(s=30), each expert's logits out * self.s"),
    "model.head": Orig("cosine", f"{RIDE_CFG}: use_norm true, NormedLinear experts"),
    "loss.name": Orig("ride", f"{RIDE_CFG}: loss RIDELoss ({RIDE_LOSS})"),
    "loss.max_margin": Orig(0.5, f"{RIDE_LOSS}: RIDELoss(max_m=0.5)"),
    "loss.scale": Orig(30, f"{RIDE_LOSS}: RIDELoss(s=30), margins x s on the scaled logits"),
    "loss.base_loss_factor": Orig(1.0, f"{RIDE_LOSS}: RIDELoss(base_loss_factor=1.0)"),
    "loss.additional_diversity_factor": Orig(-0.45, f"{RIDE_CFG}: additional_diversity_factor -0.45"),
    "loss.temperature": Orig(1.0, f"{RIDE_LOSS}: RIDELoss(base_diversity_temperature=1.0)"),
    "loss.reweight_factor": Orig(0.05, f"{RIDE_LOSS}: RIDELoss(reweight_factor=0.05)"),
    "class_weights.name": Orig("drw", f"{RIDE_CFG}: reweight true, reweight_epoch 160"),
    "class_weights.kind": Orig("effective_number", f"{RIDE_LOSS}: per_cls_weights (1 - beta) / (1 - beta^n), normalised to sum C"),
    "class_weights.beta": Orig(0.9999, f"{RIDE_LOSS}: betas = [0, 0.9999], idx 1"),
    "class_weights.start_epoch": Orig(161, f"{RIDE_LOSS}: _hook_before_epoch, epoch > reweight_epoch 160 ({RIDE_EPOCHS}: 1-based epochs)"),
}
RIDE_EA_CFG = f"{RIDE_REPO} configs/config_imbalance_cifar100_ride_ea.json"
RIDE_EA_MODEL = f"{RIDE_REPO} model/ldam_drw_resnets/ea_resnet_cifar.py"
RIDE_EA: Row = {
    **{k: v for k, v in RIDE_CIFAR.items() if k != "train.epochs"},
    "stages.0.epochs": Orig(200, f"{RIDE_CFG}: trainer epochs 200 (the RIDE model the EA stage starts from)"),
    "model.router": Orig(True, f"{RIDE_EA_CFG}: ResNet32EAModel ({RIDE_EA_MODEL}: expert_help_pred_hidden_fcs, expert_help_pred_fc)"),
    "stages.1.epochs": Orig(5, f"{RIDE_EA_CFG}: trainer epochs 5"),
    "stages.1.train_only": Orig("router", f"{RIDE_EA_MODEL}: requires_grad only for 'expert_help_pred' parameters, frozen BN in eval"),
    "stages.1.loss.name": Orig("ride_router", f"{RIDE_EA_MODEL}: forward(x, target) returns the routers' BCE as the loss"),
    "stages.1.loss.pos_weight": Orig(100.0, f"{RIDE_EA_CFG}: pos_weight 100"),
    "stages.1.sampler.name": Orig("class_balanced", f"{RIDE_EA_CFG}: data_loader balanced true"),
    "stages.1.optimizer.name": Orig("sgd", f"{RIDE_EA_CFG}: optimizer SGD"),
    "stages.1.optimizer.lr": Orig(0.01, f"{RIDE_EA_CFG}: lr 0.01"),
    "stages.1.optimizer.momentum": Orig(0.9, f"{RIDE_EA_CFG}: momentum 0.9"),
    "stages.1.optimizer.nesterov": Orig(True, f"{RIDE_EA_CFG}: nesterov true"),
    "stages.1.optimizer.weight_decay": Orig(5e-4, f"{RIDE_EA_CFG}: weight_decay 5e-4"),
    "stages.1.schedule.name": Orig("cosine", f"{RIDE_EA_CFG}: CosineAnnealingLR T_max 5 (the stage's epochs)"),
    "stages.1.schedule.min_lr": Orig(0.0, f"{RIDE_EA_CFG}: eta_min 0.0"),
    "stages.1.schedule.warmup_epochs": Orig(0, f"{RIDE_EA_CFG}: no warm-up in the EA stage"),
}
SADE_REPO = "Vanint/SADE-AgnosticLT"
SADE_CFG = f"{SADE_REPO} configs/config_cifar100_ir100_sade.json"
SADE_MODEL = f"{SADE_REPO} model/ldam_drw_resnets/expert_resnet_cifar.py"
SADE_LOSS = f"{SADE_REPO} model/loss.py"
SADE_TRAIN = f"{SADE_REPO} train.py"
SADE_DATA = f"{SADE_REPO} data_loader/cifar_data_loaders.py"
SADE_CIFAR: Row = {
    **{k: v for k, v in RIDE_CIFAR.items() if not k.startswith(("loss.", "class_weights.", "schedule.", "optimizer.", "model.", "data."))},
    "train.epochs": Orig(200, f"{SADE_CFG}: trainer epochs 200"),
    "data.batch_size": Orig(128, f"{SADE_CFG}: data_loader batch_size 128"),
    "data.drop_last": Orig(False, f"{SADE_DATA}: ImbalanceCIFAR100DataLoader is a DataLoader without drop_last"),
    "data.image_size": Orig(None, f"{SADE_DATA}: 32x32 CIFAR images, never resized"),
    "data.train_transforms": Orig([*CROP_FLIP, {"name": "random_rotation", "degrees": 15}],
                                  f"{SADE_DATA}: RandomCrop(32, padding=4), RandomHorizontalFlip(), RandomRotation(15)"),
    "data.normalize": Orig(CIFAR_MEAN_STD, f"{SADE_DATA}: transforms.Normalize(mean=[0.4914, 0.4822, 0.4465], std=[0.2023, 0.1994, 0.2010])"),
    "optimizer.name": Orig("sgd", f"{SADE_CFG}: optimizer SGD"),
    "optimizer.lr": Orig(0.1, f"{SADE_CFG}: lr 0.1"),
    "optimizer.momentum": Orig(0.9, f"{SADE_CFG}: momentum 0.9"),
    "optimizer.nesterov": Orig(True, f"{SADE_CFG}: nesterov true"),
    "optimizer.weight_decay": Orig(5e-4, f"{SADE_CFG}: weight_decay 5e-4"),
    "optimizer.no_decay": Orig([], f"{SADE_TRAIN}: config.init_obj('optimizer', torch.optim, model.parameters()) decays every parameter"),
    "schedule.name": Orig("multistep", f"{SADE_TRAIN}: CustomLR, a LambdaLR stepped after each epoch"),
    "schedule.milestones": Orig([160, 180], f"{SADE_CFG}: step1 160, step2 180 (0-based epochs of LambdaLR)"),
    "schedule.gamma": Orig(0.1, f"{SADE_CFG}: gamma 0.1 (x gamma from step1, x gamma^2 from step2)"),
    "schedule.warmup_epochs": Orig(5, f"{SADE_CFG}: warmup_epoch 5"),
    "schedule.warmup_start": Orig(None, f"{SADE_TRAIN}: lr_lambda, factor (1 + epoch) / warmup_epoch from the first epoch"),
    "model.name": Orig("ride_resnet32", f"{SADE_CFG}: ResNet32Model with num_experts 3 ({SADE_MODEL}: RIDE's ResNet_s)"),
    "model.num_experts": Orig(3, f"{SADE_CFG}: num_experts 3"),
    "model.reduce_dimension": Orig(True, f"{SADE_CFG}: reduce_dimension true, layer2/layer3 widths 24/48 in {SADE_MODEL}"),
    "model.scale": Orig(30, f"{SADE_MODEL}: ResNet_s(s=30), each expert's logits out * self.s"),
    "model.head": Orig("cosine", f"{SADE_CFG}: use_norm true, NormedLinear experts"),
    "loss.name": Orig("sade", f"{SADE_CFG}: loss DiverseExpertLoss ({SADE_LOSS})"),
    "loss.tau": Orig(2.0, f"{SADE_CFG}: DiverseExpertLoss tau 2"),
    "class_weights.name": Orig("uniform", f"{SADE_LOSS}: DiverseExpertLoss takes no class weights"),
}
BCL_REPO = "FlamieZhu/Balanced-Contrastive-Learning"
BCL_MAIN = f"{BCL_REPO} main.py"
BCL_MODEL = f"{BCL_REPO} models/resnext.py"
BCL_LA = f"{BCL_REPO} loss/logitadjust.py"
BCL_SCL = f"{BCL_REPO} loss/contrastive.py"
# the official code has no CIFAR script: main.py's defaults (ImageNet-LT / iNaturalist), on ce.yaml's CIFAR data
BCL_CIFAR: Row = {
    "train.epochs": Orig(90, f"{BCL_MAIN}: --epochs default 90"),
    "data.batch_size": Orig(256, f"{BCL_MAIN}: -b / --batch-size default 256"),
    "data.drop_last": Orig(False, f"{BCL_MAIN}: train_loader is a DataLoader without drop_last"),
    "sampler.name": Orig("instance", f"{BCL_MAIN}: train_sampler None, shuffle True"),
    "class_weights.name": Orig("uniform", f"{BCL_MAIN}: LogitAdjust(cls_num_list), weight None"),
    "train.mixing": Orig(None, f"{BCL_MAIN}: no mixing"),
    "optimizer.name": Orig("sgd", f"{BCL_MAIN}: torch.optim.SGD"),
    "optimizer.lr": Orig(0.1, f"{BCL_MAIN}: --lr default 0.1"),
    "optimizer.momentum": Orig(0.9, f"{BCL_MAIN}: --momentum default 0.9"),
    "optimizer.nesterov": Orig(False, f"{BCL_MAIN}: SGD without nesterov"),
    "optimizer.weight_decay": Orig(5e-4, f"{BCL_MAIN}: --wd default 5e-4"),
    "optimizer.no_decay": Orig([], f"{BCL_MAIN}: SGD(model.parameters(), weight_decay=...) decays every parameter"),
    "schedule.name": Orig("cosine", f"{BCL_MAIN}: --cos True, adjust_lr"),
    "schedule.warmup_epochs": Orig(0, f"{BCL_MAIN}: --warmup_epochs default 0"),
    "schedule.min_lr": Orig(0.0, f"{BCL_MAIN}: adjust_lr, lr * 0.5 (1 + cos(...)) decays towards 0"),
    "schedule.epoch_offset": Orig(1, f"{BCL_MAIN}: adjust_lr, cos(pi (epoch - warmup + 1) / (epochs - warmup + 1)) for 0-based epochs"),
    "model.head": Orig("cosine", f"{BCL_MAIN}: --use_norm True, {BCL_MODEL} NormedLinear"),
    "model.contrastive.dim": Orig(1024, f"{BCL_MAIN}: --feat_dim default 1024 ({BCL_MODEL} BCLModel feat_dim)"),
    "model.contrastive.hidden": Orig(None, f"{BCL_MODEL}: BCLModel head and head_fc Linear(dim_in, dim_in), the feature width"),
    "method.name": Orig("bcl", f"{BCL_MAIN}: train, three views in one forward pass, logits of the first, projections of the other two"),
    "method.views": Orig(2, f"{BCL_MAIN}: train, f2 and f3 feed criterion_scl"),
    "loss.name": Orig("bcl", f"{BCL_MAIN}: alpha * ce_loss + beta * scl_loss ({BCL_LA} LogitAdjust, {BCL_SCL} BalSCL)"),
    "loss.alpha": Orig(1.0, f"{BCL_MAIN}: --alpha default 1.0"),
    "loss.beta": Orig(0.35, f"{BCL_MAIN}: --beta default 0.35"),
    "loss.temperature": Orig(0.07, f"{BCL_MAIN}: --temp default 0.07, BalSCL(cls_num_list, args.temp)"),
    "loss.tau": Orig(1.0, f"{BCL_LA}: LogitAdjust(tau=1)"),
    "loss.scale": Orig(30, f"{BCL_MODEL}: NormedLinear self.s = 30"),
}
POSTHOC_LA: Row = {
    "posthoc.logit_adjust": Orig(True, f"{LA}: post-hoc logit adjustment of an ERM model"),
    "posthoc.tau_norm": Orig(False, f"{LA}: no tau-normalisation"),
}


def without(row: Row, *keys: str) -> Row:
    return {k: v for k, v in row.items() if k not in keys}


def cifar_ldam(method: Row) -> Row:
    """LDAM-DRW's CIFAR protocol with ``method``'s loss (CE where the method sets none)."""
    return {**LDAM_PROTOCOL, **CE_LOSS, **method}


def restaged(row: Row, old: str, new: str) -> Row:
    """``row`` with its stage prefix ``old`` (``stages.1.``) read from stage ``new`` instead."""
    return {new + k[len(old) :] if k.startswith(old) else k: v for k, v in row.items()}


def after_head_warmup(row: Row) -> Row:
    """A staged original's row read one stage later: a ``*_pretrained`` recipe puts ce_pretrained.yaml's head
    warm-up first, so the original's stage N is the recipe's stage N + 1."""
    def shifted(key: str) -> str:
        match = re.match(r"stages\.(\d+)\.(.*)", key)
        return f"stages.{int(match.group(1)) + 1}.{match.group(2)}" if match else key
    return {shifted(k): v for k, v in row.items()}


def method_at_budget(protocol: Row, method: Row) -> Row:
    """A method run on other data: the original protocol without its data-bound settings."""
    data_bound = ("data.image_size", "data.normalize", "data.train_transforms", "data.eval_transforms", "model.name", "model.arch", "model.pretrained")
    return without({**protocol, **method}, *data_bound)


# --------------------------------------------- ImageNet-LT / iNaturalist 2018 (classifier-balancing)
CLS_FEAT = "facebookresearch/classifier-balancing config/ImageNet_LT/feat_uniform.yaml"
CLS_UTILS = "facebookresearch/classifier-balancing utils.py"
CLS_README = "facebookresearch/classifier-balancing README.md"
CDB_IN = "hitachi-rd-cv/CDB-loss ImageNet-LT/config/ImageNet_LT/feat_uniform_with_CDBloss.yaml"
CDB_IN_DATA = "hitachi-rd-cv/CDB-loss ImageNet-LT/data/dataloader.py"
IMAGENET_LT_REWRITE = [["^train/", "ILSVRC2012_img_train/"], ["^val/[^/]+/", "ILSVRC2012_img_val/"]]

CLS_BAL_PROTOCOL: Row = {
    "train.epochs": Orig(90, f"{CLS_FEAT}: num_epochs 90"),
    "data.batch_size": Orig(512, f"{CLS_FEAT}: batch_size 512"),
    "data.drop_last": Orig(False, f"{CLS_FEAT}: DataLoader without drop_last"),
    "sampler.name": Orig("instance", f"{CLS_FEAT}: sampler null (shuffled instance sampling)"),
    "loss.name": Orig("ce", f"{CLS_FEAT}: SoftmaxLoss"),
    "optimizer.name": Orig("sgd", f"{CLS_FEAT}: optim_params SGD"),
    "optimizer.lr": Orig(0.2, f"{CLS_FEAT}: lr 0.2 (feature and classifier)"),
    "optimizer.momentum": Orig(0.9, f"{CLS_FEAT}: momentum 0.9"),
    "optimizer.weight_decay": Orig(5e-4, f"{CLS_FEAT}: weight_decay 0.0005"),
    "optimizer.no_decay": Orig([], f"{CLS_FEAT}: one weight decay for every parameter"),
    "schedule.name": Orig("cosine", f"{CLS_FEAT}: coslr true"),
    "schedule.min_lr": Orig(0.0, f"{CLS_FEAT}: endlr 0.0"),
    "schedule.warmup_epochs": Orig(0, f"{CLS_FEAT}: no warm-up"),
    "data.normalize": Orig("imagenet", f"{CLS_FEAT}: ImageNet mean/std in the data transforms"),
    "eval.shot_thresholds": Orig([100, 20], f"{CLS_UTILS}: shot_acc many_shot_thr=100, low_shot_thr=20"),
}
IMAGENET_LT_DATA: Row = {
    "data.source.name": Orig("list_file", f"{CDB_IN_DATA}: ImageNet_LT_{{train,val,test}}.txt '<path> <label>' lines"),
    "data.source.num_classes": Orig(1000, f"{CDB_IN_DATA}: 1000 classes"),
    "data.source.rewrite": Orig(IMAGENET_LT_REWRITE, f"{CDB_IN_DATA}: train/ -> ILSVRC2012_img_train/, val/<wnid>/<f> -> ILSVRC2012_img_val/<f>"),
    "model.name": Orig("resnet10", f"{CDB_IN}: ResNet10Feature (512-d) + DotProductClassifier"),
}
IMAGENET_LT_RESNET10: Row = {**CLS_BAL_PROTOCOL, **IMAGENET_LT_DATA}
CLS_LWS = "facebookresearch/classifier-balancing config/ImageNet_LT/cls_lws.yaml"
LWS_STAGE: Row = {
    **{k: Orig(v.value, v.source.replace(CRT, CLS_LWS)) for k, v in CRT_STAGE.items() if k != "stages.1.reinit_head"},
    "stages.1.epochs": Orig(5, f"{CLS_LWS}: num_epochs 5"),
    "stages.1.head": Orig("lws", f"{CLS_LWS}: TauNormClassifier with a learnable scale per class on the stage-1 classifier"),
    "stages.1.reinit_head": Orig(False, f"{CLS_LWS}: model_dir, the stage-1 model is the starting point"),
}
RESNEXT50: Row = {"model.name": Orig("torchvision", f"{CLS_FEAT}: feat_model ./models/ResNext50Feature.py"),
                  "model.arch": Orig("resnext50_32x4d", f"{CLS_FEAT}: backbone resnext50 (ResNeXt-50 32x4d)")}

CLS_INAT = "facebookresearch/classifier-balancing config/iNaturalist18/feat_unifrom.yaml"  # (sic)
CLS_INAT_CRT = "facebookresearch/classifier-balancing config/iNaturalist18/cls_crt.yaml"
INAT2018_RESNET50: Row = {
    **{k: Orig(v.value, v.source.replace(CLS_FEAT, CLS_INAT)) for k, v in CLS_BAL_PROTOCOL.items()},
    "optimizer.weight_decay": Orig(1e-4, f"{CLS_INAT}: weight_decay 0.0001"),
    "data.source.name": Orig("inat_json", f"{CLS_INAT}: the iNaturalist 2018 images and labels (official JSON)"),
    "model.name": Orig("torchvision", f"{CLS_INAT}: ResNet-50"),
    "model.arch": Orig("resnet50", f"{CLS_INAT}: ResNet-50"),
}

def decoupled(row: Row, stage: Row) -> Row:
    """A 90-epoch representation (stage 0) and a classifier stage (stage 1) of classifier-balancing."""
    return {**without(row, "train.epochs"), "stages.0.epochs": Orig(90, f"{CLS_FEAT}: num_epochs 90 (the representation)"), **stage}


PROTOCOLS: dict[str, Row] = {
    # ---- CIFAR-10/100-LT: the originals' own protocols
    "cifar10_lt/ce.yaml": cifar_ldam({}),
    "cifar10_lt/ldam_drw.yaml": cifar_ldam(LDAM_DRW_METHOD),
    "cifar10_lt/balanced_softmax.yaml": cifar_ldam(BALANCED_SOFTMAX),
    "cifar10_lt/cb_focal.yaml": cifar_ldam(CB_FOCAL),
    "cifar10_lt/logit_adjust.yaml": cifar_ldam(LOGIT_ADJUSTED_LOSS),
    "cifar10_lt/cdb_ce.yaml": cifar_ldam(without(CDB_METHOD, "train.select_metric")),
    "cifar10_lt/hml1.yaml": {**HML1_CIFAR, "model.head": CE_LOSS["model.head"]},
    "cifar10_lt/bbn.yaml": BBN_CIFAR,
    "cifar10_lt/lade.yaml": cifar_ldam(LADE_METHOD),
    "cifar10_lt/weight_balancing.yaml": {**without(LDAM_DATA, "model.name"), **WEIGHT_BALANCING},
    "cifar10_lt/gcl.yaml": GCL_CIFAR,
    "cifar10_lt/ride.yaml": RIDE_CIFAR,
    "cifar10_lt/bcl.yaml": BCL_CIFAR,
    "cifar10_lt/sade.yaml": SADE_CIFAR,
    "cifar10_lt/ride_ea.yaml": RIDE_EA,
    "cifar10_lt/mislas.yaml": MISLAS_CIFAR,
    "cifar10_lt/crt_tau_norm.yaml": {
        **without(LDAM_PROTOCOL, "train.epochs"),
        **CE_LOSS,
        "stages.0.epochs": Orig(200, f"{LDAM}: --epochs 200 (the CE representation)"),
        **CRT_STAGE,
    },
    "cifar100_lt/cdb_ce.yaml": CDB_CIFAR,
    # ---- EGTEA Gaze+ verbs: CDB loss's own protocol
    "egtea/ce.yaml": EGTEA_PROTOCOL,
    "egtea/cdb_ce.yaml": {**EGTEA_PROTOCOL, **EGTEA_CDB_METHOD},
    # ---- ISIC 2018, MedMNIST, SD-198: the originals' own protocols
    "isic2018/mbit.yaml": MBIT_ISIC,
    "isic2017/mbit.yaml": MBIT_ISIC2017,
    "isic2019/mbit.yaml": MBIT_ISIC2019,
    "derm7pt/mbit.yaml": MBIT_DERM7PT,
    "isic2019/hml_mel_nv.yaml": HML_ISIC_MEL_NV,
    "medmnist/ce.yaml": MEDMNIST_PROTOCOL,
    "sd198/ce.yaml": {**SPBL_CNN, **SPBL_SD198_DATA},
    "sd198/spbl.yaml": {**SPBL_CNN, **SPBL_SD198_DATA, **SPBL_PACES},
    # ---- methods at a CPU budget on HAM10000 (base: ham10000/ce.yaml)
    "ham10000/ldam_drw.yaml": method_at_budget(LDAM_PROTOCOL, LDAM_DRW_METHOD),
    "ham10000/balanced_softmax.yaml": BALANCED_SOFTMAX,
    "ham10000/cb_focal.yaml": method_at_budget(LDAM_PROTOCOL, CB_FOCAL),
    "ham10000/logit_adjust.yaml": POSTHOC_LA,
    "ham10000/cdb_ce.yaml": method_at_budget(without(CDB_CIFAR, "data.long_tail.recipe", "data.long_tail.val_per_class"), {}),
    "ham10000/hml1.yaml": method_at_budget(HML1_CIFAR, {}),
    # the ISIC study's class names are ISIC 2019's (NV, MEL): HAM10000 has its own (nv, mel)
    "ham10000/hml_mel_nv.yaml": without(method_at_budget(HML_ISIC_MEL_NV, {}), "data.classes.keep"),
    "ham10000/crt.yaml": {**method_at_budget(without(LDAM_PROTOCOL, "train.epochs"), CE_LOSS), **CRT_STAGE},
    "ham10000/mbit.yaml": {**method_at_budget(MBIT_METHOD, {}), "data.train_transforms": MBIT_METHOD["data.train_transforms"]},
    "ham10000/spbl.yaml": method_at_budget({**SPBL_CNN, **SPBL_PACES}, {}),
    # ---- methods fine-tuned from ImageNet weights at a CPU budget (base: ham10000/ce_pretrained.yaml)
    "ham10000/balanced_softmax_pretrained.yaml": BALANCED_SOFTMAX,
    "ham10000/logit_adjust_pretrained.yaml": POSTHOC_LA,
    "ham10000/lade_pretrained.yaml": LADE_METHOD,
    # staged originals behind ce_pretrained.yaml's head warm-up (stage 0); their CIFAR-only keys left out
    "ham10000/weight_balancing_pretrained.yaml": after_head_warmup(method_at_budget(WEIGHT_BALANCING, {})),
    "ham10000/mislas_pretrained.yaml": after_head_warmup(method_at_budget(
        without(MISLAS_CIFAR, "data.long_tail.recipe", "data.long_tail.profile", "data.long_tail.imbalance_ratio"), {})),
    # staged (0: head warm-up, 1: fine-tuning, 2: cRT's classifier re-training): train.epochs is unused,
    # the originals' epochs are compared with the stage that does their training
    "ham10000/crt_pretrained.yaml": {
        **method_at_budget(without(LDAM_PROTOCOL, "train.epochs"), CE_LOSS),
        "stages.1.epochs": Orig(200, f"{LDAM}: --epochs 200 (the CE representation)"),
        **restaged(CRT_STAGE, "stages.1.", "stages.2."),
    },
    # a timm backbone takes no DropBlock (the recipe's header says so): those kwargs do not exist there
    "ham10000/mbit_pretrained.yaml": {
        **method_at_budget(without(MBIT_METHOD, "train.epochs", "model.drop_block_prob", "model.drop_block_size", "model.drop_block_steps"), {}),
        "stages.1.epochs": MBIT_METHOD["train.epochs"],
        "data.train_transforms": MBIT_METHOD["data.train_transforms"],
    },
    # MedMNIST's protocol at the HAM10000 fine-tuning budget (base: ham10000/ce_pretrained.yaml, staged)
    "medmnist/ce_pretrained.yaml": {
        **method_at_budget(without(MEDMNIST_PROTOCOL, "train.epochs"), {}),
        "stages.1.epochs": MEDMNIST_PROTOCOL["train.epochs"],
    },
    "medmnist/logit_adjust_pretrained.yaml": {
        **method_at_budget(without(MEDMNIST_PROTOCOL, "train.epochs"), {}),
        "stages.1.epochs": MEDMNIST_PROTOCOL["train.epochs"],
        **POSTHOC_LA,
    },
    # ---- methods at MedMNIST's budget (base: medmnist/ce.yaml)
    "medmnist/ldam_drw.yaml": method_at_budget(LDAM_PROTOCOL, LDAM_DRW_METHOD),
    "medmnist/balanced_softmax.yaml": BALANCED_SOFTMAX,
    "medmnist/cb_focal.yaml": method_at_budget(LDAM_PROTOCOL, CB_FOCAL),
    "medmnist/logit_adjust.yaml": POSTHOC_LA,
    "medmnist/crt.yaml": {**method_at_budget(without(LDAM_PROTOCOL, "train.epochs"), CE_LOSS), **CRT_STAGE},
    "medmnist/mbit.yaml": {**method_at_budget(MBIT_METHOD, {}), "data.train_transforms": MBIT_METHOD["data.train_transforms"]},
    # ---- ImageNet-LT: the classifier-balancing protocol (ResNet-10, ResNeXt-50) and CDB-CE's
    "imagenet_lt/ce_resnet10.yaml": IMAGENET_LT_RESNET10,
    "imagenet_lt/crt_resnet10.yaml": decoupled(IMAGENET_LT_RESNET10, CRT_STAGE),
    "imagenet_lt/lws_resnet10.yaml": decoupled(IMAGENET_LT_RESNET10, LWS_STAGE),
    "imagenet_lt/tau_norm_resnet10.yaml": {**IMAGENET_LT_RESNET10, "posthoc.tau_norm": Orig(True, f"{CLS_README}: tau-normalised classifier"), "posthoc.tau_norm_bias": Orig("drop", "facebookresearch/classifier-balancing tau_norm.py: torch.mm(feat, ws.t()), the fc bias never added")},
    "imagenet_lt/cdb_ce_resnet10.yaml": {
        **IMAGENET_LT_RESNET10,
        "optimizer.weight_decay": Orig(2e-4, f"{CDB_IN}: weight_decay 0.0002"),
        "loss.name": Orig("cdb_ce", f"{CDB_IN}: CDBSoftmaxLoss"),
        "loss.tau": Orig(1.0, f"{CDB_IN}: tau 1"),
        "loss.reduction": Orig("weighted_mean", "hitachi-rd-cv/CDB-loss ImageNet-LT/loss/CDBSoftmaxLoss.py: nn.CrossEntropyLoss(weight=cdb_weights), default reduction"),
        "train.val_every": Orig(1, f"{CDB_IN}: the criterion is rebuilt after every epoch's validation"),
    },
    "imagenet_lt/ce_resnext50.yaml": {**IMAGENET_LT_RESNET10, **RESNEXT50},
    "imagenet_lt/crt_resnext50.yaml": {**decoupled(IMAGENET_LT_RESNET10, CRT_STAGE), **RESNEXT50},
    "imagenet_lt/lws_resnext50.yaml": {**decoupled(IMAGENET_LT_RESNET10, LWS_STAGE), **RESNEXT50},
    "imagenet_lt/tau_norm_resnext50.yaml": {**IMAGENET_LT_RESNET10, **RESNEXT50, "posthoc.tau_norm": Orig(True, f"{CLS_README}: tau-normalised classifier"), "posthoc.tau_norm_bias": Orig("drop", "facebookresearch/classifier-balancing tau_norm.py: torch.mm(feat, ws.t()), the fc bias never added")},
    # ---- iNaturalist 2018: the classifier-balancing protocol (ResNet-50)
    "inat2018/ce_resnet50.yaml": INAT2018_RESNET50,
    "inat2018/crt_resnet50.yaml": decoupled(INAT2018_RESNET50, {
        **{k: Orig(v.value, v.source.replace(CRT, CLS_INAT_CRT)) for k, v in CRT_STAGE.items()},
        "stages.1.epochs": Orig(30, f"{CLS_INAT_CRT}: num_epochs 30"),
        "stages.1.optimizer.weight_decay": Orig(1e-4, f"{CLS_INAT_CRT}: weight_decay 0.0001"),
    }),
    # ---- one loss, no protocol (user templates)
    "quickstart.yaml": BALANCED_SOFTMAX,
    "finetune_pretrained.yaml": BALANCED_SOFTMAX,
}

#: names a paper ("et al.") or one of the original code bases the rows cite
NAMES_AN_ORIGINAL = re.compile(
    r"et al\.|" + "|".join(re.escape(repo) for repo in sorted({o.source.split()[0] for row in PROTOCOLS.values() for o in row.values()}))
)


# --------------------------------------------------------------------------------- reading
def header(path: Path) -> str:
    """The leading ``#`` comment block of a YAML file."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def header_chain(path: Path) -> str:
    """The recipe's header and those of the ``base:`` files it extends (which it inherits from)."""
    import yaml

    text, seen = [], set()
    while path not in seen:
        seen.add(path)
        text.append(header(path))
        base = (yaml.safe_load(path.read_text()) or {}).get("base")
        if base is None:
            break
        path = (path.parent / str(base)).resolve()
    return "\n".join(text)


def names_key(text: str, key: str) -> bool:
    """Whether a header names ``key``.

    It does with the dotted key; for a stage key (``stages.1.optimizer.lr``) also with its section
    form (``optimizer.lr``: stages inherit the top-level sections); and with an identifier-like last
    part alone (``add_ratios``, ``no_decay``), never with a bare common word (``lr``, ``epochs``).
    """
    forms = [key]
    stage = re.match(r"stages\.\d+\.(.+\..+)$", key)
    if stage:
        forms.append(stage.group(1))
    last = key.rsplit(".", 1)[-1]
    if "_" in last:
        forms.append(last)
    return any(re.search(rf"(?<![\w.]){re.escape(form)}(?![\w])", text) for form in forms)


def resolved(cfg: Config) -> dict[str, Any]:
    plain = to_plain(cfg)
    plain["stages"] = [s.model_dump(mode="json") for s in cfg.resolved_stages()]
    return plain


_REGISTRY_OF = {"loss": "LOSSES", "class_weights": "WEIGHTS", "sampler": "SAMPLERS", "method": "METHODS", "model": "MODELS", "tta": "METHODS"}


def lookup(cfg: Config, key: str) -> Any:
    """The value of dotted ``key`` in the resolved config; an unset component kwarg reads as its default."""
    node: Any = resolved(cfg)
    parts = key.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, list):
            node = node[int(part)]
        elif part in node:
            node = node[part]
        elif i == len(parts) - 1 and isinstance(node, dict) and "name" in node:
            return _constructor_default(parts[i - 1], node["name"], part)
        else:
            raise KeyError(key)
    return node


def _constructor_default(section: str, name: str, kwarg: str) -> Any:
    from longtail.catalog import registered  # noqa: F401  (registers every component)
    from longtail.core import registry

    reg = getattr(registry, _REGISTRY_OF[section])
    param = inspect.signature(reg.get(name)).parameters.get(kwarg)
    if param is None or param.default is inspect.Parameter.empty:
        raise KeyError(f"{section} '{name}' has no parameter '{kwarg}' with a default")
    return param.default


def same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def recipes() -> list[str]:
    return sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml"))


# ----------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("recipe", sorted(PROTOCOLS))
def test_recipe_matches_its_original_or_names_the_deviation(recipe):
    path = CONFIGS / recipe
    cfg = load_config(path)
    text = header_chain(path)
    unnamed = []
    for key, orig in PROTOCOLS[recipe].items():
        ours = lookup(cfg, key)
        if not same(ours, orig.value) and not names_key(text, key):
            unnamed.append(f"{key}: recipe {ours!r}, original {orig.value!r} ({orig.source})")
    assert not unnamed, f"{recipe} differs from its original without naming it in its header:\n  " + "\n  ".join(unnamed)


@pytest.mark.parametrize("recipe", recipes())
def test_every_recipe_that_names_an_original_has_a_row(recipe):
    if NAMES_AN_ORIGINAL.search(header(CONFIGS / recipe)):
        assert recipe in PROTOCOLS, f"configs/{recipe} names a paper or code base: add its original's hyper-parameters to PROTOCOLS"


def test_every_row_is_a_recipe_and_every_value_cites_a_file():
    assert set(PROTOCOLS) <= set(recipes())
    for row in PROTOCOLS.values():
        for key, orig in row.items():
            repo, _, where = orig.source.partition(" ")
            assert "/" in repo and where, f"{key}: cite '<owner>/<repo> <file>: <what>', got '{orig.source}'"


def test_a_silent_deviation_fails(tmp_path):
    """The check bites: LDAM-DRW's recipe with the default no_decay and no word about it is refused."""
    recipe = tmp_path / "ldam_drw.yaml"
    recipe.write_text(
        "# LDAM-DRW (Cao et al., NeurIPS 2019), CIFAR-10-LT IR 100.\n"
        f"base: {CONFIGS / 'cifar10_lt' / 'ldam_drw.yaml'}\n"
        "optimizer: {name: sgd, lr: 0.1, momentum: 0.9, weight_decay: 0.0002}\n"
    )
    cfg = load_config(recipe)
    key = "optimizer.no_decay"
    assert not same(lookup(cfg, key), PROTOCOLS["cifar10_lt/ldam_drw.yaml"][key].value)
    assert not names_key(header(recipe), key)
    assert names_key("# Deviations: optimizer.no_decay [bias, norm] (original: every parameter)", key)
    assert not names_key("# Deviations: optimizer.no_decay_extra", key)
    assert names_key("# 3 paces (add_ratios [0.5, 1.0])", "spbl.add_ratios")
    assert not names_key("# lr 0.01", "optimizer.lr")  # a bare common word does not name a key
    assert names_key("# optimizer.lr 0.05", "stages.1.optimizer.lr") and not names_key("# 6 epochs", "stages.1.epochs")
