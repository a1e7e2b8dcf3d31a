"""The Trainer: ``fit`` over stages, validation, checkpoints and exact resume.

One loop serves every method. What varies per method is expressed through components with
explicit hooks (loss, class-weight schedule, sampler, train step, model), never through flags in
the loop. Model selection uses the validation split only; the test split is evaluated once, at the
end, with the best checkpoint (:mod:`longtail.training.finalize`).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import rundir
from ..core.config import to_plain
from ..core.errors import LongtailError
from ..core.schema import Config, ResolvedStage
from ..rundir.checkpoint import config_hash, rng_state, save_checkpoint, set_rng_state
from ..rundir.clock import RunClock
from . import distributed, interrupt
from .batches import batches as split_batches
from .batches import drops_last_batch, meta_kwargs, stage_size
from .device import as_memory_format, autocast, grad_scaler, optimizer_step
from .divergence import Diverged, DivergenceGuard
from .early_stopping import EarlyStopping
from .ema import WeightEMA
from .hooks import EpochReport, announce, listening
from .inference import build_tta, cross_entropy, per_class_accuracy, predict_dataset
from .optim import build_optimizer, project_head, set_epoch_lr
from .precision import explain_precision, resolve_precision
from .resident import resident_split

log = logging.getLogger("longtail")

#: scalar metrics written to metrics.jsonl after each validation (the full dict goes to results.json)
LOGGED_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "gmean", "mauc", "ece")


# ---------------------------------------------------------------------------------- the stage
@dataclass
class StageParts:
    """Everything built for one stage from its config entry."""

    stage: ResolvedStage
    loss: Any
    weights: Any
    sampler: Any
    optimizer: torch.optim.Optimizer
    mixing: Any
    step: Any
    train_model: nn.Module  # what the step calls: the model, or its DistributedDataParallel wrapper
    guard: DivergenceGuard  # stops (or skips) on an exploding loss: the stage's reference is its first batch
    ema: WeightEMA | None = None  # train.ema: the stage's average of the weights, updated after every optimizer step

    def eval_model(self, model: nn.Module) -> nn.Module:
        """What validation scores and best.pt holds: the average under train.ema, else the trained ``model``."""
        return self.ema.model if self.ema is not None else model


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    stage: int = 0
    stage_epoch: int = 0  # finished epochs within the current stage
    global_epoch: int = 0  # finished epochs over all stages
    best_score: float = -float("inf")
    best_epoch: int = 0
    last_val_accuracy: list[float] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    # an epoch stopped by SIGTERM/SIGINT after some batches: {"batches": done, "loss_sum", "images"};
    # resume replays the epoch's batch order, skips those batches and restores the RNG there
    partial_epoch: dict[str, Any] | None = None
    # train.early_stopping: the counter's state (survives a resume) and the global epoch that stopped the run
    early_stopping: dict[str, Any] | None = None
    stopped_epoch: int | None = None
    # train.select_window: the competing validations' latest scores, whose mean selects the best checkpoint
    recent_scores: list[float] = field(default_factory=list)
    # wall seconds of the run when this checkpoint was written, over every process (run_clock.py)
    elapsed_seconds: float = 0.0


class Trainer:
    """Runs a resolved config in a run directory. Use :func:`longtail.api.train` rather than this."""

    def __init__(self, cfg: Config, run_dir: Path, bundle: Any, model: nn.Module, device: torch.device, clock: RunClock | None = None) -> None:
        from ..data import build_pipeline

        self.cfg = cfg
        self.clock = clock if clock is not None else RunClock()
        self.run_dir = run_dir
        self.bundle = bundle
        model = model.to(memory_format=torch.channels_last) if cfg.train.channels_last else model
        self.model = distributed.sync_batchnorm(model, device) if cfg.train.sync_bn else model
        self.device = device
        self.batch_size = distributed.per_rank_batch(cfg.data.batch_size)  # data.batch_size is the global batch
        # train.precision auto: chosen once for this device and model (engine/precision.py), recorded in metrics.jsonl
        self.precision = resolve_precision(cfg.train.precision, device, self.model)
        if cfg.train.precision == "auto":
            log.info(explain_precision(device, self.model))
        self.scaler = grad_scaler(device, self.precision)
        self.counts = np.asarray(bundle.train_counts)
        self.train_pipeline = build_pipeline(cfg.data.train_transforms, bundle.norm_mean, bundle.norm_std, train=True)
        self.eval_pipeline = build_pipeline(cfg.data.eval_transforms, bundle.norm_mean, bundle.norm_std, train=False)
        bundle.train.sample_transform = self.train_pipeline.sample
        from ..augment.randaugment import TrainingImagePool

        self.train_pipeline.attach_image_pool(TrainingImagePool(bundle.train))
        # what the loop draws its batches from: the bundle's split, or (data.device_resident) its copy on the device
        self.train_set = (resident_split(bundle.train, self.train_pipeline, device, cfg.data.num_workers, cfg.data.train_transforms)
                          if cfg.data.device_resident else bundle.train)
        self.stages = cfg.resolved_stages()
        self.progress = Progress()
        self._resume_rng: dict[str, Any] | None = None  # set when resuming inside an epoch
        self.tta = build_tta(cfg)
        self._check_tta()
        self.writer = _tensorboard(run_dir) if cfg.train.tensorboard and distributed.is_main() else None

    def _check_tta(self) -> None:
        """Cut eval.tta's views of one validation image now, so that a TTA these images cannot take (a crop
        larger than them, flips: dihedral on non-square views) stops the run before training, not after it."""
        val = self.bundle.val
        if self.tta is None or val is None or len(val) == 0:
            return
        image = val[0][0]
        for _ in self.tta.views(self.eval_pipeline.batch(image[None].to(self.device))):
            pass

    # ---------------------------------------------------------------- building per stage
    def build_stage(self, stage: ResolvedStage, fresh: bool) -> StageParts:
        """Apply the stage's structural changes to the model and build its components.

        ``fresh`` is False when resuming inside the stage: the head is then not re-initialised
        (the checkpoint's weights are loaded right after).
        """
        from ..core.registry import METHODS
        from ..data.samplers import build_sampler
        from ..losses import build_loss, build_weights

        if stage.head is not None:
            self.model.set_head(stage.head, class_counts=self.counts)
        if stage.reinit_head and fresh:
            self.model.reset_head()
        self.model.freeze_backbone(stage.freeze_backbone)  # also ends an earlier stage's fractional freeze
        if stage.trainable_fraction is not None:
            self.model.freeze_fraction(stage.trainable_fraction)
        if stage.train_norm:  # MiSLAS's shift learning: the frozen backbone's BatchNorm layers still train
            self.model.train_norm(stage.train_norm)
        if hasattr(self.model, "train_only_router"):  # RIDE's router trains in its own stage only (models/router.py)
            self.model.train_only_router(stage.train_only == "router")
        loss = build_loss(stage.loss, self.counts).to(self.device)
        weights = build_weights(stage.class_weights, self.counts)
        # stage-local epochs (progressive sampling ramps within its stage); a per-stage seed so a
        # later stage does not replay the first stage's index streams
        sampler = build_sampler(stage.sampler, np.asarray(self.bundle.train.targets), self.cfg.seed + 1000 * stage.index, max_epoch=stage.epochs)
        sampler = distributed.shard(sampler, self.cfg.data.drop_last)  # this rank's share of the common stream
        optimizer = build_optimizer(self.model, stage.optimizer)
        mixing = None
        if stage.mixing is not None:
            mixing = METHODS.create(stage.mixing.name, class_counts=self.counts, **stage.mixing.kwargs)
        step = METHODS.create(self.cfg.method.name, **self.cfg.method.kwargs)
        _warn_stacked_priors(stage, self.model)
        guard = DivergenceGuard(stage.name, self.bundle.num_classes, self.cfg.train.divergence_factor, self.cfg.train.on_divergence)
        # a fresh average per stage, of the model as this stage changed it (a new or re-initialised head)
        ema = WeightEMA(self.model, self.cfg.train.ema.decay, self.cfg.train.ema.warmup) if self.cfg.train.ema is not None else None
        return StageParts(stage, loss, weights, sampler, optimizer, mixing, step, distributed.wrap(self.model, self.device), guard, ema)

    # ------------------------------------------------------------------------- the loop
    def fit(self, resume_state: dict[str, Any] | None = None, stop_after: int | None = None) -> Progress:
        """Run every stage (from the resume point). ``stop_after`` ends after that many epochs in total."""
        start_stage = 0
        if resume_state is not None:
            self.progress = Progress(**resume_state["progress"])
            self.clock.carry(self.progress.elapsed_seconds)
            start_stage = self.progress.stage
            # replay structural changes of earlier stages (e.g. an LWS head) before loading weights
            for s in self.stages[:start_stage]:
                if s.head is not None:
                    self.model.set_head(s.head, class_counts=self.counts)
        if self.progress.stopped_epoch is not None:  # resumed from the checkpoint of an early stop
            self._close()
            return self.progress
        for stage in self.stages[start_stage:]:
            resuming_here = resume_state is not None and stage.index == start_stage
            parts = self.build_stage(stage, fresh=not resuming_here)
            first_epoch = 0
            if resuming_here:
                self.model.load_state_dict(resume_state["model"])
                parts.optimizer.load_state_dict(resume_state["optimizer"])
                parts.loss.load_state_dict(resume_state["loss"], strict=False)
                if "scaler" in resume_state and self.scaler.is_enabled():
                    self.scaler.load_state_dict(resume_state["scaler"])
                if "weights" in resume_state and hasattr(parts.weights, "load_state_dict"):
                    parts.weights.load_state_dict(resume_state["weights"])
                if parts.ema is not None and "ema" in resume_state:  # train.ema: the stage's average continues where it was
                    parts.ema.load_state_dict(resume_state["ema"])
                if self.progress.last_val_accuracy is not None:
                    self._validation_hooks(parts, np.asarray(self.progress.last_val_accuracy, dtype=float))
                set_rng_state(resume_state["rng"])
                self._resume_rng = resume_state["rng"] if self.progress.partial_epoch else None
                first_epoch = self.progress.stage_epoch
            else:
                self.progress.stage, self.progress.stage_epoch = stage.index, 0
            for epoch in range(first_epoch, stage.epochs):
                if stop_after is not None and self.progress.global_epoch >= stop_after:
                    self._close()
                    return self.progress
                interrupt.check()
                self._run_epoch(parts, epoch)
                if self.progress.stopped_epoch is not None:
                    log.info("early stopping after epoch %d: %s did not improve for %d epochs",
                             self.progress.stopped_epoch, self.cfg.train.select_metric, self.cfg.train.early_stopping.patience)
                    self._close()
                    return self.progress
        self._close()
        return self.progress

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _competes(self, stage: ResolvedStage) -> bool:
        return self.cfg.train.select_from == "all" or stage.index == len(self.stages) - 1

    def _run_epoch(self, parts: StageParts, epoch: int) -> None:
        stage, cfg = parts.stage, self.cfg
        one_based = epoch + 1
        factor = set_epoch_lr(parts.optimizer, epoch, stage.epochs, stage.schedule, stage.optimizer.lr)
        parts.sampler.set_epoch(epoch)
        if distributed.active():  # augmentation / dropout draws differ per rank, fixed by (seed, epoch, rank)
            torch.manual_seed(self.cfg.seed * 1_000_003 + self.progress.global_epoch * 1009 + distributed.rank())
        parts.loss.set_class_weights(_to_tensor(parts.weights.weights(one_based, stage.epochs), self.device))
        for hook_owner in (parts.loss, self.model, parts.step):
            hook = getattr(hook_owner, "on_epoch_start", None)
            if hook is not None:
                hook(one_based, stage.epochs)
        t0 = time.perf_counter()
        train_loss, seen, skipped = self._train_one_epoch(parts)
        max_norm = stage.optimizer.head_max_norm
        if max_norm is not None and max_norm.every == "epoch":  # weight balancing's MaxNorm as its official code runs it
            project_head(self.model, parts.optimizer)
        seconds = time.perf_counter() - t0
        self.progress.global_epoch += 1
        self.progress.stage_epoch = epoch + 1
        record: dict[str, Any] = {
            "epoch": self.progress.global_epoch,
            "stage": stage.name,
            "stage_epoch": epoch + 1,
            # which prior corrections this epoch trained with (the stacked-priors audit trail)
            "loss": stage.loss.name,
            "sampler": stage.sampler.name,
            "class_weights": stage.class_weights.name,
            "mixing": stage.mixing.name if stage.mixing is not None else None,
            "trainable_tensors": sum(p.requires_grad for p in self.model.parameters()),
            "lr": stage.optimizer.lr * factor,
            "train_loss": train_loss,
            "train_images": seen,
            # optimizer steps left out: GradScaler's (inf/NaN fp16 gradients; 16-mixed only) and exploded batches (train.on_divergence=skip)
            "skipped_steps": skipped,
            "seconds": round(seconds, 3),
            "images_per_second": round(seen / max(seconds, 1e-9), 1),
        }
        if cfg.train.precision == "auto":  # what auto chose on this device
            record["precision"] = self.precision
        last_of_stage = epoch + 1 == stage.epochs
        if (epoch + 1) % cfg.train.val_every == 0 or last_of_stage:
            record.update(self._validate(parts))
        if distributed.is_main():
            rundir.append_jsonl(self.run_dir / rundir.METRICS, record)
        self.progress.history.append({k: record[k] for k in ("epoch", "stage", "train_loss") if k in record})
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch",):
                    self.writer.add_scalar(k, v, self.progress.global_epoch)
        self._save_last(parts)
        if listening():
            metric = cfg.train.select_metric
            score = record.get(f"val_{metric}")
            report = EpochReport(self.progress.global_epoch, sum(s.epochs for s in self.stages), stage.name, metric,
                                 float(score) if isinstance(score, (int, float)) else None, dict(record))
            announce(report)

    def _train_one_epoch(self, parts: StageParts) -> tuple[float, int, int]:
        """Train one epoch; on SIGTERM/SIGINT between batches, save ``last`` with the batches done so far
        (``Progress.partial_epoch``) and stop, so a preemption loses no finished batch."""
        cfg, model, device = self.cfg, self.model, self.device
        set_module_mode(model, cfg.train.module_mode)
        partial, self.progress.partial_epoch = self.progress.partial_epoch, None
        skip = int(partial["batches"]) if partial else 0
        loss_sum, seen = (float(partial["loss_sum"]), int(partial["images"])) if partial else (0.0, 0)
        skipped = int(partial.get("skipped_steps", 0)) if partial else 0
        exploded = 0
        batch_size = self.batch_size
        drop_last = drops_last_batch(len(parts.sampler), batch_size, cfg.data.drop_last)
        batches = split_batches(
            self.train_set, parts.sampler, batch_size, cfg.data.num_workers,
            seed=cfg.seed * 1000 + self.progress.global_epoch + 7919 * distributed.rank(), drop_last=drop_last,
        )
        total = len(parts.sampler) // batch_size if drop_last else math.ceil(len(parts.sampler) / batch_size)
        bar = _progress(batches, cfg.train.progress, total=total, desc=f"{parts.stage.name} epoch {self.progress.stage_epoch + 1}/{parts.stage.epochs}")
        for index, (x, y, meta) in enumerate(bar):
            if index < skip:  # done before the stop: same order, not trained again
                continue
            if index == skip and self._resume_rng is not None:
                set_rng_state(self._resume_rng)  # the RNG exactly as it was at the stop
                self._resume_rng = None
            if interrupt.requested() is not None and index > 0:
                self.progress.partial_epoch = {"batches": index, "loss_sum": loss_sum, "images": seen, "skipped_steps": skipped}
                self._save_last(parts)
            interrupt.check()  # SIGTERM/SIGINT: stop here; last.pt holds every finished batch
            raw = x.to(device, non_blocking=True)
            x = as_memory_format(stage_size(self.train_pipeline.batch(raw), parts.stage.image_size), cfg.train.channels_last)
            y = y.to(device, non_blocking=True)
            meta = None if meta is None else meta.to(device, non_blocking=True)  # model.metadata runs only
            # a step that draws more views of the batch itself (BCL: needs_raw_batch) gets the raw images too
            extra = {"raw": raw} if getattr(parts.step, "needs_raw_batch", False) else {}
            with autocast(device, self.precision):
                loss = parts.step(model=parts.train_model, x=x, y=y, loss_fn=parts.loss, mixing=parts.mixing, trainer=self, **meta_kwargs(meta), **extra)
            value = float(loss.detach())
            if parts.guard.skip(value, self.progress.global_epoch + 1, index + 1, self._kept()):
                skipped += 1  # train.on_divergence=skip: this batch is left out of the update and of the epoch's loss
                exploded += 1
                continue
            parts.optimizer.zero_grad(set_to_none=True)
            if not optimizer_step(loss, parts.optimizer, self.scaler, model.parameters(), cfg.train.grad_clip):
                skipped += 1
            elif parts.ema is not None:
                parts.ema.update(model)
            loss_sum += value * len(y)
            seen += len(y)
        if seen == 0 and exploded:
            raise Diverged(f"every batch of epoch {self.progress.global_epoch + 1} in stage '{parts.stage.name}' exploded "
                           f"(train.on_divergence=skip left all {exploded} out); {self._kept()}. Lower the learning rate and train again")
        if seen == 0:
            raise LongtailError("the training split produced no batch; lower data.batch_size or add data")
        loss_sum, seen_all = distributed.sum_over_ranks(loss_sum, seen)  # the epoch over every rank's images
        return loss_sum / seen_all, int(seen_all), skipped

    def _validate(self, parts: StageParts) -> dict[str, Any]:
        from ..evaluation.scoring import split_metrics

        out = predict_dataset(parts.eval_model(self.model), self.bundle.val, self.eval_pipeline, self.device, self.cfg.data.eval_batch_size, self.precision, num_workers=self.cfg.data.num_workers, channels_last=self.cfg.train.channels_last)
        result = split_metrics(out.logits, out.targets, self.counts, self.bundle.class_names, self.cfg.eval)
        acc = per_class_accuracy(out.logits, out.targets, self.bundle.num_classes)
        self._validation_hooks(parts, acc)
        self.progress.last_val_accuracy = [float(a) for a in acc]
        metric = self.cfg.train.select_metric
        if metric not in result:
            raise LongtailError(f"train.select_metric '{metric}' is not a metric; use one of {', '.join(k for k in result if isinstance(result[k], float))}")
        score = float(result[metric])
        record = {f"val_{k}": result[k] for k in LOGGED_METRICS if isinstance(result.get(k), float)}
        record[f"val_{metric}"] = score
        record["val_loss"] = cross_entropy(out.logits, out.targets)
        selecting = self._selecting_score(parts, score)
        if selecting is not None and self.cfg.train.select_window > 1:
            record[f"val_{metric}_window"] = selecting
        if selecting is not None and selecting > self.progress.best_score:
            self.progress.best_score = selecting
            self.progress.best_epoch = self.progress.global_epoch
            record["best"] = True
            self._save(rundir.BEST, parts, include_optimizer=False)
        if self._competes(parts.stage) and self.cfg.train.early_stopping is not None:
            record.update(self._early_stopping_step(score))
        return record

    def _selecting_score(self, parts: StageParts, score: float) -> float | None:
        """The score that competes for the best checkpoint: None outside the competing stages, else the mean of the
        last ``train.select_window`` competing validation scores (this one included; ``score`` itself for 1)."""
        if not self._competes(parts.stage):
            return None
        window = self.cfg.train.select_window
        if window == 1:
            return score
        self.progress.recent_scores = [*self.progress.recent_scores, score][-window:]
        return float(np.mean(self.progress.recent_scores))

    def _early_stopping_step(self, score: float) -> dict[str, Any]:
        """Feed the counter (kept in ``Progress`` so a resume continues it); mark the epoch that stops the run."""
        es = self.cfg.train.early_stopping
        state = self.progress.early_stopping
        stopper = EarlyStopping.from_state(state) if state else EarlyStopping(es.patience, es.min_delta)
        stopper.patience, stopper.min_delta = es.patience, es.min_delta  # a resume may change them
        stop = stopper.update(score, self.progress.global_epoch)
        self.progress.early_stopping = stopper.state_dict()
        record: dict[str, Any] = {"epochs_without_improvement": stopper.epochs_without_improvement}
        if stop:
            self.progress.stopped_epoch = self.progress.global_epoch
            record["early_stop"] = True
        return record

    def _validation_hooks(self, parts: StageParts, per_class_acc: np.ndarray) -> None:
        for owner in (parts.loss, parts.weights):
            hook = getattr(owner, "on_validation_end", None)
            if hook is not None:
                hook(per_class_acc)

    # ---------------------------------------------------------------------- checkpoints
    def _kept(self) -> str:
        """What the checkpoints hold when training stops now (for the divergence message)."""
        done = self.progress.global_epoch
        if done == 0:
            return "no epoch had finished, so no checkpoint was written"
        best = f", {rundir.BEST} epoch {self.progress.best_epoch}" if self.progress.best_epoch else ""
        return f"{rundir.LAST} keeps epoch {done}, the last finished one{best}"

    def _save_last(self, parts: StageParts) -> None:
        self._save(rundir.LAST, parts, include_optimizer=True)

    def _save(self, rel: str, parts: StageParts, include_optimizer: bool) -> None:
        if not distributed.is_main():  # every rank holds the same weights: rank 0 writes them
            return
        self.progress.elapsed_seconds = round(self.clock.seconds(), 3)
        # last.pt (include_optimizer): the trained weights, to resume, and the average beside them;
        # best.pt: the weights that were validated (the average under train.ema), which evaluation and export load
        state: dict[str, Any] = {
            "model": (self.model if include_optimizer else parts.eval_model(self.model)).state_dict(),
            "progress": self.progress.__dict__.copy(),
            "stage_index": parts.stage.index,
            "heads": [s.head for s in self.stages[: parts.stage.index + 1]],
        }
        if parts.ema is not None:
            state["ema"] = parts.ema.state_dict() if include_optimizer else {"updates": parts.ema.updates, "decay": parts.ema.decay}
        if include_optimizer:
            state["optimizer"] = parts.optimizer.state_dict()
            state["loss"] = parts.loss.state_dict()
            if hasattr(parts.weights, "state_dict"):
                state["weights"] = parts.weights.state_dict()
            state["rng"] = rng_state()
            state["run_config"] = to_plain(self.cfg)  # what a resume is checked against (training.resume_check)
            if self.scaler.is_enabled():
                state["scaler"] = self.scaler.state_dict()
        save_checkpoint(
            self.run_dir / rel, state, model_name=self.cfg.model.name, class_names=self.bundle.class_names,
            config_hash=config_hash(self.cfg.model.model_dump(mode="json")),
        )


def set_module_mode(model: nn.Module, mode: str) -> None:
    """Put ``model`` in training mode, except what ``train.module_mode`` keeps in eval mode.

    ``eval``: everything (MBIT's ``EVAL_MODE``: gradients flow, but BatchNorm normalises with and
    keeps its running statistics, and dropout and DropBlock are off); ``eval_batchnorm``: only
    the BatchNorm layers (frozen statistics, dropout still on).
    """
    model.train()
    if mode == "eval":
        model.eval()
    elif mode == "eval_batchnorm":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _to_tensor(w: Any, device: torch.device) -> torch.Tensor | None:
    if w is None:
        return None
    return torch.as_tensor(np.asarray(w, dtype=np.float32), device=device)


def progress_enabled(setting: bool | str, stream: Any = None) -> bool:
    """``train.progress``: True/False as given; ``auto`` draws the bar only when its stream (stderr) is a
    terminal, so a CI log or a redirected file never fills with carriage-return frames."""
    if setting != "auto":
        return bool(setting)
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _progress(it: Any, setting: bool | str, total: int, desc: str) -> Any:
    if not progress_enabled(setting):
        return it
    from tqdm.auto import tqdm

    return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but a broken install must not stop training
        log.warning("tensorboard is not importable; per-epoch metrics go to metrics.jsonl only")
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


_PRIOR_LOSSES = {"balanced_softmax", "logit_adjusted", "cb", "cdb_ce", "cdb_focal"}
_BALANCING_SAMPLERS = {"class_balanced", "square_root", "progressive", "reverse", "oversample", "effective_number"}
_REWEIGHTING = {"inverse_frequency", "effective_number", "drw", "cls", "cdb"}


def stacked_priors(stage: ResolvedStage) -> list[str]:
    """Prior corrections that act together in a stage (each alone is fine, two usually over-correct)."""
    active = []
    if stage.loss.name in _PRIOR_LOSSES:
        active.append(f"loss '{stage.loss.name}'")
    if stage.sampler.name in _BALANCING_SAMPLERS:
        active.append(f"sampler '{stage.sampler.name}'")
    if stage.class_weights.name in _REWEIGHTING:
        active.append(f"class weights '{stage.class_weights.name}'")
    return active


def _warn_stacked_priors(stage: ResolvedStage, model: nn.Module) -> None:
    active = stacked_priors(stage)
    if len(active) > 1:
        log.warning("stage '%s' stacks prior corrections (%s): they compound and usually over-correct toward tail classes", stage.name, " + ".join(active))


StepFn = Callable[..., torch.Tensor]
